//! Progressive-delivery analysis with automatic rollback, as Argo Rollouts
//! does it: the comparison arm "Kubernetes defaults + mesh + automated
//! rollback" of the chaos experiments.
//!
//! When a service's Deployment moves to a new revision, an analysis run
//! starts: every `interval` it takes one measurement of the service's
//! success rate and p99 latency (the Prometheus queries of a typical
//! `AnalysisTemplate`; Flagger's defaults are a 60 s interval, success rate
//! at least 99 % and p99 at most 500 ms). With Argo's `failureLimit: 0` the
//! first failed measurement aborts the rollout and traffic returns to the
//! stable revision, here as a `Rollback`. The analysis ends after `count`
//! measurements. Upstream: argo-rollouts `AnalysisRun` semantics
//! (failureLimit, count, interval); the defaults are from the reference
//! table of remediation mechanisms.
//!
//! A rollback it asked for is itself a new revision; that one is not
//! analysed (Argo returns to the stable ReplicaSet without a new analysis).

use std::collections::VecDeque;

use super::paced::Paced;
use super::{Command, Controller, Observation, PerService};
use crate::time::{Span, Time};

#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisConfig {
    pub interval: Span,
    /// Measurements per analysis run.
    pub count: u32,
    /// Failed measurements tolerated before the rollout aborts.
    pub failure_limit: u32,
    /// A measurement fails below this success rate ...
    pub min_success_rate: f64,
    /// ... or above this p99, in ms.
    pub max_p99_ms: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            interval: Span::from_secs(60),
            count: 5,
            failure_limit: 0,
            min_success_rate: 0.99,
            max_p99_ms: 500.0,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Run {
    revision: u32,
    next_measurement: Time,
    taken: u32,
    failed: u32,
    /// The revision this controller's own rollback will create.
    ours: Option<u32>,
    active: bool,
}

/// An inner scaler plus rollout analysis on every service.
pub struct RolloutAnalysis {
    name: String,
    inner: Paced,
    cfg: AnalysisConfig,
    runs: PerService<Run>,
    commands: VecDeque<Command>,
}

impl RolloutAnalysis {
    pub fn new(inner: Box<dyn Controller>, cfg: AnalysisConfig) -> Self {
        RolloutAnalysis {
            name: format!("{}+argo", inner.name()),
            inner: Paced::new(inner),
            cfg,
            runs: PerService::default(),
            commands: VecDeque::new(),
        }
    }
}

impl Controller for RolloutAnalysis {
    fn name(&self) -> &str {
        &self.name
    }

    /// Ticks at a fraction of the analysis interval so measurements land on
    /// time; the inner scaler keeps its own period.
    fn period(&self) -> Span {
        Span::from_secs(5)
    }

    fn handle_start(&mut self, now: Time) {
        self.inner.handle_start(now);
    }

    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        for view in &obs.services {
            let cfg = &self.cfg;
            let run = self.runs.get_or_insert_with(&view.name, |_| Run {
                revision: view.revision,
                ..Run::default()
            });
            if view.revision != run.revision {
                run.revision = view.revision;
                run.active = run.ours != Some(view.revision);
                run.ours = None;
                run.taken = 0;
                run.failed = 0;
                run.next_measurement = now + cfg.interval;
                continue;
            }
            if !run.active || now < run.next_measurement {
                continue;
            }
            let m = &view.metrics;
            let success = 1.0 - m.error_rate;
            let passed = success >= cfg.min_success_rate && m.latency_p99 <= cfg.max_p99_ms;
            run.taken += 1;
            run.next_measurement = now + cfg.interval;
            if !passed {
                run.failed += 1;
            }
            if run.failed > cfg.failure_limit {
                run.active = false;
                run.ours = Some(view.revision + 1);
                self.commands.push_back(Command::Rollback {
                    service: view.name.clone(),
                    reason: format!(
                        "analysis failed: success rate {:.1} % (min {:.1} %), p99 {:.0} ms (max {:.0} ms)",
                        100.0 * success,
                        100.0 * cfg.min_success_rate,
                        m.latency_p99,
                        cfg.max_p99_ms
                    ),
                });
            } else if run.taken >= cfg.count {
                run.active = false;
            }
        }
        if self.inner.handle_observation(now, obs) {
            while let Some(c) = self.inner.poll_command() {
                self.commands.push_back(c);
            }
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    fn handle_history(&mut self, service: &str, scrapes: &[crate::metrics::ServiceMetrics]) {
        self.inner.handle_history(service, scrapes);
    }
}
