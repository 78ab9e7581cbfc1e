//! The Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on CPU
//! utilisation, reproduced rule by rule.
//!
//! Upstream: kubernetes `pkg/controller/podautoscaler/horizontal.go`
//! (`reconcileAutoscaler`, `normalizeDesiredReplicasWithBehaviors`,
//! `stabilizeRecommendationWithBehaviors`,
//! `convertDesiredReplicasWithBehaviorRate`, the legacy
//! `normalizeDesiredReplicas`), `replica_calculator.go` (`groupPods`,
//! `calcPlainMetricReplicas`), `metrics/utilization.go`
//! (`GetResourceUtilizationRatio`) and `pkg/apis/autoscaling/v2/defaults.go`.
//! Quantities are integer millicores, as upstream computes them.

use std::collections::VecDeque;

use super::{Command, Controller, Observation, PerService, PodPhase, PodView, ServiceView};
use crate::time::{Span, Time};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: u32,
    pub period: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    pub stabilization: Span,
    pub select: SelectPolicy,
    pub policies: Vec<Policy>,
}

/// `behavior` as autoscaling/v2 defaults it.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

impl Default for Behavior {
    fn default() -> Self {
        let s15 = Span::from_secs(15);
        Behavior {
            scale_up: ScalingRules {
                stabilization: Span::ZERO,
                select: SelectPolicy::Max,
                policies: vec![
                    Policy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period: s15,
                    },
                    Policy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period: s15,
                    },
                ],
            },
            scale_down: ScalingRules {
                stabilization: Span::from_secs(300),
                select: SelectPolicy::Max,
                policies: vec![Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: s15,
                }],
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HpaConfig {
    /// Target CPU utilisation in percent of requests.
    pub target_utilization: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_period: Span,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub cpu_initialization_period: Span,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub initial_readiness_delay: Span,
    /// The window a CPU sample averages over (metrics-server resolution).
    pub metric_window: Span,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (legacy path).
    pub downscale_stabilization: Span,
    /// `None` takes the legacy path (no `behavior`).
    pub behavior: Option<Behavior>,
}

/// The CPU target when none is given: `kubectl autoscale`'s default, and
/// this project's for `hpa` without a percentage, everywhere one is read
/// (the scenario's controller, the short form, labels, the tuner's
/// baseline).
pub const DEFAULT_CPU_PERCENT: u32 = 80;

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            target_utilization: DEFAULT_CPU_PERCENT,
            min_replicas: 1,
            max_replicas: 100,
            tolerance: 0.1,
            sync_period: Span::from_secs(15),
            cpu_initialization_period: Span::from_secs(300),
            initial_readiness_delay: Span::from_secs(30),
            metric_window: Span::from_secs(15),
            downscale_stabilization: Span::from_secs(300),
            behavior: Some(Behavior::default()),
        }
    }
}

/// The outcome of `GetResourceReplicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: u32,
    /// Utilisation in percent of requests over the pods with usable samples.
    pub utilization: i64,
}

/// Why HPA computes no recommendation this sync (upstream sets
/// `ScalingActive=False` and leaves the scale alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRecommendation {
    /// "did not receive metrics for targeted pods (pods might be unready)".
    NoUsableMetrics,
    /// "missing request for cpu in container ... of Pod ...": utilisation
    /// is undefined for a pod without a CPU request.
    MissingRequest { pod: String },
}

/// `groupPods`: how each pod's sample counts. Requests in millicores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodGroups {
    /// `(usage, request)` of the pods whose sample counts.
    pub metrics: Vec<(i64, i64)>,
    /// Requests of the Pending pods and of those whose sample is ignored.
    pub unready: Vec<i64>,
    /// Requests of the pods without a sample.
    pub missing: Vec<i64>,
}

fn millis(cores: f64) -> i64 {
    (cores * 1000.0).round() as i64
}

/// `groupPods` for CPU: deleted pods are ignored, Pending pods are unready,
/// pods without a sample are missing, and the CPU readiness rule decides
/// whether a sample may be trusted.
pub fn group_pods(cfg: &HpaConfig, pods: &[PodView], now: Time) -> PodGroups {
    let mut g = PodGroups::default();
    for p in pods {
        let request = millis(p.cpu_request);
        match p.phase {
            PodPhase::Terminating => continue,
            PodPhase::Pending => {
                g.unready.push(request);
                continue;
            }
            PodPhase::Starting | PodPhase::Running => {}
        }
        let Some(sampled_at) = p.cpu_sampled_at else {
            g.missing.push(request);
            continue;
        };
        let is_unready = if p.started + cfg.cpu_initialization_period > now {
            // Still possibly initialising: ignore the sample if unready, or if
            // no full metric window has passed since the last transition.
            !p.ready || sampled_at < p.last_transition + cfg.metric_window
        } else {
            // Ignore it only if unready and never ready.
            !p.ready && p.started + cfg.initial_readiness_delay > p.last_transition
        };
        if is_unready {
            g.unready.push(request);
        } else {
            g.metrics.push((millis(p.cpu_cores), request));
        }
    }
    g
}

