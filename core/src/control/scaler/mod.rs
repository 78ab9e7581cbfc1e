//! The autonomous scaler (the seed's `AutonomousScaler`), made real.
//!
//! Every period it pushes the latest scrape into the service's history,
//! forecasts the request rate one pod start-up ahead (random forest, see
//! [`forecast`]), and sizes the service for the interval's upper bound:
//! with a latency objective, the fewest replicas whose predicted latency
//! quantile meets it across the call graph ([`sizing`]), with the CPU as a
//! guard; without one, at a per-replica capacity (configured, or measured:
//! requests per second a ready pod serves at the CPU target). It raises
//! that for CPU or memory above target and for overload errors, bounds it,
//! and applies cooldowns. Every decision carries its reason.

pub mod forecast;
pub mod sizing;

use std::collections::VecDeque;

pub use forecast::{Forecast, ForecastConfig, ForecastSource, Forecaster};
pub use sizing::LatencySlo;
use sizing::{Stage, StageModel, StagePlan};

use super::{Command, Controller, Observation, PerService, ServiceView};
use crate::metrics::ServiceMetrics;
use crate::time::{Span, Time};

#[derive(Clone, Debug, PartialEq)]
pub struct ScalerConfig {
    /// How often it looks. It decides only on a scrape it has not seen, so
    /// a period shorter than the scrape interval bounds how stale a scrape
    /// is when it is acted on.
    pub period: Span,
    /// The window the scraped request rate is averaged over (the
    /// scenario's `rate_window_s`, the adapter's query window): how the
    /// window's rate moved between two scrapes gives the rate of the newest
    /// stretch ([`newest_rate`]).
    pub rate_window: Span,
    /// Between two scrapes: the forecast's history gains one sample per
    /// scrape or per period, whichever is longer.
    pub scrape_interval: Span,
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
    /// the scale-up cooldown (a flash crowd does not wait for it).
    pub urgent_factor: f64,
    /// At most this fraction of replicas removed in one decision.
    pub max_scale_down_fraction: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Size for this latency objective ([`sizing`]); `None` sizes for the
    /// CPU target.
    pub slo: Option<LatencySlo>,
}

/// It looks every second, so it acts on each scrape within a second of it
/// (at a 30 s tick a flash crowd's first scrape waited up to 30 s), with
/// 30 s between scale-ups (the seed's 180 s held a climbing load to one
/// step in three minutes unless the step was urgent). Chosen on the
/// decision-quality suite's training families only.
impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            period: Span::from_secs(1),
            rate_window: Span::from_secs(60),
            scrape_interval: Span::from_secs(15),
            horizon: Span::from_secs(30),
            forecast: ForecastConfig::default(),
            capacity_rps: None,
            cpu_target: 0.7,
            memory_target: 0.85,
            error_threshold: 0.05,
            plan_on_upper: true,
            scale_up_cooldown: Span::from_secs(30),
            scale_down_cooldown: Span::from_secs(300),
            urgent_factor: 1.5,
            max_scale_down_fraction: 0.5,
            min_replicas: 1,
            max_replicas: 100,
            slo: None,
        }
    }
}

/// The plan never assumes the rate more than doubles within one horizon.
/// A conformal interval calibrated on the errors of a regime switch (a
/// queue that wakes from zero, a flash crowd's first minute) stays that
/// wide for as many forecasts as its error window holds; sized on, it would
/// hold the most replicas long after the switch. Doubling per step is also
/// the fastest growth HPA's default scale-up policy follows (100 % per
/// 15 s).
const MAX_GROWTH_PER_HORIZON: f64 = 2.0;

impl ScalerConfig {
    /// The request rate to size for: the forecast (its interval's upper
    /// bound, when so configured), never below the rate measured now (a
    /// forest trained on the last minutes lags a step up by a tick or
    /// more) and never above [`MAX_GROWTH_PER_HORIZON`] times the larger
    /// of the measured rate and the point forecast.
    pub fn planned_rate(&self, measured: f64, f: &Forecast) -> f64 {
        let bound = if self.plan_on_upper { f.upper } else { f.rate };
        bound
            .min(MAX_GROWTH_PER_HORIZON * measured.max(f.rate))
            .max(measured)
    }

