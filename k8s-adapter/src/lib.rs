//! selfheal's live adapter: the control core the simulator runs, fed from
//! Prometheus and acting through the Kubernetes API.
//!
//! ```text
//!  wall clock ──▶ Clock::core_time ──▶ Time
//!  Prometheus ──┐
//!  API watches ─┴▶ observe::observe ──▶ Observation ──▶ Controller (selfheal's control core)
//!                                                        │ control::drive (commands, events, wake-up)
//!  Kubernetes API ◀── api::Executor ◀── actuate (Command -> exact requests; dry-run logs them)
//! ```

pub mod actuate;
pub mod api;
pub mod clock;
pub mod config;
pub mod follow;
pub mod lease;
pub mod observe;
pub mod prom;
pub mod record;
pub mod replay;
pub mod safety;
pub mod watch;

use std::time::Duration;

use selfheal_core::control::departure::{DepartureAlarm, DepartureWatch};
use selfheal_core::control::orchestrator::HealingEvent;
use selfheal_core::control::{Command, Controller, Observation, drive};
use selfheal_core::time::{Span, Time};

use crate::clock::Clock;
use crate::config::AdapterConfig;
use crate::prom::Prometheus;

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{0}")]
    Build(#[from] selfheal_core::controllers::ControllerError),
    #[error("{0}")]
    Prometheus(#[from] prom::PromError),
}

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
    /// Pod and replica state from the API's watches; without it, from
    /// kube-state-metrics series.
    state: Option<watch::ClusterState>,
    /// What the healing orchestrator did or declined in the last decision.
    pub events: Vec<(Time, HealingEvent)>,
    /// The departure score over the same observations: on real clusters'
    /// data the detector that warns of the most incidents at the fewest
    /// false alarms (README "The failure predictor on a real cluster").
    departures: DepartureWatch,
    /// The departure episodes that started at the last decision.
    pub alarms: Vec<DepartureAlarm>,
    /// When the core asked to be woken next (none before the first
    /// decision).
    wake_at: Option<Time>,
}

impl Adapter {
    /// The adapter for `cfg`, started at unix time `start` (core time zero
    /// is `backfill_s` earlier, where the history begins).
    pub fn new(cfg: AdapterConfig, start: f64) -> Result<Self, AdapterError> {
        let origin = start - cfg.wall(cfg.backfill_s);
        let controller = selfheal_core::controllers::build_controller(
            &cfg.controller,
            cfg.seed,
            // The per-pod CPU and the request rate are queried as rates
            // over their windows.
            selfheal_core::controllers::MetricsTiming {
                scrape_s: cfg.interval_s,
                cpu_window_s: cfg.cpu_window_s(),
                rate_window_s: cfg.rate_window_s,
                pod_settle_s: cfg.pod_settle_s(),
            },
            selfheal_core::control::scaler::LatencySlo::new(cfg.slo_latency_ms, cfg.slo_objective),
            // Knative reads each service's containerConcurrency from the
            // cluster: here its max_connections.
            &Default::default(),
        )?;
        let departures = DepartureWatch::new(cfg.departure.clone());
        Ok(Adapter {
            prom: Prometheus::connect(
                &cfg.prometheus,
                &cfg.prometheus_http,
                Duration::from_secs(5),
            )?,
            clock: Clock {
                origin,
                time_scale: cfg.time_scale,
            },
            cfg,
            controller,
            state: None,
            events: Vec::new(),
            departures,
            alarms: Vec::new(),
            wake_at: None,
        })
    }

    /// Takes pod and replica state from the API's reflected objects.
    pub fn with_cluster_state(mut self, state: watch::ClusterState) -> Self {
        self.state = Some(state);
        self
    }

    pub fn controller_name(&self) -> &str {
        self.controller.name()
    }

    /// Reads `backfill_s` of history up to unix time `at` back from
    /// Prometheus and hands it to the core; the number of scrapes per
    /// service. Core time zero is `backfill_s` before the adapter's start,
    /// so the history has times of its own.
    pub async fn backfill(&mut self, at: f64) -> Result<Vec<(String, usize)>, prom::PromError> {
        let from = at - self.cfg.wall(self.cfg.backfill_s);
        let mut out = Vec::new();
        for svc in &self.cfg.services {
            let scrapes: Vec<_> =
                observe::history(&self.prom, &self.cfg, svc, from, at, &self.clock)
                    .await?
                    .into_iter()
                    .map(|s| s.metrics)
                    .collect();
            self.controller.handle_history(&svc.name, &scrapes);
            self.departures.handle_history(&svc.name, &scrapes);
            out.push((svc.name.clone(), scrapes.len()));
        }
        Ok(out)
    }

    /// The loop starts ticking at unix time `at`: the core counts its own
    /// schedules (an inner scaler's first sync) from here, as the
    /// simulator's from a run's start, not from core time zero, which lies
    /// `backfill_s` earlier.
    pub fn start(&mut self, at: f64) {
        self.controller.handle_start(self.clock.core_time(at));
    }

