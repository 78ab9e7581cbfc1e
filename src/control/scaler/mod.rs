//! The autonomous scaler (the seed's `AutonomousScaler`), made real.
//!
//! Every period it pushes the latest scrape into the service's history,
//! forecasts the request rate one pod start-up ahead (random forest, see
//! [`forecast`]), sizes the service for the interval's upper bound at a
//! per-replica capacity (configured, or measured: requests per second a
//! ready pod serves at the CPU target), raises that for CPU or memory above
//! target and for overload errors, bounds it, and applies cooldowns. Every
//! decision carries its reason.

pub mod forecast;

use std::collections::VecDeque;

pub use forecast::{Forecast, ForecastConfig, ForecastSource, Forecaster};

use super::{Command, Controller, Observation, PerService, ServiceView};
use crate::metrics::ServiceMetrics;
use crate::time::{Span, Time};

#[derive(Clone, Debug, PartialEq)]
pub struct ScalerConfig {
    pub period: Span,
    /// How far ahead to forecast: about a pod's start-up plus its first
    /// readiness probe plus a scrape, so capacity is ready when load arrives.
    pub horizon: Span,
    pub forecast: ForecastConfig,
    /// Requests per second one replica serves at the CPU target; `None`
    /// measures it online.
    pub capacity_rps: Option<f64>,
    /// CPU utilisation (of requests) to size for.
    pub cpu_target: f64,
    pub memory_target: f64,
    /// Error rate above which an overloaded service gets more replicas.
    pub error_threshold: f64,
    /// Size for the interval's upper bound (true) or the point forecast.
    pub plan_on_upper: bool,
    pub scale_up_cooldown: Span,
    pub scale_down_cooldown: Span,
    /// A scale-up to at least this multiple of the current replicas ignores
    /// the scale-up cooldown (a flash crowd does not wait 3 minutes).
    pub urgent_factor: f64,
    /// At most this fraction of replicas removed in one decision.
    pub max_scale_down_fraction: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            period: Span::from_secs(30),
            horizon: Span::from_secs(30),
            forecast: ForecastConfig::default(),
            capacity_rps: None,
            cpu_target: 0.7,
            memory_target: 0.85,
            error_threshold: 0.05,
            plan_on_upper: true,
            scale_up_cooldown: Span::from_secs(180),
            scale_down_cooldown: Span::from_secs(300),
            urgent_factor: 1.5,
            max_scale_down_fraction: 0.5,
            min_replicas: 1,
            max_replicas: 100,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingAction {
    ScaleUp,
    ScaleDown,
    Maintain,
}

/// The seed's `ScalingDecision`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingDecision {
    pub at: Time,
    pub service: String,
    pub action: ScalingAction,
    pub current_replicas: u32,
    pub target_replicas: u32,
    pub forecast: Option<Forecast>,
    /// Capacity per replica used for sizing (req/s), if known.
    pub capacity_rps: Option<f64>,
    /// From the forecast interval's width; 0 without a forecast.
    pub confidence: f64,
    pub reason: String,
}

/// Requests per second a ready pod serves at the CPU target, as an
/// exponentially weighted mean of observations with meaningful CPU.
#[derive(Clone, Debug, Default)]
struct CapacityEstimate {
    value: Option<f64>,
}

impl CapacityEstimate {
    fn observe(&mut self, rate: f64, ready: u32, cpu_usage: f64, cpu_target: f64) {
        if ready == 0 || cpu_usage < 0.05 || rate <= 0.0 {
            return;
        }
        let x = rate / ready as f64 * cpu_target / cpu_usage;
        self.value = Some(match self.value {
            None => x,
            Some(v) => 0.9 * v + 0.1 * x,
        });
    }
}

struct ServiceState {
    forecaster: Forecaster,
    capacity: CapacityEstimate,
    last_sample: Option<Time>,
    last_up: Option<Time>,
    last_change: Option<Time>,
}

impl ServiceState {
    /// One new scrape into the forecast history and the capacity estimate.
    fn take_sample(&mut self, m: &ServiceMetrics, cpu_target: f64) {
        self.last_sample = Some(m.timestamp);
        self.forecaster.push(m);
        self.capacity
            .observe(m.request_rate, m.ready_replicas, m.cpu_usage, cpu_target);
    }
}

pub struct AutonomousScaler {
    cfg: ScalerConfig,
    seed: u64,
    services: PerService<ServiceState>,
    pending: VecDeque<Command>,
}