    /// The defaults for sizing for `slo`: those of sizing for the CPU, on
    /// the forecast's 95 % bound. This, and the cadence both share, were
    /// chosen on the decision-quality suite's training families (diurnal,
    /// ramp, step, bursts) only.
    pub fn for_slo(slo: LatencySlo) -> Self {
        let d = ScalerConfig::default();
        ScalerConfig {
            forecast: ForecastConfig {
                interval_level: 0.95,
                ..d.forecast.clone()
            },
            slo: Some(slo),
            ..d
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
    /// Sizing for a latency objective: the predicted latency quantile at
    /// the chosen size, calls included (ms).
    pub predicted_latency_ms: Option<f64>,
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
    /// CPU-seconds per request (exponentially weighted), from the pods'
    /// CPU samples: the latency model's service time.
    cpu_per_request: Option<f64>,
    /// Cores the pods used in their latest CPU samples.
    cores_now: f64,
    /// Measured p99 minus the latency model's prediction at the measured
    /// state, seconds (exponentially weighted).
    latency_offset: Option<f64>,
    /// The request rates of the scrape before the latest and of the latest.
    rates: (f64, f64),
    /// When the scrape before the latest was taken.
    previous_sample: Option<Time>,
    last_sample: Option<Time>,
    last_up: Option<Time>,
    last_change: Option<Time>,
    /// Ready pods at the latest scrape.
    ready_seen: Option<u32>,
    /// The latest scrape at which the service was not steady (see
    /// `size_for_slo`'s calibration).
    unsettled_at: Option<Time>,
    /// Per callee, the share of this service's requests that call it,
    /// learned (exponentially weighted) on steady windows only.
    call_shares: Vec<(String, f64)>,
}

/// What one scrape of a service brought: its forecast when the scrape was
/// new (no decision is made on a scrape already seen).
#[derive(Clone, Copy, Debug, Default)]
struct Fresh {
    forecast: Option<Forecast>,
    new_scrape: bool,
}

/// A pod's CPU limit over its request (1 when either is unknown): where a
/// utilisation of the limit sits in HPA's units of the request.
fn limit_over_request(svc: &ServiceView) -> f64 {
    let (limit, request) = svc
        .pods
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.cpu_limit, a.1 + p.cpu_request));
    if limit > 0.0 && request > 0.0 {
        limit / request
    } else {
        1.0
    }
}

/// Cores a pod may use: the mean limit, else the mean request, else one.
fn cores_per_pod(svc: &ServiceView) -> f64 {
    let n = svc.pods.len().max(1) as f64;
    let limit = svc.pods.iter().map(|p| p.cpu_limit).sum::<f64>() / n;
    let request = svc.pods.iter().map(|p| p.cpu_request).sum::<f64>() / n;
    if limit > 0.0 {
        limit
    } else if request > 0.0 {
        request
    } else {
        1.0
    }
}

impl ServiceState {
    /// The request rate now: the scraped rate, the rate the pods' CPU
    /// says they serve, or the newest stretch's rate, whichever is
    /// highest. The rate is a window of a minute or so, a CPU sample a few
    /// seconds; in a flash crowd's first minute the rate still averages in
    /// the calm before and lags the CPU by half the load or more, and the
    /// CPU of saturated pods lags the load.
    fn rate_now(&self, m: &ServiceMetrics, window: Span) -> f64 {
        let served = self
            .cpu_per_request
            .filter(|&c| c > 0.0)
            .map_or(0.0, |c| self.cores_now / c);
        let newest = match (self.previous_sample, self.last_sample) {
            (Some(a), Some(b)) => newest_rate(self.rates, b - a, window),
            _ => 0.0,
        };
        m.request_rate.max(served).max(newest)
    }

    /// The latest scrape's rate within 10 % of the one before.
    fn rate_steady(&self) -> bool {
        let (before, now) = self.rates;
        (now - before).abs() <= 0.1 * now.max(before)
    }

    /// One new scrape into the forecast history and the capacity estimate.
    fn take_sample(&mut self, m: &ServiceMetrics, cpu_target: f64) {
        self.rates = (self.rates.1, m.request_rate);
        self.previous_sample = self.last_sample;
        self.last_sample = Some(m.timestamp);
        self.forecaster.push(m);
        self.capacity
            .observe(m.request_rate, m.ready_replicas, m.cpu_usage, cpu_target);
    }
}

