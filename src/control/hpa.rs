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

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            target_utilization: 80,
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

/// The outcome of `calcPlainMetricReplicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: u32,
    /// Utilisation in percent of requests over the pods with usable samples.
    pub utilization: i64,
}

/// `groupPods` + `calcPlainMetricReplicas` for CPU. `None` when no pod has a
/// usable sample (HPA then does not scale).
pub fn recommend(
    cfg: &HpaConfig,
    pods: &[PodView],
    current: u32,
    now: Time,
) -> Option<Recommendation> {
    let millis = |x: f64| (x * 1000.0).round() as i64;
    // (usage, request) of pods whose metric counts; unready and missing
    // pods by request only.
    let mut metrics: Vec<(i64, i64)> = Vec::new();
    let mut unready: Vec<i64> = Vec::new();
    let mut missing: Vec<i64> = Vec::new();
    let mut ready_count = 0u32;
    for p in pods {
        let request = millis(p.cpu_request);
        match p.phase {
            PodPhase::Terminating => continue,
            PodPhase::Pending => {
                unready.push(request);
                continue;
            }
            PodPhase::Starting | PodPhase::Running => {}
        }
        let Some(sampled_at) = p.cpu_sampled_at else {
            missing.push(request);
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
            unready.push(request);
            continue;
        }
        ready_count += 1;
        metrics.push((millis(p.cpu_cores), request));
    }
    if metrics.is_empty() {
        return None;
    }
    let target = cfg.target_utilization as i64;
    let ratio_of = |m: &[(i64, i64)]| {
        let (usage, requests) = m
            .iter()
            .fold((0i64, 0i64), |(u, r), &(a, b)| (u + a, r + b));
        let util = if requests > 0 {
            usage * 100 / requests
        } else {
            0
        };
        (util as f64 / target as f64, util)
    };
    let (ratio, util) = ratio_of(&metrics);
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= cfg.tolerance {
            return Some(Recommendation {
                replicas: current,
                utilization: util,
            });
        }
        return Some(Recommendation {
            replicas: (ratio * ready_count as f64).ceil() as u32,
            utilization: util,
        });
    }
    if !missing.is_empty() {
        if ratio < 1.0 {
            let fallback = target.max(100);
            metrics.extend(missing.iter().map(|&r| (r * fallback / 100, r)));
        } else if ratio > 1.0 {
            metrics.extend(missing.iter().map(|&r| (0, r)));
        }
    }
    if scale_up_with_unready {
        metrics.extend(unready.iter().map(|&r| (0, r)));
    }
    let (new_ratio, _) = ratio_of(&metrics);
    if (1.0 - new_ratio).abs() <= cfg.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Some(Recommendation {
            replicas: current,
            utilization: util,
        });
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as u32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Some(Recommendation {
            replicas: current,
            utilization: util,
        });
    }
    Some(Recommendation {
        replicas,
        utilization: util,
    })
}

/// Per-target state: recommendations for stabilisation and scale events for
/// the rate policies.
#[derive(Clone, Debug, Default)]
pub struct HpaState {
    recommendations: Vec<(Time, u32)>,
    scale_up_events: Vec<(Time, u32)>,
    scale_down_events: Vec<(Time, u32)>,
}

