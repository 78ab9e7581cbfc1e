//! Policy approval: a policy against a baseline over a chaos suite with
//! paired seeds, judged per fault type against criteria the user sets.
//!
//! For every (scenario, parameters, seed) both controllers run the very
//! same requests and faults (common random numbers), so the paired
//! differences `policy - baseline` isolate the policy's effect. Each fault
//! type's mean difference gets a 95 % bootstrap interval; the policy passes
//! a criterion when the interval's upper end is within its margin, that is
//! when the data rule out (at that confidence) that it is worse by more than
//! the margin. The verdict is a value in the record, not an error.

use std::collections::BTreeMap;

use super::run::RunRecord;
use super::stats::{Estimate, bootstrap_mean};
pub use selfheal_core::policy::policy_hash;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Criteria {
    /// Largest acceptable increase of SLO-violation seconds per run.
    pub margin_violation_s: f64,
    /// Largest acceptable increase of failed requests per run.
    pub margin_failed: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            margin_violation_s: 0.0,
            margin_failed: 0.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    pub fault: String,
    pub metric: &'static str,
    /// Mean of `policy - baseline` over the pairs, with its interval.
    pub difference: Estimate,
    pub margin: f64,
    pub pass: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub policy_hash: String,
    pub policy: String,
    pub baseline: String,
    pub suite: String,
    pub pairs: usize,
    pub criteria: Criteria,
    pub effects: Vec<Effect>,
    pub approved: bool,
}

/// Pairs the two sets of runs and judges every fault type.
pub fn judge(
    policy: &[RunRecord],
    baseline: &[RunRecord],
    criteria: Criteria,
) -> (Vec<Effect>, usize) {
    let key = |r: &RunRecord| (r.scenario.clone(), r.params.clone(), r.seed);
    let base: BTreeMap<_, &RunRecord> = baseline.iter().map(|r| (key(r), r)).collect();
    let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut pairs = 0;
    for p in policy {
        let Some(b) = base.get(&key(p)) else { continue };
        pairs += 1;
        let fault = if p.faults.is_empty() {
            "none".to_string()
        } else {
            p.faults.clone()
        };
        groups.entry(fault).or_default().push((
            p.slo_violation_s - b.slo_violation_s,
            p.failed as f64 - b.failed as f64,
        ));
    }
    let mut effects = Vec::new();
    for (fault, d) in groups {
        for (metric, values, margin) in [
            (
                "slo_violation_s",
                d.iter().map(|x| x.0).collect::<Vec<_>>(),
                criteria.margin_violation_s,
            ),
            (
                "failed",
                d.iter().map(|x| x.1).collect::<Vec<_>>(),
                criteria.margin_failed,
            ),
        ] {
            let difference = bootstrap_mean(&values, 2000, 0xA99);
            effects.push(Effect {
                fault: fault.clone(),
                metric,
                difference,
                margin,
                pass: difference.hi <= margin,
            });
        }
    }
    (effects, pairs)
}

impl Approval {
    /// The verdict and every fault type's effect as a markdown table
    /// (`approval.md`).
    pub fn to_md(&self) -> String {
        let mut md = format!(
            "# Approval of `{}` against `{}`\n\n{} paired runs of `{}`; verdict: **{}** (every fault type's 95 % interval of policy - baseline within its margin).\n\n| fault | metric | mean difference [95 % CI] | margin | pass |\n|---|---|---|---|---|\n",
            self.policy_hash,
            self.baseline,
            self.pairs,
            self.suite,
            if self.approved {
                "approved"
            } else {
                "not approved"
            }
        );
        for e in &self.effects {
            md.push_str(&format!(
                "| {} | {} | {:+.1} [{:+.1}, {:+.1}] | {} | {} |\n",
                e.fault,
                e.metric,
                e.difference.mean,
                e.difference.lo,
                e.difference.hi,
                e.margin,
                if e.pass { "yes" } else { "no" }
            ));
        }
        md
    }

    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "# selfheal approval record\npolicy_hash = \"{}\"\nbaseline = \"{}\"\nsuite = \"{}\"\npairs = {}\napproved = {}\n\n[criteria]\nmargin_violation_s = {}\nmargin_failed = {}\n",
            self.policy_hash,
            self.baseline,
            self.suite,
            self.pairs,
            self.approved,
            self.criteria.margin_violation_s,
            self.criteria.margin_failed
        );
        for e in &self.effects {
            s.push_str(&format!(
                "\n[[effect]]\nfault = \"{}\"\nmetric = \"{}\"\nmean_difference = {}\nci_lo = {}\nci_hi = {}\nruns = {}\nmargin = {}\npass = {}\n",
                e.fault, e.metric, e.difference.mean, e.difference.lo, e.difference.hi, e.difference.n, e.margin, e.pass
            ));
        }
        s.push_str("\n# The policy, as hashed:\n");
        s.push_str(
            &self
                .policy
                .lines()
                .map(|l| format!("# {l}\n"))
                .collect::<String>(),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fault: &str, seed: u64, violation: f64, failed: u64) -> RunRecord {
        RunRecord {
            index: 0,
            id: String::new(),
            scenario: format!("s-{fault}"),
            params: String::new(),
            controller: String::new(),
            seed,
            faults: fault.into(),
            requests: 1000,
            served: 1000 - failed,
            failed,
            slo_violation_s: violation,
            latency_p50_ms: 1.0,
            latency_p99_ms: 2.0,
            replica_seconds: 100.0,
            scaling_actions: 0,
            restarts: 0,
            oom_kills: 0,
            timeouts: 0,
            events: 0,
            healing_actions: 0,
            false_healings: 0,
            detection_s: f64::NAN,
            mttr_s: f64::NAN,
            outcome: String::new(),
            fault_failed: 0,
            duration_s: 600.0,
        }
    }

    #[test]
    fn paired_differences_decide_per_fault_type() {
        // hang: the policy is better on every seed; memory_leak: worse.
        let base: Vec<_> = (0..10)
            .flat_map(|s| [rec("hang", s, 120.0, 50), rec("memory_leak", s, 60.0, 10)])
            .collect();
        let policy: Vec<_> = (0..10)
            .flat_map(|s| {
                [
                    rec("hang", s, 60.0 + s as f64, 20),
                    rec("memory_leak", s, 90.0, 10 + s),
                ]
            })
            .collect();
        let (effects, pairs) = judge(&policy, &base, Criteria::default());
        assert_eq!(pairs, 20);
        let get = |f: &str, m: &str| {
            effects
                .iter()
                .find(|e| e.fault == f && e.metric == m)
                .unwrap()
        };
        assert!(get("hang", "slo_violation_s").pass && get("hang", "failed").pass);
        assert!(!get("memory_leak", "slo_violation_s").pass);
        assert!(!get("memory_leak", "failed").pass);
        // A margin of 40 violation seconds accepts the leak's +30.
        let (effects, _) = judge(
            &policy,
            &base,
            Criteria {
                margin_violation_s: 40.0,
                margin_failed: 20.0,
            },
        );
        assert!(effects.iter().all(|e| e.pass), "{effects:?}");
    }
}