/// The rate of the newest `since` seconds, rising only: a window of
/// `window` seconds whose rate went from `before` to `now` in `since`
/// gained `since` seconds of new load and lost as many of the oldest, so
/// the new stretch's rate is the old stretch's plus `window / since` times
/// the window's rise. The old stretch is taken at `before`, the window's
/// mean: exact at the first scrape after a step; at later scrapes within
/// the window it overstates by the share of the step the window already
/// held, erring towards capacity. 0 when the rate fell or when `since` is
/// not shorter than the window.
pub fn newest_rate((before, now): (f64, f64), since: Span, window: Span) -> f64 {
    let (since, window) = (since.as_secs_f64(), window.as_secs_f64());
    let rise = now - before;
    if since <= 0.0 || since >= window || rise.is_nan() || rise <= 0.0 {
        return 0.0;
    }
    before + window / since * rise
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
        let sample = cfg.period.max(cfg.scrape_interval);
        let ticks = (cfg.horizon.as_secs_f64() / sample.as_secs_f64())
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
                cpu_per_request: None,
                cores_now: 0.0,
                latency_offset: None,
                rates: (f64::NAN, f64::NAN),
                previous_sample: None,
                last_sample: None,
                last_up: None,
                last_change: None,
                ready_seen: None,
                unsettled_at: None,
                call_shares: Vec::new(),
            }
        })
    }

    /// One decision for one service, sized on its own (its calls, if any,
    /// are not in view).
    pub fn decide(&mut self, now: Time, svc: &ServiceView) -> ScalingDecision {
        let services = std::slice::from_ref(svc);
        let fresh = self.observe(svc);
        let sized = self.size_for_slo(services, &[fresh])[0];
        self.decide_sized(now, svc, fresh.forecast, sized)
    }

    /// Takes a new scrape into the service's history and estimates, and
    /// forecasts from it.
    fn observe(&mut self, svc: &ServiceView) -> Fresh {
        let cpu_target = self.cfg.cpu_target;
        let st = self.state(&svc.name);
        let m = &svc.metrics;
        let new_scrape = st.last_sample.is_none_or(|t| m.timestamp > t) && m.timestamp > Time::ZERO;
        if !new_scrape {
            return Fresh::default();
        }
        st.take_sample(m, cpu_target);
        let cores: f64 = svc
            .pods
            .iter()
            .filter(|p| p.cpu_sampled_at.is_some())
            .map(|p| p.cpu_cores)
            .sum();
        st.cores_now = cores;
        if m.request_rate >= 1.0 && cores > 0.0 {
            let x = cores / m.request_rate;
            st.cpu_per_request = Some(st.cpu_per_request.map_or(x, |v| 0.8 * v + 0.2 * x));
        }
        Fresh {
            forecast: st.forecaster.forecast(),
            new_scrape,
        }
    }

    /// The latency objective's plan for the services in view (all `None`
    /// without an objective). Calibrates each service's offset on a new
    /// scrape first, callees before callers.
    fn size_for_slo(
        &mut self,
        services: &[ServiceView],
        fresh: &[Fresh],
    ) -> Vec<Option<StagePlan>> {
        let Some(slo) = self.cfg.slo else {
            return vec![None; services.len()];
        };
        let index = |name: &str| services.iter().position(|s| s.name == name);
        let (min, max) = (self.cfg.min_replicas, self.cfg.max_replicas);
        let window = self.cfg.rate_window;
        let mut stages: Vec<Stage> = Vec::with_capacity(services.len());
        for (svc, f) in services.iter().zip(fresh) {
            let m = &svc.metrics;
            let st = self.state(&svc.name);
            let (rate_now, cpu_per_request, offset_s) = (
                st.rate_now(m, window),
                st.cpu_per_request,
                st.latency_offset.unwrap_or(0.0),
            );
            let calls = svc
                .dependencies
                .iter()
                .filter_map(|d| {
                    let j = index(&d.service)?;
                    let share = if m.request_rate > 0.0 {
                        (services[j].metrics.request_rate / m.request_rate).clamp(0.0, 1.0)
                    } else {
                        1.0
                    };
                    Some((j, share))
                })
                .collect();
            stages.push(Stage {
                name: svc.name.clone(),
                model: cpu_per_request.map(|cpu_s| StageModel {
                    cpu_s,
                    cores: cores_per_pod(svc),
                    cs2: slo.service_cv2,
                }),
                rate: f
                    .forecast
                    .map_or(rate_now, |f| self.cfg.planned_rate(rate_now, &f)),
                calls,
                offset_s,
                current: svc.desired_replicas,
                min,
                max,
            });
        }
        // Calibrate at the measured state, callees first, and only where
        // the service and everything it calls have run steady (under the
        // CPU guard, almost no errors, the rate within 10 % of the scrape
        // before, the same ready pods) for a whole rate window: the
        // scraped p99 covers that window, so an overload's queue, a burst
        // that the window averages away, or pods that came ready within it
        // would be carried into the next plan as an offset. (Calibrating on
        // the first steady scrape after a burst's onset read a p99 of
        // 250 ms from the queue the onset left, and the plan held half as
        // many pods again as the burst needed for five minutes.)
        let mut steady = Vec::with_capacity(services.len());
        for s in services {
            let m = &s.metrics;
            let guarded = m.cpu_usage <= slo.cpu_guard * limit_over_request(s);
            let st = self.state(&s.name);
            if !(guarded && m.error_rate < 0.01 && st.rate_steady())
                || st.ready_seen != Some(m.ready_replicas)
            {
                st.unsettled_at = Some(m.timestamp);
            }
            st.ready_seen = Some(m.ready_replicas);
            steady.push(
                st.unsettled_at
                    .is_none_or(|t| m.timestamp.saturating_sub(t) >= window),
            );
        }
        let all_steady: Vec<bool> = (0..services.len())
            .map(|i| {
                let mut stack = vec![(i, 0)];
                while let Some((k, d)) = stack.pop() {
                    if !steady[k] {
                        return false;
                    }
                    if d < services.len() {
                        stack.extend(stages[k].calls.iter().map(|c| (c.0, d + 1)));
                    }
                }
                true
            })
            .collect();
        // A call's share is learned where caller and callee run steady: in
        // an overload the callee sees only what its caller got through (a
        // flash crowd's front end at 1 058 req/s passed 385 on), and a share
        // read there would size the callee for the throttled rate.
        for (i, svc) in services.iter().enumerate() {
            let learn = fresh[i].new_scrape && all_steady[i] && svc.metrics.request_rate > 0.0;
            let st = self.state(&svc.name);
            for call in &mut stages[i].calls {
                let callee = &services[call.0].name;
                let known = st.call_shares.iter_mut().find(|(n, _)| n == callee);
                call.1 = match (known, learn) {
                    (Some((_, v)), true) => {
                        *v = 0.7 * *v + 0.3 * call.1;
                        *v
                    }
                    (Some((_, v)), false) => *v,
                    (None, true) => {
                        st.call_shares.push((callee.clone(), call.1));
                        call.1
                    }
                    (None, false) => call.1,
                };
            }
        }
        // A callee plans for at least what its callers plan to send it.
        for _ in 0..services.len() {
            for i in 0..stages.len() {
                for k in 0..stages[i].calls.len() {
                    let (j, share) = stages[i].calls[k];
                    if j != i {
                        stages[j].rate = stages[j].rate.max(stages[i].rate * share);
                    }
                }
            }
        }
        let measured: Vec<f64> = services.iter().map(|s| s.metrics.request_rate).collect();
        let ready: Vec<u32> = services.iter().map(|s| s.metrics.ready_replicas).collect();
        let mut done = vec![false; services.len()];
        for _ in 0..services.len() {
            for i in 0..services.len() {
                if done[i] || stages[i].calls.iter().any(|&(j, _)| !done[j] && j != i) {
                    continue;
                }
                done[i] = true;
                let p99 = services[i].metrics.latency_p99 / 1000.0;
                if !fresh[i].new_scrape
                    || ready[i] == 0
                    || measured[i] <= 0.0
                    || !p99.is_finite()
                    || !all_steady[i]
                {
                    continue;
                }
                stages[i].offset_s = 0.0;
                let predicted = sizing::latency(&stages, &measured, &ready, i, 0.99).quantile_s();
                let st = self.state(&services[i].name);
                if predicted.is_finite() {
                    // Beyond the objective's latency an offset changes no
                    // plan (the objective is out of reach either way).
                    let x = (p99 - predicted).clamp(-0.5 * predicted, slo.latency_ms / 1000.0);
                    st.latency_offset = Some(st.latency_offset.map_or(x, |v| 0.7 * v + 0.3 * x));
                }
                stages[i].offset_s = st.latency_offset.unwrap_or(0.0);
            }
        }
        sizing::plan(&stages, &slo)
    }

    /// The decision for one service given its forecast and, with a
    /// latency objective, its plan.
    fn decide_sized(
        &mut self,
        now: Time,
        svc: &ServiceView,
        forecast: Option<Forecast>,
        sized: Option<StagePlan>,
    ) -> ScalingDecision {
        let cfg = self.cfg.clone();
        let st = self.state(&svc.name);
        let m = &svc.metrics;
        let current = svc.desired_replicas;
        let ready = m.ready_replicas;
        let capacity = cfg.capacity_rps.or(st.capacity.value);
        let mut why = Vec::new();
        let mut desired = 0u32;
        let predicted = forecast.and(sized).map(|z| z.predicted_ms);
        let cpu_limit = match (forecast.and(sized), cfg.slo) {
            (Some(z), Some(slo)) => {
                why.push(if z.met {
                    format!(
                        "{:.0} req/s: predicted p{} {:.0} ms at {} (objective {:.0} ms, planned to {:.0} %)",
                        z.rate,
                        100.0 * slo.quantile,
                        z.predicted_ms,
                        z.replicas,
                        slo.latency_ms,
                        100.0 * slo.headroom
                    )
                } else {
                    format!(
                        "{:.0} req/s: predicted p{} {:.0} ms at {}: the objective of {:.0} ms is not reachable by replicas (the latency is outside the queues), CPU target {:.0} %",
                        z.rate,
                        100.0 * slo.quantile,
                        z.predicted_ms,
                        z.replicas,
                        slo.latency_ms,
                        100.0 * cfg.cpu_target
                    )
                });
                desired = z.replicas;
                if z.met {
                    // The guard, in HPA's units of the request.
                    slo.cpu_guard * limit_over_request(svc)
                } else {
                    // Out of the model's reach: size as the CPU target would.
                    cfg.cpu_target
                }
            }
            _ => cfg.cpu_target,
        };
        if let (None, Some(f), Some(cap)) = (predicted, forecast, capacity) {
            let load = cfg.planned_rate(m.request_rate, &f);
            let n = (load / cap).ceil() as u32;
            why.push(format!(
                "forecast {:.0} req/s ({:.0}% interval {:.0}-{:.0}, {:?}), planned {:.0} req/s at {:.1} req/s per replica -> {n}",
                f.rate,
                100.0 * f.level,
                f.lower,
                f.upper,
                f.source,
                load,
                cap
            ));
            desired = n;
        }
        if m.cpu_usage > cpu_limit && ready > 0 {
            let n = (ready as f64 * m.cpu_usage / cpu_limit).ceil() as u32;
            if n > desired {
                why.push(format!(
                    "cpu {:.0}% above target {:.0}% -> {n}",
                    m.cpu_usage * 100.0,
                    cpu_limit * 100.0
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
        // Errors count as overload only with the CPU past what the plan
        // allows: sized for the SLO, pods run above the CPU target, and a
        // bad revision's own errors there would add replicas that the
        // next plan takes away again.
        if m.error_rate > cfg.error_threshold && m.cpu_usage > cpu_limit {
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
            predicted_latency_ms: predicted,
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
        let fresh: Vec<Fresh> = obs.services.iter().map(|s| self.observe(s)).collect();
        if fresh.iter().all(|f| !f.new_scrape) {
            return;
        }
        let sized = self.size_for_slo(&obs.services, &fresh);
        for ((svc, f), z) in obs.services.iter().zip(&fresh).zip(sized) {
            if !f.new_scrape {
                // Nothing new to decide on: a tick between scrapes only
                // shortens the wait for the next one.
                continue;
            }
            let d = self.decide_sized(now, svc, f.forecast, z);
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
