//! The Knative Pod Autoscaler on concurrency or requests per second
//! (`autoscaling.knative.dev/metric`), with its stable and panic windows.
//!
//! Upstream: knative/serving `pkg/autoscaler/scaling/autoscaler.go`
//! (`newAutoscaler`, `Scale`), `pkg/autoscaler/resources/target.go`
//! (`ResolveMetricTarget`) and the defaults of
//! `config/core/configmaps/autoscaler.yaml`; `tests/upstream_kpa.rs` runs
//! upstream's `autoscaler_test.go` cases. Knative's data plane (each pod
//! admitting `containerConcurrency` requests, the activator queueing the
//! rest for the next free slot) is the simulator's, for runs under this
//! controller (`sim::engine`, `knative_data_plane`), with the activator
//! always in the path; the excess burst capacity is computed for the
//! decision's record. Scale to zero is off (`min_scale` at least 1): the
//! simulated activator does not hold requests for a revision with no
//! ready pod.

use std::collections::{BTreeMap, VecDeque};

use super::{Command, Controller, Observation, PerService, ServiceView};
use crate::time::{Span, Time};

/// `autoscaling.knative.dev/metric`: what the KPA averages and divides by
/// the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KpaMetric {
    /// Requests in flight per pod (queued in the queue-proxy or served).
    #[default]
    Concurrency,
    /// Requests received per second per pod.
    Rps,
}

impl KpaMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            KpaMetric::Concurrency => "concurrency",
            KpaMetric::Rps => "rps",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KpaConfig {
    pub metric: KpaMetric,
    /// `autoscaling.knative.dev/target` for every service: in-flight
    /// requests per pod (capped at the service's `containerConcurrency`)
    /// or requests per second per pod, before the utilisation factor.
    /// `None` takes each service's entry in `targets`, else
    /// `containerConcurrency` itself, or the defaults (100 in flight, 200
    /// per second) when that is unlimited or the metric is `rps`.
    pub target: Option<f64>,
    /// Each service's own target annotation, where it has one.
    pub targets: BTreeMap<String, f64>,
    /// Each service's `containerConcurrency` (0 = unlimited); a service
    /// not listed uses its observed `max_connections`.
    pub container_concurrency: BTreeMap<String, u32>,
    /// container-concurrency-target-percentage (70 %), as a fraction.
    pub target_utilization: f64,
    pub default_concurrency: f64,
    /// requests-per-second-target-default (200).
    pub default_rps: f64,
    /// target-burst-capacity (211): spare in-flight capacity to keep
    /// before the activator leaves the request path.
    pub target_burst_capacity: f64,
    pub stable_window: Span,
    /// Panic window as a percent of the stable window.
    pub panic_window_percent: f64,
    /// panic-threshold-percentage 200 %, as a ratio.
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub min_scale: u32,
    pub max_scale: u32,
    pub tick: Span,
    /// `autoscaling.knative.dev/scale-down-delay` (default 0): a decrease
    /// applies only once it has held for this long (the largest count
    /// wished for within it stands).
    pub scale_down_delay: Span,
}

impl Default for KpaConfig {
    fn default() -> Self {
        KpaConfig {
            metric: KpaMetric::Concurrency,
            target: None,
            targets: BTreeMap::new(),
            container_concurrency: BTreeMap::new(),
            target_utilization: 0.7,
            default_concurrency: 100.0,
            default_rps: 200.0,
            target_burst_capacity: 211.0,
            stable_window: Span::from_secs(60),
            panic_window_percent: 10.0,
            panic_threshold: 2.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            min_scale: 1,
            max_scale: 100,
            tick: Span::from_secs(2),
            scale_down_delay: Span::ZERO,
        }
    }
}

/// `autoscaling.TargetMin`: the smallest target Knative accepts.
const TARGET_MIN: f64 = 0.01;

