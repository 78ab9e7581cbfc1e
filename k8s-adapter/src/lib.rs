//! selfheal's live adapter: the control core the simulator runs, fed from
//! Prometheus and acting through the Kubernetes API.
//!
//! ```text
//!  wall clock ──▶ Clock::core_time ──▶ Time
//!  Prometheus ──▶ observe::observe ──▶ Observation ──▶ Controller (selfheal's control core)
//!                                                        │ poll_command
//!  Kubernetes API ◀── api::Executor ◀── actuate (Command -> exact requests; dry-run logs them)
//! ```

pub mod actuate;
pub mod api;
pub mod clock;
pub mod config;
pub mod observe;
pub mod prom;
pub mod safety;

use std::time::Duration;

use selfheal::control::{Command, Controller, Observation};

use crate::clock::Clock;
use crate::config::AdapterConfig;
use crate::prom::Prometheus;

/// What one tick did.
#[derive(Debug, PartialEq)]
pub enum Tick {
    /// The observation failed (Prometheus unreachable, a malformed answer,
    /// a missing series): the core was not asked, nothing is done.
    Skipped(String),
    /// The core's commands for this observation.
    Decided(Vec<Command>),
}

pub struct Adapter {
    pub cfg: AdapterConfig,
    pub clock: Clock,
    prom: Prometheus,
    controller: Box<dyn Controller>,
}

impl Adapter {
    /// The adapter for `cfg`, with core time zero at unix time `origin`.
    pub fn new(cfg: AdapterConfig, origin: f64) -> Result<Self, selfheal::sim::BuildError> {
        let controller = selfheal::sim::controllers::build_controller(
            &cfg.controller,
            cfg.seed,
            cfg.interval_s,
            cfg.slo_latency_ms,
        )?;
        Ok(Adapter {
            prom: Prometheus::new(&cfg.prometheus, Duration::from_secs(5)),
            clock: Clock {
                origin,
                time_scale: cfg.time_scale,
            },
            cfg,
            controller,
        })
    }

    pub fn controller_name(&self) -> &str {
        self.controller.name()
    }

    /// Observes at unix time `at` and asks the core for its decisions.
    pub async fn tick(&mut self, at: f64) -> Tick {
        match observe::observe(&self.prom, &self.cfg, at, &self.clock).await {
            Err(e) => Tick::Skipped(e.to_string()),
            Ok(obs) => Tick::Decided(self.decide(&obs)),
        }
    }

    /// Hands the core one observation and drains its commands, exactly as
    /// the simulator's control tick does.
    pub fn decide(&mut self, obs: &Observation) -> Vec<Command> {
        self.controller.handle_observation(obs.now, obs);
        let mut out = Vec::new();
        while let Some(c) = self.controller.poll_command() {
            out.push(c);
        }
        out
    }
}