    /// Observes at unix time `at` and asks the core for its decisions.
    pub async fn tick(&mut self, at: f64) -> Tick {
        match observe::observe(&self.prom, &self.cfg, at, &self.clock, self.state.as_ref()).await {
            Err(e) => Tick::Skipped(e.to_string()),
            Ok(obs) => Tick::Decided(self.decide(&obs)),
        }
    }

    /// Hands the core one observation and drains its commands and events:
    /// the simulator's control tick, through the same [`drive`] step.
    pub fn decide(&mut self, obs: &Observation) -> Vec<Command> {
        let step = drive(self.controller.as_mut(), obs.now, obs);
        self.events = step.events;
        self.departures.handle_observation(obs);
        self.alarms = std::iter::from_fn(|| self.departures.poll_alarm()).collect();
        self.wake_at = Some(step.wake_at.max(obs.now + self.scrape_interval()));
        step.commands
    }

    /// Wall-clock seconds from unix time `now` until the core's next
    /// observation: when the controller asks (its period, as the simulator
    /// schedules it), but not before Prometheus can have scraped again
    /// (`interval_s`): a sooner observation would repeat the last scrape
    /// and only load Prometheus. Zero when that moment has passed.
    pub fn wait_s(&self, now: f64) -> f64 {
        match self.wake_at {
            Some(t) => (self.clock.unix(t) - now).max(0.0),
            None => self.period_s(),
        }
    }

    /// The time between ticks in wall-clock seconds: the controller's
    /// period, or the scrape interval where that is longer.
    pub fn period_s(&self) -> f64 {
        let core = self.controller.period().max(self.scrape_interval());
        core.as_secs_f64() / self.clock.time_scale
    }

    fn scrape_interval(&self) -> Span {
        Span::from_secs_f64(self.cfg.interval_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::control::ServiceView;
    use selfheal_core::metrics::ServiceMetrics;

    fn observation(t: f64, p99: f64) -> Observation {
        let now = Time::from_secs_f64(t);
        Observation {
            now,
            services: vec![ServiceView {
                name: "api".into(),
                metrics: ServiceMetrics {
                    timestamp: now,
                    cpu_usage: 0.4,
                    memory_usage: 0.3,
                    request_rate: 50.0,
                    error_rate: 0.0,
                    latency_p50: 10.0,
                    latency_p99: p99,
                    active_connections: 2,
                    ready_replicas: 2,
                    desired_replicas: 2,
                },
                desired_replicas: 2,
                revision: 0,
                max_connections: 10,
                pods: Vec::new(),
                concurrency: Vec::new(),
                requests: Vec::new(),
                dependencies: Vec::new(),
                backup: None,
            }],
        }
    }

    fn adapter(extra: &str) -> Adapter {
        let cfg = AdapterConfig::parse(
            &format!(
                "prometheus = \"http://127.0.0.1:9\"\nnamespace = \"shop\"\ninterval_s = 60\n{extra}[[service]]\nname = \"api\"\n"
            ),
            "adapter.toml",
        )
        .unwrap();
        Adapter::new(cfg, 0.0).unwrap()
    }

    #[test]
    fn a_departure_episode_is_reported_once_beside_the_decisions() {
        let mut a = adapter("");
        let mut alarms = Vec::new();
        for i in 0..30 {
            let p99 = if (20..23).contains(&i) { 400.0 } else { 50.0 };
            a.decide(&observation(i as f64 * 60.0, p99));
            alarms.extend(a.alarms.drain(..).map(|x| (x.at.whole_secs(), x.metric)));
        }
        assert_eq!(alarms, vec![(1_200, "p99")]);
    }

    #[test]
    fn the_departure_threshold_is_configurable() {
        // A fourfold p99 is 20 spreads above a flat 50 ms (a spread of
        // 7.5 ms: 5 % of the median plus 5 ms of resolution), below 100.
        let mut a = adapter("[departure]\nthreshold = 100.0\n");
        for i in 0..30 {
            let p99 = if i == 20 { 200.0 } else { 50.0 };
            a.decide(&observation(i as f64 * 60.0, p99));
            assert!(a.alarms.is_empty(), "{:?}", a.alarms);
        }
    }

    #[test]
    fn the_cpu_limit_is_configurable_and_inf_turns_it_off() {
        // A CPU at 40 % of the request bursting once to 95 %: a departure
        // by its range as well, so the threshold is raised past that.
        let burst = |extra: &str| {
            let mut a = adapter(&format!("[departure]\nthreshold = 1000.0\n{extra}"));
            let mut alarms = Vec::new();
            for i in 0..30 {
                let mut obs = observation(i as f64 * 60.0, 50.0);
                if i == 20 {
                    obs.services[0].metrics.cpu_usage = 0.95;
                }
                a.decide(&obs);
                alarms.extend(
                    a.alarms
                        .drain(..)
                        .map(|x| (x.at.whole_secs(), x.metric, x.past_limit)),
                );
            }
            alarms
        };
        assert_eq!(burst(""), vec![(1_200, "cpu", true)]);
        assert_eq!(burst("cpu_limit = 1.8\n"), vec![]);
        assert_eq!(burst("cpu_limit = inf\n"), vec![]);
    }
}