impl KpaConfig {
    /// `ResolveMetricTarget`: `(target, total)` for a service with this
    /// `containerConcurrency` (0 = unlimited) and target annotation.
    /// `total` is what one pod may hold (or serve per second); `target` is
    /// the utilisation factor's share.
    pub fn resolve_target(
        &self,
        container_concurrency: u32,
        annotation: Option<f64>,
    ) -> (f64, f64) {
        let cc = f64::from(container_concurrency);
        let mut total = match self.metric {
            KpaMetric::Rps => self.default_rps,
            KpaMetric::Concurrency if container_concurrency > 0 => cc,
            KpaMetric::Concurrency => self.default_concurrency,
        };
        if let Some(annotation) = annotation {
            total = if self.metric == KpaMetric::Concurrency && container_concurrency > 0 {
                annotation.min(cc)
            } else {
                annotation
            };
        }
        ((total * self.target_utilization).max(TARGET_MIN), total)
    }

    /// The target annotation that applies to `service`.
    pub fn annotation(&self, service: &str) -> Option<f64> {
        self.target.or_else(|| self.targets.get(service).copied())
    }

    /// The decider's inputs for a service with this `containerConcurrency`
    /// and target annotation.
    pub fn decider_spec(&self, container_concurrency: u32, annotation: Option<f64>) -> DeciderSpec {
        let (target_value, total_value) = self.resolve_target(container_concurrency, annotation);
        DeciderSpec {
            target_value,
            total_value,
            target_burst_capacity: self.target_burst_capacity,
            panic_threshold: self.panic_threshold,
            max_scale_up_rate: self.max_scale_up_rate,
            max_scale_down_rate: self.max_scale_down_rate,
            stable_window: self.stable_window,
        }
    }
}

/// Knative's `DeciderSpec`, the subset the decision reads (the revision is
/// always reachable here: the simulated cluster routes to one service).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeciderSpec {
    pub target_value: f64,
    pub total_value: f64,
    pub target_burst_capacity: f64,
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub stable_window: Span,
}

/// Per-revision decider state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KpaState {
    /// The last tick over the panic threshold, while panicking.
    panic_time: Option<Time>,
    max_panic_pods: u32,
    /// The scale-down delay's window, when there is a delay.
    delay: Option<MaxWindow>,
}

/// Knative's `max.TimeWindow` (`pkg/autoscaler/aggregation/max`): the
/// largest value recorded within the last `buckets` time buckets of
/// `granularity_s` whole seconds, kept by the ascending-minima algorithm
/// (indices ascending, values descending), so a record is amortised O(1)
/// and never allocates after the first `buckets`.
#[derive(Clone, Debug, PartialEq)]
struct MaxWindow {
    buckets: u64,
    granularity_s: u64,
    maxima: VecDeque<(u64, u32)>,
}

impl MaxWindow {
    /// `NewTimeWindow(duration, granularity)`: ceil(duration / granularity)
    /// buckets.
    fn new(duration: Span, granularity: Span) -> Self {
        let g = granularity.whole_secs().max(1);
        let buckets = duration
            .as_nanos()
            .div_ceil(Span::from_secs(g).as_nanos())
            .max(1);
        MaxWindow {
            buckets,
            granularity_s: g,
            maxima: VecDeque::with_capacity(buckets as usize),
        }
    }

    fn record(&mut self, now: Time, value: u32) {
        let index = now.whole_secs() / self.granularity_s;
        let mut v = value;
        // A smaller, older value can never be the maximum again.
        while self.maxima.back().is_some_and(|&(_, last)| v >= last) {
            self.maxima.pop_back();
        }
        while self
            .maxima
            .front()
            .is_some_and(|&(i, _)| index.saturating_sub(i) >= self.buckets)
        {
            self.maxima.pop_front();
        }
        // Two records in one bucket: the larger stands.
        if let Some(&(i, last)) = self.maxima.back()
            && i == index
        {
            v = v.max(last);
            self.maxima.pop_back();
        }
        self.maxima.push_back((index, v));
    }

    fn current(&self) -> u32 {
        self.maxima.front().map_or(0, |&(_, v)| v)
    }
}