/// `Tolerances.isWithin`: the ratio is compared with the band's edges, not
/// `|1 - ratio|` with the tolerance, so a ratio of exactly 1.1 is within a
/// 10 % tolerance (the absolute form differs in the last bit of a float).
pub fn within_tolerance(tolerance: f64, ratio: f64) -> bool {
    1.0 - tolerance <= ratio && ratio <= 1.0 + tolerance
}

/// `GetResourceReplicas` for CPU utilisation.
pub fn recommend(
    cfg: &HpaConfig,
    pods: &[PodView],
    current: u32,
    now: Time,
) -> Result<Recommendation, NoRecommendation> {
    let PodGroups {
        mut metrics,
        unready,
        missing,
    } = group_pods(cfg, pods, now);
    if metrics.is_empty() {
        return Err(NoRecommendation::NoUsableMetrics);
    }
    // `calculateRequests` then reads every listed pod's request, ignored
    // ones too.
    if let Some(p) = pods.iter().find(|p| millis(p.cpu_request) <= 0) {
        return Err(NoRecommendation::MissingRequest {
            pod: p.name.clone(),
        });
    }
    let ready_count = metrics.len() as f64;
    let target = cfg.target_utilization as i64;
    // `GetResourceUtilizationRatio`: integer percent of summed requests.
    let ratio_of = |m: &[(i64, i64)]| {
        let (usage, requests) = m
            .iter()
            .fold((0i64, 0i64), |(u, r), &(a, b)| (u + a, r + b));
        let util = usage * 100 / requests;
        (util as f64 / target as f64, util)
    };
    let (ratio, util) = ratio_of(&metrics);
    let keep = Recommendation {
        replicas: current,
        utilization: util,
    };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if within_tolerance(cfg.tolerance, ratio) {
            return Ok(keep);
        }
        return Ok(Recommendation {
            replicas: (ratio * ready_count).ceil() as u32,
            utilization: util,
        });
    }
    if ratio < 1.0 {
        // On a scale-down a missing pod counts as using its whole request
        // (or the target, when that is above 100 %).
        let fallback = target.max(100);
        metrics.extend(missing.iter().map(|&r| (r * fallback / 100, r)));
    } else if ratio > 1.0 {
        metrics.extend(missing.iter().map(|&r| (0, r)));
    }
    if scale_up_with_unready {
        metrics.extend(unready.iter().map(|&r| (0, r)));
    }
    let (new_ratio, _) = ratio_of(&metrics);
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within_tolerance(cfg.tolerance, new_ratio) || flipped {
        return Ok(keep);
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as u32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(keep);
    }
    Ok(Recommendation {
        replicas,
        utilization: util,
    })
}

/// Which bound `convertDesiredReplicasWithBehaviorRate` applied: upstream's
/// `ScalingLimited` condition reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    DesiredWithinRange,
    ScaleUpLimit,
    TooManyReplicas,
    ScaleDownLimit,
    TooFewReplicas,
}

/// Per-target state: recommendations for stabilisation and scale events for
/// the rate policies.
#[derive(Clone, Debug, Default)]
pub struct HpaState {
    recommendations: Vec<(Time, u32)>,
    scale_up_events: Vec<(Time, u32)>,
    scale_down_events: Vec<(Time, u32)>,
}

fn cutoff(now: Time, window: Span) -> Time {
    Time::from_nanos(now.as_nanos().saturating_sub(window.as_nanos()))
}

impl HpaState {
    /// A state with history, as upstream's tests seed the controller:
    /// `(time, recommendation)` and `(time, replicas added / removed)`.
    pub fn with_history(
        recommendations: Vec<(Time, u32)>,
        scale_up_events: Vec<(Time, u32)>,
        scale_down_events: Vec<(Time, u32)>,
    ) -> Self {
        HpaState {
            recommendations,
            scale_up_events,
            scale_down_events,
        }
    }