impl AutonomousScaler {
    /// `seed` seeds the forests (from the scenario's control stream).
    pub fn new(mut cfg: ScalerConfig, seed: u64) -> Self {
        let ticks = (cfg.horizon.as_secs_f64() / cfg.period.as_secs_f64())
            .ceil()
            .max(1.0) as usize;
        cfg.forecast.horizon = ticks;
        AutonomousScaler {
            cfg,
            seed,
            services: PerService::default(),
            pending: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ScalerConfig {
        &self.cfg
    }

    fn state(&mut self, name: &str) -> &mut ServiceState {
        let (forecast, seed) = (&self.cfg.forecast, self.seed);
        self.services.get_or_insert_with(name, |n| {
            let mut fc = forecast.clone();
            fc.seed = crate::rng::splitmix64(seed ^ n as u64);
            ServiceState {
                forecaster: Forecaster::new(fc),
                capacity: CapacityEstimate::default(),
                last_sample: None,
                last_up: None,
                last_change: None,
            }
        })
    }

    /// One decision for one service.
    pub fn decide(&mut self, now: Time, svc: &ServiceView) -> ScalingDecision {
        let cfg = self.cfg.clone();
        let st = self.state(&svc.name);
        let m = &svc.metrics;
        let fresh = st.last_sample.is_none_or(|t| m.timestamp > t) && m.timestamp > Time::ZERO;
        if fresh {
            st.take_sample(m, cfg.cpu_target);
        }
        let current = svc.desired_replicas;
        let ready = m.ready_replicas;
        let forecast = if fresh {
            st.forecaster.forecast()
        } else {
            None
        };
        let capacity = cfg.capacity_rps.or(st.capacity.value);
        let mut why = Vec::new();
        let mut desired = 0u32;
        if let (Some(f), Some(cap)) = (forecast, capacity) {
            let load = if cfg.plan_on_upper { f.upper } else { f.rate };
            let n = (load / cap).ceil() as u32;
            why.push(format!(
                "forecast {:.0} req/s (80% interval {:.0}-{:.0}, {:?}) at {:.1} req/s per replica -> {n}",
                f.rate, f.lower, f.upper, f.source, cap
            ));
            desired = n;
        }
        if m.cpu_usage > cfg.cpu_target && ready > 0 {
            let n = (ready as f64 * m.cpu_usage / cfg.cpu_target).ceil() as u32;
            if n > desired {
                why.push(format!(
                    "cpu {:.0}% above target {:.0}% -> {n}",
                    m.cpu_usage * 100.0,
                    cfg.cpu_target * 100.0
                ));
                desired = n;
            }
        }
        if m.memory_usage > cfg.memory_target && current + 1 > desired {
            why.push(format!(
                "memory {:.0}% above target {:.0}% -> {}",
                m.memory_usage * 100.0,
                cfg.memory_target * 100.0,
                current + 1
            ));
            desired = current + 1;
        }
        if m.error_rate > cfg.error_threshold && m.cpu_usage > cfg.cpu_target {
            let n = (current as f64 * (1.0 + m.error_rate)).ceil() as u32;
            if n > desired {
                why.push(format!(
                    "overload errors {:.1}% -> {n}",
                    m.error_rate * 100.0
                ));
                desired = n;
            }
        }
        if why.is_empty() {
            // Nothing to size on yet (no traffic or no capacity estimate).
            desired = current;
            why.push("no forecast or capacity yet: keep".into());
        }
        let bounded = desired.clamp(cfg.min_replicas, cfg.max_replicas);
        let since = |t: Option<Time>| t.map(|t| now - t);
        let (action, target) = if bounded > current {
            let cooling = since(st.last_up).is_some_and(|d| d < cfg.scale_up_cooldown);
            let urgent = bounded as f64 >= current as f64 * cfg.urgent_factor;
            if cooling && !urgent {
                why.push(format!(
                    "scale-up cooldown ({} s)",
                    cfg.scale_up_cooldown.as_secs_f64()
                ));
                (ScalingAction::Maintain, current)
            } else {
                (ScalingAction::ScaleUp, bounded)
            }
        } else if bounded < current {
            if since(st.last_change).is_some_and(|d| d < cfg.scale_down_cooldown) {
                why.push(format!(
                    "scale-down cooldown ({} s)",
                    cfg.scale_down_cooldown.as_secs_f64()
                ));
                (ScalingAction::Maintain, current)
            } else {
                let floor = (current as f64 * (1.0 - cfg.max_scale_down_fraction)).floor() as u32;
                (
                    ScalingAction::ScaleDown,
                    bounded.max(floor).max(cfg.min_replicas),
                )
            }
        } else {
            (ScalingAction::Maintain, current)
        };
        match action {
            ScalingAction::ScaleUp => {
                st.last_up = Some(now);
                st.last_change = Some(now);
            }
            ScalingAction::ScaleDown => st.last_change = Some(now),
            ScalingAction::Maintain => {}
        }
        ScalingDecision {
            at: now,
            service: svc.name.clone(),
            action,
            current_replicas: current,
            target_replicas: target,
            forecast,
            capacity_rps: capacity,
            confidence: forecast.map_or(0.0, |f| f.confidence()),
            reason: why.join("; "),
        }
    }
}

impl Controller for AutonomousScaler {
    fn name(&self) -> &str {
        "selfheal"
    }
    fn period(&self) -> Span {
        self.cfg.period
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        for svc in &obs.services {
            let d = self.decide(now, svc);
            if d.action != ScalingAction::Maintain {
                self.pending.push_back(Command::Scale {
                    service: d.service.clone(),
                    replicas: d.target_replicas,
                    reason: format!(
                        "{}: {} -> {}",
                        d.reason, d.current_replicas, d.target_replicas
                    ),
                });
            }
        }
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.pending.pop_front()
    }
    fn handle_history(&mut self, service: &str, scrapes: &[ServiceMetrics]) {
        let cpu_target = self.cfg.cpu_target;
        let st = self.state(service);
        for m in scrapes {
            if st.last_sample.is_none_or(|t| m.timestamp > t) {
                st.take_sample(m, cpu_target);
            }
        }
    }
}