/// One tick's inputs and result, for explanations and tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KpaDecision {
    pub stable: f64,
    pub panic: f64,
    /// Before `min_scale` / `max_scale`, which the PodAutoscaler applies.
    pub desired: u32,
    pub panicking: bool,
    /// Ready pods' capacity less the target burst capacity and the panic
    /// window's concurrency, floored; negative puts the activator in the
    /// request path. -1 when the burst capacity is unlimited.
    pub excess_burst_capacity: f64,
}

impl KpaState {
    /// `newAutoscaler`: a decider created over more than one ready pod
    /// starts in panic mode holding them, because it has no history yet and
    /// would otherwise scale down on its first tick.
    pub fn new(ready_pods: u32, now: Time) -> Self {
        KpaState {
            panic_time: (ready_pods > 1).then_some(now),
            max_panic_pods: ready_pods,
            delay: None,
        }
    }

    /// With a scale-down delay (none when `delay` is zero, as upstream
    /// creates no window then), in buckets of one `tick`.
    pub fn with_scale_down_delay(mut self, delay: Span, tick: Span) -> Self {
        self.delay = (delay > Span::ZERO).then(|| MaxWindow::new(delay, tick));
        self
    }

    /// A state in panic mode since `panic_time`, holding `max_panic_pods`
    /// (upstream's tests set these fields directly).
    pub fn panicking(panic_time: Time, max_panic_pods: u32) -> Self {
        KpaState {
            panic_time: Some(panic_time),
            max_panic_pods,
            delay: None,
        }
    }

    /// When panic mode was last extended; `None` in stable mode.
    pub fn panic_time(&self) -> Option<Time> {
        self.panic_time
    }

    /// The count panic mode holds on to.
    pub fn max_panic_pods(&self) -> u32 {
        self.max_panic_pods
    }

    /// `Scale`: `observed` holds the metric's per-second values summed over
    /// the pods (the average of the in-flight requests, or the requests
    /// received), oldest first. `None` without data.
    pub fn scale(
        &mut self,
        cfg: &KpaConfig,
        spec: &DeciderSpec,
        observed: &[f64],
        ready_pods: u32,
        now: Time,
    ) -> Option<KpaDecision> {
        if observed.is_empty() {
            return None;
        }
        let stable_n = (spec.stable_window.as_secs_f64().round() as usize).max(1);
        let panic_n =
            ((spec.stable_window.as_secs_f64() * cfg.panic_window_percent / 100.0).round()
                as usize)
                .max(1);
        let mean_last = |n: usize| {
            let tail = &observed[observed.len().saturating_sub(n)..];
            tail.iter().sum::<f64>() / tail.len() as f64
        };
        Some(self.decide(
            spec,
            mean_last(stable_n),
            mean_last(panic_n),
            ready_pods,
            now,
        ))
    }

