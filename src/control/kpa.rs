//! The Knative Pod Autoscaler on concurrency, with its stable and panic
//! windows.
//!
//! Upstream: knative/serving `pkg/autoscaler/scaling/autoscaler.go`
//! (`Scale`) and the defaults of `config/core/configmaps/autoscaler.yaml`,
//! as `baselines.md` states them. Scale to zero is off: the simulated
//! cluster has no activator to buffer requests, so `min_scale` is at least 1.

use std::collections::VecDeque;

use super::{Command, Controller, Observation, PerService, ServiceView};
use crate::time::{Span, Time};

#[derive(Clone, Debug, PartialEq)]
pub struct KpaConfig {
    /// Target in-flight requests per pod. `None` derives it as Knative does:
    /// container-concurrency-target-percentage (70 %) of the service's
    /// `containerConcurrency` when it has one, else of
    /// container-concurrency-target-default (100).
    pub target: Option<f64>,
    pub target_percentage: f64,
    pub default_concurrency: f64,
    pub stable_window: Span,
    /// Panic window as a percent of the stable window.
    pub panic_window_percent: f64,
    /// panic-threshold-percentage 200 %.
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub min_scale: u32,
    pub max_scale: u32,
    pub tick: Span,
}

impl Default for KpaConfig {
    fn default() -> Self {
        KpaConfig {
            target: None,
            target_percentage: 0.7,
            default_concurrency: 100.0,
            stable_window: Span::from_secs(60),
            panic_window_percent: 10.0,
            panic_threshold: 2.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            min_scale: 1,
            max_scale: 100,
            tick: Span::from_secs(2),
        }
    }
}

impl KpaConfig {
    /// The per-pod target for a service with this `containerConcurrency`
    /// (0 = unlimited).
    pub fn target_for(&self, container_concurrency: u32) -> f64 {
        self.target.unwrap_or_else(|| {
            let base = if container_concurrency > 0 {
                container_concurrency as f64
            } else {
                self.default_concurrency
            };
            base * self.target_percentage
        })
    }
}

/// Per-revision decider state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KpaState {
    panic_since: Option<Time>,
    last_over_threshold: Option<Time>,
    max_panic_pods: u32,
}

/// One tick's inputs and result, for explanations and tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KpaDecision {
    pub stable: f64,
    pub panic: f64,
    pub desired: u32,
    pub panicking: bool,
}

impl KpaState {
    /// `Scale`: `concurrency` holds per-second averages of the summed
    /// in-flight requests, oldest first.
    pub fn scale(
        &mut self,
        cfg: &KpaConfig,
        target: f64,
        concurrency: &[f64],
        ready_pods: u32,
        now: Time,
    ) -> Option<KpaDecision> {
        if concurrency.is_empty() {
            return None;
        }
        let stable_n = (cfg.stable_window.as_secs_f64().round() as usize).max(1);
        let panic_n = ((cfg.stable_window.as_secs_f64() * cfg.panic_window_percent / 100.0).round()
            as usize)
            .max(1);
        let mean_last = |n: usize| {
            let tail = &concurrency[concurrency.len().saturating_sub(n)..];
            tail.iter().sum::<f64>() / tail.len() as f64
        };
        let (stable, panic) = (mean_last(stable_n), mean_last(panic_n));
        let ready = ready_pods.max(1) as f64;
        let max_up = (cfg.max_scale_up_rate * ready).ceil();
        let max_down = (ready / cfg.max_scale_down_rate).floor();
        let dspc = (stable / target).ceil().clamp(max_down, max_up);
        let dppc = (panic / target).ceil().clamp(max_down, max_up);
        let over = dppc / ready >= cfg.panic_threshold;
        if over {
            self.last_over_threshold = Some(now);
            if self.panic_since.is_none() {
                self.panic_since = Some(now);
            }
        } else if let Some(last) = self.last_over_threshold {
            // Leave panic after one stable window without crossing.
            if self.panic_since.is_some() && now >= last + cfg.stable_window {
                self.panic_since = None;
                self.max_panic_pods = 0;
            }
        }
        let mut desired = dspc as u32;
        if self.panic_since.is_some() {
            // Never scale down while panicking.
            self.max_panic_pods = self.max_panic_pods.max(dspc as u32).max(dppc as u32);
            desired = self.max_panic_pods;
        }
        let desired = desired.clamp(cfg.min_scale.max(1), cfg.max_scale);
        Some(KpaDecision {
            stable,
            panic,
            desired,
            panicking: self.panic_since.is_some(),
        })
    }
}

/// One KPA per service.
pub struct Kpa {
    cfg: KpaConfig,
    states: PerService<KpaState>,
    pending: VecDeque<Command>,
}

impl Kpa {
    pub fn new(cfg: KpaConfig) -> Self {
        Kpa {
            cfg,
            states: PerService::default(),
            pending: VecDeque::new(),
        }
    }

    fn decide(
        cfg: &KpaConfig,
        state: &mut KpaState,
        svc: &ServiceView,
        now: Time,
    ) -> Option<Command> {
        let ready = svc.pods.iter().filter(|p| p.ready).count() as u32;
        let target = cfg.target_for(svc.max_connections);
        let d = state.scale(cfg, target, &svc.concurrency, ready, now)?;
        if d.desired == svc.desired_replicas {
            return None;
        }
        Some(Command::Scale {
            service: svc.name.clone(),
            replicas: d.desired,
            reason: format!(
                "concurrency stable {:.1} panic {:.1} vs target {} per pod{}: {} -> {}",
                d.stable,
                d.panic,
                target,
                if d.panicking { " (panic mode)" } else { "" },
                svc.desired_replicas,
                d.desired
            ),
        })
    }
}

impl Controller for Kpa {
    fn name(&self) -> &str {
        "kpa"
    }
    fn period(&self) -> Span {
        self.cfg.tick
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        for svc in &obs.services {
            let state = self
                .states
                .get_or_insert_with(&svc.name, |_| KpaState::default());
            if let Some(cmd) = Self::decide(&self.cfg, state, svc, now) {
                self.pending.push_back(cmd);
            }
        }
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.pending.pop_front()
    }
}