    /// The stored recommendations, oldest slot first.
    pub fn recommendations(&self) -> impl Iterator<Item = u32> + '_ {
        self.recommendations.iter().map(|&(_, r)| r)
    }

    /// `normalizeDesiredReplicasWithBehaviors`.
    pub fn normalize_with_behavior(
        &mut self,
        cfg: &HpaConfig,
        b: &Behavior,
        current: u32,
        desired: u32,
        now: Time,
    ) -> (u32, Limit) {
        // maybeInitScaleDownStabilizationWindow
        if self.recommendations.is_empty() && b.scale_down.stabilization > Span::ZERO {
            self.recommendations.push((now, current));
        }
        let stabilized = self.stabilize(b, current, desired, now);
        self.limit_rate(cfg, b, current, stabilized, now)
    }

    /// `stabilizeRecommendationWithBehaviors`: at least the lowest
    /// recommendation of the scale-up window, at most the highest of the
    /// scale-down window, starting from the current count; the new
    /// recommendation takes the slot of one older than both windows.
    pub fn stabilize(&mut self, b: &Behavior, current: u32, desired: u32, now: Time) -> u32 {
        let up_cutoff = cutoff(now, b.scale_up.stabilization);
        let down_cutoff = cutoff(now, b.scale_down.stabilization);
        let (mut up, mut down) = (desired, desired);
        let mut old_slot = None;
        for (i, &(t, r)) in self.recommendations.iter().enumerate() {
            if t > up_cutoff {
                up = up.min(r);
            }
            if t > down_cutoff {
                down = down.max(r);
            }
            if t < up_cutoff && t < down_cutoff {
                old_slot = Some(i);
            }
        }
        match old_slot {
            Some(i) => self.recommendations[i] = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        current.max(up).min(down)
    }

    /// `convertDesiredReplicasWithBehaviorRate`.
    pub fn limit_rate(
        &self,
        cfg: &HpaConfig,
        b: &Behavior,
        current: u32,
        desired: u32,
        now: Time,
    ) -> (u32, Limit) {
        let current_i = i64::from(current);
        if desired > current {
            // No further scale-up until the period's events age out.
            let limit = self
                .rate_limit(&b.scale_up, current, now, true)
                .max(current_i);
            let (allowed, why) = if i64::from(cfg.max_replicas) > limit {
                (limit, Limit::ScaleUpLimit)
            } else {
                (i64::from(cfg.max_replicas), Limit::TooManyReplicas)
            };
            if i64::from(desired) > allowed {
                return (allowed as u32, why);
            }
        } else if desired < current {
            let limit = self
                .rate_limit(&b.scale_down, current, now, false)
                .min(current_i);
            let (allowed, why) = if i64::from(cfg.min_replicas) < limit {
                (limit, Limit::ScaleDownLimit)
            } else {
                (i64::from(cfg.min_replicas), Limit::TooFewReplicas)
            };
            if i64::from(desired) < allowed {
                return (allowed as u32, why);
            }
        }
        (desired, Limit::DesiredWithinRange)
    }

    fn changed_within(events: &[(Time, u32)], period: Span, now: Time) -> i64 {
        let cutoff = cutoff(now, period);
        events
            .iter()
            .filter(|(t, _)| *t > cutoff)
            .map(|&(_, n)| i64::from(n))
            .sum()
    }

    /// The count at the start of a policy's period: the current count less
    /// the pods added and plus the pods removed within it, in both
    /// directions (current upstream; the older rule counted one direction).
    fn period_start(&self, current: u32, period: Span, now: Time) -> i64 {
        i64::from(current) - Self::changed_within(&self.scale_up_events, period, now)
            + Self::changed_within(&self.scale_down_events, period, now)
    }

    /// `calculateScaleUpLimitWithScalingRules` (`up`) and
    /// `calculateScaleDownLimitWithBehaviors`: each policy's bound from the
    /// period's start, combined as `selectPolicy` says. For scale-down
    /// upstream inverts the selection (Max = the largest change = the
    /// smallest limit) and truncates the percentage toward zero, as Go's
    /// `int32(float64)` does; scale-up rounds it up so that a small
    /// percentage still adds a pod.
    fn rate_limit(&self, rules: &ScalingRules, current: u32, now: Time, up: bool) -> i64 {
        let pick: fn(i64, i64) -> i64 = match (rules.select, up) {
            (SelectPolicy::Disabled, _) => return i64::from(current),
            (SelectPolicy::Max, true) | (SelectPolicy::Min, false) => i64::max,
            (SelectPolicy::Min, true) | (SelectPolicy::Max, false) => i64::min,
        };
        let sign = if up { 1 } else { -1 };
        rules
            .policies
            .iter()
            .map(|p| {
                let base = self.period_start(current, p.period, now);
                match p.kind {
                    PolicyKind::Pods => base + sign * i64::from(p.value),
                    PolicyKind::Percent => {
                        let v = base as f64 * (1.0 + sign as f64 * f64::from(p.value) / 100.0);
                        (if up { v.ceil() } else { v.trunc() }) as i64
                    }
                }
            })
            .reduce(pick)
            .unwrap_or(i64::from(current))
    }

    /// The legacy `normalizeDesiredReplicas`: the maximum recommendation of
    /// the stabilisation window, capped at `max(2 * current, 4)`, clamped.
    pub fn normalize_legacy(
        &mut self,
        cfg: &HpaConfig,
        current: u32,
        desired: u32,
        now: Time,
    ) -> u32 {
        let stabilized = self.stabilize_legacy(cfg, desired, now);
        let scale_up_limit = current.saturating_mul(2).max(4);
        let allowed = cfg.max_replicas.min(scale_up_limit);
        stabilized.max(cfg.min_replicas).min(allowed)
    }

    /// The legacy `stabilizeRecommendation`: a recommendation older than the
    /// window only gives up its slot; the rest raise the maximum.
    pub fn stabilize_legacy(&mut self, cfg: &HpaConfig, desired: u32, now: Time) -> u32 {
        let cutoff = cutoff(now, cfg.downscale_stabilization);
        let mut max = desired;
        let mut old_slot = None;
        for (i, &(t, r)) in self.recommendations.iter().enumerate() {
            if t < cutoff {
                old_slot = Some(i);
            } else {
                max = max.max(r);
            }
        }
        match old_slot {
            Some(i) => self.recommendations[i] = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        max
    }

    /// `storeScaleEvent`, discarding events older than the longest period.
    pub fn record_scale(&mut self, b: Option<&Behavior>, current: u32, desired: u32, now: Time) {
        let longest = |r: &ScalingRules| {
            r.policies
                .iter()
                .map(|p| p.period)
                .max()
                .unwrap_or(Span::ZERO)
        };
        let keep = |events: &mut Vec<(Time, u32)>, period: Span| {
            let cutoff = cutoff(now, period);
            events.retain(|(t, _)| *t > cutoff);
        };
        let Some(b) = b else { return };
        if desired > current {
            keep(&mut self.scale_up_events, longest(&b.scale_up));
            self.scale_up_events.push((now, desired - current));
        } else if desired < current {
            keep(&mut self.scale_down_events, longest(&b.scale_down));
            self.scale_down_events.push((now, current - desired));
        }
    }
}

/// One HPA per service, all with the same configuration.
pub struct Hpa {
    cfg: HpaConfig,
    name: String,
    states: PerService<HpaState>,
    pending: VecDeque<Command>,
}

impl Hpa {
    pub fn new(cfg: HpaConfig) -> Self {
        let name = format!("hpa-{}", cfg.target_utilization);
        Hpa {
            cfg,
            name,
            states: PerService::default(),
            pending: VecDeque::new(),
        }
    }

    /// `reconcileAutoscaler` for one target.
    pub fn decide(
        cfg: &HpaConfig,
        state: &mut HpaState,
        svc: &ServiceView,
        now: Time,
    ) -> Option<Command> {
        let current = svc.desired_replicas;
        let (desired, why) = if current == 0 && cfg.min_replicas != 0 {
            // "scaling is disabled since the replica count of the target is zero"
            return None;
        } else if current > cfg.max_replicas {
            (cfg.max_replicas, "above maxReplicas".to_string())
        } else if current < cfg.min_replicas {
            (cfg.min_replicas, "below minReplicas".to_string())
        } else {
            let rec = recommend(cfg, &svc.pods, current, now).ok()?;
            let (desired, limit) = match &cfg.behavior {
                Some(b) => state.normalize_with_behavior(cfg, b, current, rec.replicas, now),
                None => (
                    state.normalize_legacy(cfg, current, rec.replicas, now),
                    Limit::DesiredWithinRange,
                ),
            };
            let limited = match limit {
                Limit::DesiredWithinRange => "",
                Limit::ScaleUpLimit => " (scale-up rate limit)",
                Limit::TooManyReplicas => " (maxReplicas)",
                Limit::ScaleDownLimit => " (scale-down rate limit)",
                Limit::TooFewReplicas => " (minReplicas)",
            };
            (
                desired,
                format!(
                    "cpu {}% of request vs target {}% recommends {}{limited}",
                    rec.utilization, cfg.target_utilization, rec.replicas
                ),
            )
        };
        if desired == current {
            return None;
        }
        state.record_scale(cfg.behavior.as_ref(), current, desired, now);
        Some(Command::Scale {
            service: svc.name.clone(),
            replicas: desired,
            reason: format!("{why}: {current} -> {desired}"),
        })
    }
}

impl Controller for Hpa {
    fn name(&self) -> &str {
        &self.name
    }
    fn period(&self) -> Span {
        self.cfg.sync_period
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        for svc in &obs.services {
            let state = self
                .states
                .get_or_insert_with(&svc.name, |_| HpaState::default());
            if let Some(cmd) = Self::decide(&self.cfg, state, svc, now) {
                self.pending.push_back(cmd);
            }
        }
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.pending.pop_front()
    }
}