    /// The decision of `Scale` on the observed stable and panic values.
    pub fn decide(
        &mut self,
        spec: &DeciderSpec,
        stable: f64,
        panic: f64,
        ready_pods: u32,
        now: Time,
    ) -> KpaDecision {
        let ready = f64::from(ready_pods.max(1));
        let max_up = (spec.max_scale_up_rate * ready).ceil();
        let max_down = (ready / spec.max_scale_down_rate).floor();
        let dspc = (stable / spec.target_value).ceil();
        let dppc = (panic / spec.target_value).ceil();
        let stable_pods = dspc.max(max_down).min(max_up) as u32;
        let panic_pods = dppc.max(max_down).min(max_up) as u32;
        // The threshold reads the panic window's wish before the rate
        // clamp, so a slow scale-up rate does not hide a burst.
        let over = dppc / ready >= spec.panic_threshold;
        match self.panic_time {
            _ if over => self.panic_time = Some(now),
            // Leave panic strictly after a stable window without crossing.
            Some(t) if t + spec.stable_window < now => {
                self.panic_time = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }
        let mut desired = stable_pods;
        if self.panic_time.is_some() {
            // Provision for the larger of the two, and never scale down
            // while panicking.
            desired = desired.max(panic_pods);
            self.max_panic_pods = self.max_panic_pods.max(desired);
            desired = self.max_panic_pods;
        }
        if let Some(window) = &mut self.delay {
            window.record(now, desired);
            desired = window.current();
        }
        let excess_burst_capacity = if spec.target_burst_capacity == 0.0 {
            0.0
        } else if spec.target_burst_capacity > 0.0 {
            (f64::from(ready_pods) * spec.total_value - spec.target_burst_capacity - panic).floor()
        } else {
            -1.0
        };
        KpaDecision {
            stable,
            panic,
            desired,
            panicking: self.panic_time.is_some(),
            excess_burst_capacity,
        }
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
        let ready = svc.ready_pods();
        let cc = cfg
            .container_concurrency
            .get(&svc.name)
            .copied()
            .unwrap_or(svc.max_connections);
        let spec = cfg.decider_spec(cc, cfg.annotation(&svc.name));
        let observed = match cfg.metric {
            KpaMetric::Concurrency => &svc.concurrency,
            KpaMetric::Rps => &svc.requests,
        };
        let d = state.scale(cfg, &spec, observed, ready, now)?;
        // The PodAutoscaler's bounds; scale to zero stays off (see above).
        let desired = d.desired.clamp(cfg.min_scale.max(1), cfg.max_scale);
        if desired == svc.desired_replicas {
            return None;
        }
        Some(Command::Scale {
            service: svc.name.clone(),
            replicas: desired,
            reason: format!(
                "{} stable {:.1} panic {:.1} vs target {:.2} per pod{}: {} -> {}",
                cfg.metric.as_str(),
                d.stable,
                d.panic,
                spec.target_value,
                if d.panicking { " (panic mode)" } else { "" },
                svc.desired_replicas,
                desired
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
            let ready = svc.ready_pods();
            let state = self.states.get_or_insert_with(&svc.name, |_| {
                KpaState::new(ready, now)
                    .with_scale_down_delay(self.cfg.scale_down_delay, self.cfg.tick)
            });
            if let Some(cmd) = Self::decide(&self.cfg, state, svc, now) {
                self.pending.push_back(cmd);
            }
        }
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knative's `TestTimedWindowMax` (`pkg/autoscaler/aggregation/max/
    /// timewindow_test.go`): a 5 s window of 1 s buckets.
    #[test]
    fn test_timed_window_max() {
        /// Name, (seconds after start, value) records, expected maximum.
        type Case = (&'static str, &'static [(f64, u32)], u32);
        let t = |s: f64| Time::from_secs(100) + Span::from_secs_f64(s);
        let cases: [Case; 4] = [
            ("single value", &[(0.0, 5)], 5),
            ("two values in same second", &[(0.0, 6), (0.5, 5)], 6),
            ("two values", &[(0.0, 5), (1.0, 8)], 8),
            ("time gap", &[(0.0, 5), (6.0, 4)], 4),
        ];
        for (name, values, want) in cases {
            let mut m = MaxWindow::new(Span::from_secs(5), Span::from_secs(1));
            for &(at, v) in values {
                m.record(t(at), v);
            }
            assert_eq!(m.current(), want, "{name}");
        }
    }

    /// The window never holds more than its buckets, whatever the order.
    #[test]
    fn the_window_is_bounded_and_exact() {
        let mut m = MaxWindow::new(Span::from_secs(10), Span::from_secs(2));
        let values = [3u32, 9, 1, 4, 4, 7, 2, 8, 0, 5, 6, 1, 1, 9, 2];
        for (i, &v) in values.iter().enumerate() {
            m.record(Time::from_secs(2 * i as u64), v);
            let from = i.saturating_sub(4);
            assert_eq!(m.current(), *values[from..=i].iter().max().unwrap());
            assert!(m.maxima.len() <= 5);
        }
    }
}
