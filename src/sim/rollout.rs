//! The Deployment controller's rolling update, as one pure reconcile step.
//!
//! Upstream: kubernetes `pkg/controller/deployment/rolling.go`
//! (`reconcileNewReplicaSet`, `reconcileOldReplicaSets`,
//! `cleanupUnhealthyReplicas`) and `util/deployment_util.go`
//! (`ResolveFenceposts`: surge rounds up, unavailability rounds down, and
//! both zero means one pod may be unavailable).

use crate::scenario::IntOrPercent;

/// What the controller sees of one Deployment (terminating pods excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RolloutState {
    pub desired: u32,
    /// Pods of the current revision, and how many of them are ready.
    pub new_pods: u32,
    pub new_ready: u32,
    /// Pods of older revisions, and how many of them are ready.
    pub old_pods: u32,
    pub old_ready: u32,
}

/// What to do now. Old pods are removed not-ready first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RolloutStep {
    pub create_new: u32,
    pub delete_new: u32,
    pub delete_old: u32,
}

/// `(maxSurge, maxUnavailable)` as pod counts for `desired` replicas.
pub fn fenceposts(surge: &IntOrPercent, unavailable: &IntOrPercent, desired: u32) -> (u32, u32) {
    let resolve = |v: &IntOrPercent, round_up: bool| match v {
        IntOrPercent::Int(n) => *n,
        IntOrPercent::Percent(s) => {
            let pct = crate::scenario::parse_percent_value(s).unwrap_or(25.0);
            let x = pct * desired as f64 / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as u32
        }
    };
    let (s, u) = (resolve(surge, true), resolve(unavailable, false));
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

pub fn step(st: RolloutState, max_surge: u32, max_unavailable: u32) -> RolloutStep {
    let mut out = RolloutStep::default();
    if st.old_pods == 0 {
        // Not rolling: plain scaling of the current ReplicaSet.
        if st.new_pods < st.desired {
            out.create_new = st.desired - st.new_pods;
        } else {
            out.delete_new = st.new_pods - st.desired;
        }
        return out;
    }
    // reconcileNewReplicaSet: grow the new set while the total stays within
    // desired + maxSurge.
    let total = st.new_pods + st.old_pods;
    let allowed = st.desired + max_surge;
    if st.new_pods < st.desired && total < allowed {
        out.create_new = (allowed - total).min(st.desired - st.new_pods);
    } else if st.new_pods > st.desired {
        out.delete_new = st.new_pods - st.desired;
    }
    // cleanupUnhealthyReplicas, then scale down old ready pods while at least
    // desired - maxUnavailable stay available.
    let old_unready = st.old_pods - st.old_ready;
    let min_available = st.desired.saturating_sub(max_unavailable);
    let available = st.new_ready + st.old_ready;
    let removable_ready = available.saturating_sub(min_available).min(st.old_ready);
    out.delete_old = old_unready + removable_ready;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrPercent {
        IntOrPercent::Percent(s.into())
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        assert_eq!(fenceposts(&pct("25%"), &pct("25%"), 10), (3, 2));
        assert_eq!(fenceposts(&pct("25%"), &pct("25%"), 1), (1, 0));
        assert_eq!(
            fenceposts(&IntOrPercent::Int(0), &IntOrPercent::Int(0), 5),
            (0, 1)
        );
    }

    #[test]
    fn rolling_update_of_four_pods_keeps_availability() {
        let (surge, unavail) = fenceposts(&pct("25%"), &pct("25%"), 4);
        assert_eq!((surge, unavail), (1, 1));
        let s = step(
            RolloutState {
                desired: 4,
                new_pods: 0,
                new_ready: 0,
                old_pods: 4,
                old_ready: 4,
            },
            surge,
            unavail,
        );
        // One surge pod and one old pod may go (3 of 4 stay available).
        assert_eq!(
            s,
            RolloutStep {
                create_new: 1,
                delete_new: 0,
                delete_old: 1
            }
        );
        // After the deletion, the total is back to 4: one more new pod.
        let s = step(
            RolloutState {
                desired: 4,
                new_pods: 1,
                new_ready: 0,
                old_pods: 3,
                old_ready: 3,
            },
            surge,
            unavail,
        );
        assert_eq!(
            s,
            RolloutStep {
                create_new: 1,
                delete_new: 0,
                delete_old: 0
            }
        );
        // A new pod becomes ready: another old one may go.
        let s = step(
            RolloutState {
                desired: 4,
                new_pods: 2,
                new_ready: 1,
                old_pods: 3,
                old_ready: 3,
            },
            surge,
            unavail,
        );
        assert_eq!(
            s,
            RolloutStep {
                create_new: 0,
                delete_new: 0,
                delete_old: 1
            }
        );
    }

    #[test]
    fn unhealthy_old_pods_are_cleaned_up_first() {
        let s = step(
            RolloutState {
                desired: 4,
                new_pods: 1,
                new_ready: 0,
                old_pods: 4,
                old_ready: 2,
            },
            1,
            1,
        );
        assert_eq!(s.delete_old, 2);
    }

    #[test]
    fn plain_scaling_without_old_pods() {
        assert_eq!(
            step(
                RolloutState {
                    desired: 5,
                    new_pods: 2,
                    new_ready: 2,
                    ..Default::default()
                },
                1,
                1
            )
            .create_new,
            3
        );
        assert_eq!(
            step(
                RolloutState {
                    desired: 1,
                    new_pods: 3,
                    new_ready: 3,
                    ..Default::default()
                },
                1,
                1
            )
            .delete_new,
            2
        );
    }
}