impl HpaState {
    /// `normalizeDesiredReplicasWithBehaviors`.
    pub fn normalize_with_behavior(
        &mut self,
        cfg: &HpaConfig,
        b: &Behavior,
        current: u32,
        desired: u32,
        now: Time,
    ) -> u32 {
        if self.recommendations.is_empty() && b.scale_down.stabilization > Span::ZERO {
            self.recommendations.push((now, current));
        }
        // stabilizeRecommendationWithBehaviors
        let up_cutoff = Time::from_nanos(
            now.as_nanos()
                .saturating_sub(b.scale_up.stabilization.as_nanos()),
        );
        let down_cutoff = Time::from_nanos(
            now.as_nanos()
                .saturating_sub(b.scale_down.stabilization.as_nanos()),
        );
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
        let stabilized = current.max(up).min(down);
        match old_slot {
            Some(i) => self.recommendations[i] = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        // convertDesiredReplicasWithBehaviorRate
        if stabilized > current {
            let limit = self.scale_up_limit(&b.scale_up, current, now).max(current);
            let allowed = cfg.max_replicas.min(limit);
            stabilized.min(allowed)
        } else if stabilized < current {
            let limit = self
                .scale_down_limit(&b.scale_down, current, now)
                .min(current);
            let allowed = cfg.min_replicas.max(limit);
            stabilized.max(allowed)
        } else {
            stabilized
        }
    }

    fn changed_within(events: &[(Time, u32)], period: Span, now: Time) -> u32 {
        let cutoff = Time::from_nanos(now.as_nanos().saturating_sub(period.as_nanos()));
        events
            .iter()
            .filter(|(t, _)| *t > cutoff)
            .map(|(_, n)| n)
            .sum()
    }

    /// `calculateScaleUpLimitWithScalingRules`, with the period's starting
    /// point `current - pods added within the period` (baselines.md).
    fn scale_up_limit(&self, rules: &ScalingRules, current: u32, now: Time) -> u32 {
        let pick: fn(u32, u32) -> u32 = match rules.select {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Max => u32::max,
            SelectPolicy::Min => u32::min,
        };
        let mut result: Option<u32> = None;
        for p in &rules.policies {
            let base =
                current.saturating_sub(Self::changed_within(&self.scale_up_events, p.period, now));
            let proposed = match p.kind {
                PolicyKind::Pods => base + p.value,
                PolicyKind::Percent => (base as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as u32,
            };
            result = Some(result.map_or(proposed, |r| pick(r, proposed)));
        }
        result.unwrap_or(current)
    }

    /// `calculateScaleDownLimitWithBehaviors`, with the period's starting
    /// point `current + pods removed within the period` (baselines.md).
    fn scale_down_limit(&self, rules: &ScalingRules, current: u32, now: Time) -> u32 {
        // Upstream inverts the selection for scale-down: Max policy = the
        // largest change = the smallest limit.
        let pick: fn(u32, u32) -> u32 = match rules.select {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Max => u32::min,
            SelectPolicy::Min => u32::max,
        };
        let mut result: Option<u32> = None;
        for p in &rules.policies {
            let base = current + Self::changed_within(&self.scale_down_events, p.period, now);
            let proposed = match p.kind {
                PolicyKind::Pods => base.saturating_sub(p.value),
                PolicyKind::Percent => {
                    (base as f64 * (1.0 - p.value as f64 / 100.0)).max(0.0) as u32
                }
            };
            result = Some(result.map_or(proposed, |r| pick(r, proposed)));
        }
        result.unwrap_or(current)
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
        let cutoff = Time::from_nanos(
            now.as_nanos()
                .saturating_sub(cfg.downscale_stabilization.as_nanos()),
        );
        let mut max = desired;
        let mut old_slot = None;
        for (i, &(t, r)) in self.recommendations.iter().enumerate() {
            if t > cutoff {
                max = max.max(r);
            } else {
                old_slot = Some(i);
            }
        }
        match old_slot {
            Some(i) => self.recommendations[i] = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        let scale_up_limit = (2 * current).max(4);
        let allowed = cfg.max_replicas.min(scale_up_limit);
        max.max(cfg.min_replicas).min(allowed)
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
            let cutoff = Time::from_nanos(now.as_nanos().saturating_sub(period.as_nanos()));
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
        let (desired, why) = if current > cfg.max_replicas {
            (cfg.max_replicas, "above maxReplicas".to_string())
        } else if current < cfg.min_replicas {
            (cfg.min_replicas, "below minReplicas".to_string())
        } else if current == 0 {
            return None;
        } else {
            let rec = recommend(cfg, &svc.pods, current, now)?;
            let desired = match &cfg.behavior {
                Some(b) => state.normalize_with_behavior(cfg, b, current, rec.replicas, now),
                None => state.normalize_legacy(cfg, current, rec.replicas, now),
            };
            (
                desired,
                format!(
                    "cpu {}% of request vs target {}% recommends {}",
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
