//! How far a metric's latest scrape leaves its own recent range: a score
//! that means the same on any cluster, whatever the metric's level, spread
//! or units.
//!
//! The baseline is the values of the trailing `baseline_s` before the
//! scrape (the scrape itself excluded). The score is how far the value lies
//! above the baseline's upper quantile `quantile`, in units of that
//! quantile's distance from the median:
//!
//! ```text
//! score = (x - q_hi) / max(q_hi - median, floor)
//! ```
//!
//! and, for a metric that may fail by falling (the request rate), the same
//! below the lower quantile. A heavy-tailed metric (a p99 that jumps from
//! 50 to 900 ms on a quiet service) has a wide upper quantile and does not
//! alarm on its usual spikes; a flat one alarms on a small step. The floor
//! (`relative_floor` of the median plus the metric's resolution) keeps a
//! metric that never moved from alarming on noise. The quantile rather than
//! the maximum keeps one earlier incident in the baseline from hiding the
//! next.
//!
//! A metric with a hard limit ([`MetricScale::limit`]: the CPU at 90 %,
//! errors at 1 %) departs too when it reaches that limit from a baseline
//! below it, however wide the baseline's spread: early in a recording, or
//! soon after an incident, the quantile is high enough to hide a
//! saturated CPU.
//!
//! A service departs through its callers too: the latency of the calls
//! into it ([`CALL_SCALE`]), as every caller sees it
//! ([`super::callers`]).
//!
//! [`Departure`] reports an *episode* once, at its first scrape at or above
//! the threshold, as an alert fires once: a lasting departure is one alarm,
//! and the next incident on the same service is a new one when the score
//! fell back below the threshold in between.
//!
//! The defaults were chosen on the first half of the Nezha OnlineBoutique
//! incident day (its first 16 faults and the fault-free hours before
//! 20:30) and scored on the second half, before the calls were read; the
//! rule for the calls (every caller, not any) was chosen on the whole
//! day's false alarms; the hard limits are the static thresholds' own,
//! and which metrics have one was chosen on the whole day. The README's
//! "Bring your own metrics" gives both halves.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::Observation;
use super::callers::EveryCaller;
use crate::metrics::ServiceMetrics;
use crate::metrics::quantile_of_sorted as quantile;
use crate::time::Time;

/// Every window is in seconds, so one configuration means the same at any
/// scrape interval.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DepartureConfig {
    /// The trailing window the baseline is taken over.
    pub baseline_s: f64,
    /// The baseline needs values spanning this long before a score means
    /// anything (and at least [`MIN_VALUES`] of them).
    pub warmup_s: f64,
    /// The upper quantile a value must leave (the lower one is `1 -
    /// quantile`).
    pub quantile: f64,
    /// The smallest spread, as a share of the baseline's median (added to
    /// the metric's resolution).
    pub relative_floor: f64,
    /// The score an episode starts at.
    pub threshold: f64,
    /// The CPU's hard limit, as a share of what the CPU is measured
    /// against ([`MetricScale::limit`]; `inf`: none). At 0.9 it is
    /// saturation where that is the pods' limit; where it is their request
    /// (the live adapter's default query) and pods burst past it, raise it
    /// to 0.9 x limit / request.
    pub cpu_limit: f64,
    /// The error rate's hard limit (a share; `inf`: none): 1 % is a 99 %
    /// objective's whole error budget.
    pub error_limit: f64,
}

impl Default for DepartureConfig {
    fn default() -> Self {
        DepartureConfig {
            baseline_s: 4.0 * 3_600.0,
            warmup_s: 300.0,
            quantile: 0.9,
            relative_floor: 0.05,
            threshold: 3.0,
            cpu_limit: 0.9,
            error_limit: 0.01,
        }
    }
}

impl DepartureConfig {
    /// [`RECORDING_SCALES`] with this configuration's hard limits on the
    /// CPU and the error rate.
    pub fn recording_scales(&self) -> [MetricScale; 5] {
        let mut scales = RECORDING_SCALES;
        let limit = |x: f64| x.is_finite().then_some(x);
        scales[CPU].limit = limit(self.cpu_limit);
        scales[ERRORS].limit = limit(self.error_limit);
        scales
    }
}

/// The CPU's and the error rate's places in [`RECORDING_METRICS`].
const CPU: usize = 0;
const ERRORS: usize = 3;

/// The fewest baseline values a score is computed from.
pub const MIN_VALUES: usize = 5;
/// The most baseline values kept (four hours of 5 s scrapes): sorting them
/// is the cost of an update.
pub const MAX_VALUES: usize = 2_880;

/// What a departure looks like for one metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricScale {
    /// The smallest change the metric resolves, in its own unit (1 % of
    /// the CPU request, 5 ms of latency, ...).
    pub resolution: f64,
    /// Whether a fall is a departure too, not only a rise.
    pub two_sided: bool,
    /// A hard limit of the metric (a saturated CPU, errors past the SLO's
    /// budget): a value at or past it departs, whatever its distance from
    /// the baseline, while the baseline's median sits below it. A short
    /// or recently disturbed baseline can hold a spread as wide as the
    /// breach itself; a service that always runs past the limit is its own
    /// normal and departs only by its range.
    pub limit: Option<f64>,
}

/// How the recording format's metrics depart, in its units and in the
/// order CPU (share of the request), memory (share of the limit), request
/// rate (per second), error rate (share) and p99 latency (ms): each
/// resolves 1 % of the request, 0.5 % of the limit, half a request per
/// second, 1 % errors and 5 ms, and only the request rate departs by
/// falling too (traffic that stops reaching a service). No hard limits:
/// [`DepartureConfig::recording_scales`] adds the configured ones on the
/// CPU and the error rate. Memory has none: a memory level near its limit
/// is many services' normal (one of the incident day's runs at 87 %), and
/// at 90 % it cost that day two faults the score had found.
pub const RECORDING_SCALES: [MetricScale; 5] = [
    MetricScale {
        resolution: 0.01,
        two_sided: false,
        limit: None,
    },
    MetricScale {
        resolution: 0.005,
        two_sided: false,
        limit: None,
    },
    MetricScale {
        resolution: 0.5,
        two_sided: true,
        limit: None,
    },
    MetricScale {
        resolution: 0.01,
        two_sided: false,
        limit: None,
    },
    MetricScale {
        resolution: 5.0,
        two_sided: false,
        limit: None,
    },
];

/// The latency of the calls into a service as a caller sees them (ms):
/// it resolves 5 ms, as the service's own p99 does, and departs by rising.
pub const CALL_SCALE: MetricScale = MetricScale {
    resolution: 5.0,
    two_sided: false,
    limit: None,
};

/// The name a departure of the calls into a service goes by.
pub const CALLS: &str = "calls";

/// The name of the metric at `index` of a [`Departure`] over
/// [`RECORDING_SCALES`]: a recording metric's, or [`CALLS`] past them.
pub fn recording_metric_name(index: usize) -> &'static str {
    RECORDING_METRICS.get(index).map_or(CALLS, |m| m.0)
}

/// How to read one metric from a scrape.
pub type ReadMetric = fn(&ServiceMetrics) -> f64;

/// The metrics of a scrape the score reads, by name, in
/// [`RECORDING_SCALES`]' order.
pub const RECORDING_METRICS: [(&str, ReadMetric); 5] = [
    ("cpu", |m| m.cpu_usage),
    ("memory", |m| m.memory_usage),
    ("rate", |m| m.request_rate),
    ("errors", |m| m.error_rate),
    ("p99", |m| m.latency_p99),
];

/// One metric's departure score.
#[derive(Clone, Debug)]
pub struct DepartureDetector {
    cfg: DepartureConfig,
    scale: MetricScale,
    /// `(seconds, value)`, oldest first.
    values: VecDeque<(f64, f64)>,
    scratch: Vec<f64>,
    /// Whether the last score is the hard limit's rather than the range's.
    past_limit: bool,
}

impl DepartureDetector {
    pub fn new(cfg: DepartureConfig, scale: MetricScale) -> Self {
        DepartureDetector {
            cfg,
            scale,
            values: VecDeque::new(),
            scratch: Vec::new(),
            past_limit: false,
        }
    }

    /// Scores the value scraped at `now` against the baseline before it,
    /// then adds it to the baseline. A non-finite value (a metric the
    /// source did not measure) scores 0 and is not kept.
    pub fn update(&mut self, now: Time, x: f64) -> f64 {
        self.past_limit = false;
        if !x.is_finite() {
            return 0.0;
        }
        let t = now.as_secs_f64();
        while self
            .values
            .front()
            .is_some_and(|&(at, _)| at < t - self.cfg.baseline_s)
        {
            self.values.pop_front();
        }
        let score = self.score(t, x);
        if self.values.len() == MAX_VALUES {
            self.values.pop_front();
        }
        self.values.push_back((t, x));
        score
    }

    fn score(&mut self, t: f64, x: f64) -> f64 {
        let Some(&(oldest, _)) = self.values.front() else {
            return 0.0;
        };
        if self.values.len() < MIN_VALUES || t - oldest < self.cfg.warmup_s {
            return 0.0;
        }
        self.scratch.clear();
        self.scratch.extend(self.values.iter().map(|&(_, v)| v));
        self.scratch.sort_unstable_by(f64::total_cmp);
        let median = quantile(&self.scratch, 0.5);
        let floor = self.cfg.relative_floor * median.abs() + self.scale.resolution;
        let hi = quantile(&self.scratch, self.cfg.quantile);
        let mut score = (x - hi) / (hi - median).max(floor);
        if self.scale.two_sided {
            let lo = quantile(&self.scratch, 1.0 - self.cfg.quantile);
            score = score.max((lo - x) / (median - lo).max(floor));
        }
        if score < self.cfg.threshold
            && self
                .scale
                .limit
                .is_some_and(|limit| x >= limit && median < limit)
        {
            score = self.cfg.threshold;
            self.past_limit = true;
        }
        score.max(0.0)
    }
}

/// A service's episodes of departure: the largest score over its metrics
/// and the calls into it, and whether this scrape starts an episode.
#[derive(Clone, Debug)]
pub struct Departure {
    threshold: f64,
    metrics: Vec<DepartureDetector>,
    /// The calls into the service, a baseline per caller.
    calls: EveryCaller<DepartureDetector>,
    above: bool,
}

impl Departure {
    pub fn new(cfg: &DepartureConfig, scales: impl IntoIterator<Item = MetricScale>) -> Self {
        Departure {
            threshold: cfg.threshold,
            metrics: scales
                .into_iter()
                .map(|s| DepartureDetector::new(cfg.clone(), s))
                .collect(),
            calls: EveryCaller::new(DepartureDetector::new(cfg.clone(), CALL_SCALE)),
            above: false,
        }
    }

    /// The recording format's five metrics ([`RECORDING_METRICS`]' order)
    /// with `cfg`'s hard limits, and the calls.
    pub fn of_recording(cfg: &DepartureConfig) -> Self {
        Departure::new(cfg, cfg.recording_scales())
    }

    /// Whether the last score of `metric` (an index as [`Self::update`]
    /// returns it) was its hard limit's rather than its range's.
    pub fn past_limit(&self, metric: usize) -> bool {
        self.metrics.get(metric).is_some_and(|d| d.past_limit)
    }

    /// Feeds one scrape (a value per metric, in the order of the scales,
    /// and the latency of the calls into the service by caller, NaN for a
    /// caller without a fresh one) and returns the largest score, the
    /// index of its metric (the number of scales for the calls) and
    /// whether an episode starts here.
    pub fn update(
        &mut self,
        now: Time,
        values: &[f64],
        calls: &[(&str, f64)],
    ) -> (f64, usize, bool) {
        let mut best = (0.0, 0);
        for (i, (d, &x)) in self.metrics.iter_mut().zip(values).enumerate() {
            let score = d.update(now, x);
            if score > best.0 {
                best = (score, i);
            }
        }
        if let Some(score) = self.calls.update(now, calls)
            && score > best.0
        {
            best = (score, self.metrics.len());
        }
        let above = best.0 >= self.threshold;
        let starts = above && !self.above;
        self.above = above;
        (best.0, best.1, starts)
    }
}

/// The first scrape of a service's departure episode.
#[derive(Clone, Debug, PartialEq)]
pub struct DepartureAlarm {
    pub at: Time,
    pub service: String,
    /// The metric that departed furthest ([`RECORDING_METRICS`]' name, or
    /// [`CALLS`]).
    pub metric: &'static str,
    pub score: f64,
    /// The score is the threshold because the metric reached its hard
    /// limit from a baseline below it, not a distance from its range.
    pub past_limit: bool,
}

/// Every service's departure episodes, from the observations a controller
/// sees: an alarm a live loop can report beside the controller's
/// decisions, acting on nothing. Each scrape counts once, however often
/// it is observed.
#[derive(Clone, Debug)]
pub struct DepartureWatch {
    cfg: DepartureConfig,
    services: BTreeMap<String, (Departure, Option<Time>)>,
    alarms: VecDeque<DepartureAlarm>,
}

impl DepartureWatch {
    pub fn new(cfg: DepartureConfig) -> Self {
        DepartureWatch {
            cfg,
            services: BTreeMap::new(),
            alarms: VecDeque::new(),
        }
    }

    /// Scrapes from before the watch started (a backfill): they make the
    /// baseline, and an episode under way at their end is not news.
    pub fn handle_history(&mut self, service: &str, scrapes: &[ServiceMetrics]) {
        for m in scrapes {
            self.feed(service, m, &[]);
        }
    }

    /// Scores each service's scrape and the calls into it, as its callers'
    /// routes in the same observation see them.
    pub fn handle_observation(&mut self, obs: &Observation) {
        let mut calls = Vec::new();
        for s in &obs.services {
            calls.clear();
            calls.extend(obs.services.iter().flat_map(|caller| {
                caller
                    .dependencies
                    .iter()
                    .filter(|d| d.service == s.name)
                    .map(|d| (caller.name.as_str(), d.latency_p99))
            }));
            if let Some(alarm) = self.feed(&s.name, &s.metrics, &calls) {
                self.alarms.push_back(alarm);
            }
        }
    }

    pub fn poll_alarm(&mut self) -> Option<DepartureAlarm> {
        self.alarms.pop_front()
    }

    /// The alarm of an episode that starts at this scrape; `None` when
    /// none does, or for a scrape no newer than the service's last.
    fn feed(
        &mut self,
        service: &str,
        m: &ServiceMetrics,
        calls: &[(&str, f64)],
    ) -> Option<DepartureAlarm> {
        // Looked up by `&str` first: a known service costs no allocation.
        if !self.services.contains_key(service) {
            let fresh = (Departure::of_recording(&self.cfg), None);
            self.services.insert(service.to_owned(), fresh);
        }
        let (departure, last) = self.services.get_mut(service).expect("inserted above");
        if last.is_some_and(|t| m.timestamp <= t) {
            return None;
        }
        *last = Some(m.timestamp);
        let (score, metric, starts) = departure.update(
            m.timestamp,
            &RECORDING_METRICS.map(|(_, value)| value(m)),
            calls,
        );
        starts.then(|| DepartureAlarm {
            at: m.timestamp,
            service: service.to_owned(),
            metric: recording_metric_name(metric),
            score,
            past_limit: departure.past_limit(metric),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_SIDED: MetricScale = MetricScale {
        resolution: 0.01,
        two_sided: false,
        limit: None,
    };

    fn feed(d: &mut DepartureDetector, values: &[f64], every_s: f64) -> Vec<f64> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| d.update(Time::from_secs_f64(i as f64 * every_s), v))
            .collect()
    }

    #[test]
    fn the_quantile_interpolates_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.9), 4.6);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn a_value_scores_its_distance_above_the_upper_quantile_in_spreads() {
        let mut d = DepartureDetector::new(DepartureConfig::default(), ONE_SIDED);
        // Baseline 1..=10 (median 5.5, 90 % quantile 9.1): 9.1 + 3 x 3.6.
        let mut values: Vec<f64> = (1..=10).map(f64::from).collect();
        values.push(9.1 + 3.0 * 3.6);
        let scores = feed(&mut d, &values, 60.0);
        assert!((scores[10] - 3.0).abs() < 1e-9, "{}", scores[10]);
        // Inside the range is no departure.
        assert_eq!(d.update(Time::from_secs_f64(660.0), 5.0), 0.0);
    }

    #[test]
    fn usual_spikes_of_a_heavy_tailed_metric_stay_below_a_flat_metrics_step() {
        let cfg = DepartureConfig::default();
        let spiky: Vec<f64> = (0..120)
            .map(|i| if i % 4 == 0 { 900.0 } else { 60.0 })
            .collect();
        let mut d = DepartureDetector::new(cfg.clone(), ONE_SIDED);
        let scores = feed(&mut d, &spiky, 60.0);
        assert!(scores.iter().all(|&s| s < cfg.threshold), "{scores:?}");
        let mut flat = vec![0.2; 120];
        flat.push(0.3);
        let mut d = DepartureDetector::new(cfg.clone(), ONE_SIDED);
        let scores = feed(&mut d, &flat, 60.0);
        assert!(scores[120] >= cfg.threshold, "{}", scores[120]);
        assert!(scores[..120].iter().all(|&s| s == 0.0));
    }

    #[test]
    fn nothing_scores_before_the_warmup_and_gaps_age_the_baseline_out() {
        let cfg = DepartureConfig::default();
        let mut d = DepartureDetector::new(cfg.clone(), ONE_SIDED);
        // Five values over 4 minutes: under the 5-minute warm-up.
        let scores = feed(&mut d, &[1.0, 1.0, 1.0, 1.0, 1.0, 50.0], 48.0);
        assert_eq!(scores[5], 0.0);
        // After a gap longer than the baseline, the window is empty again.
        let late = Time::from_secs_f64(cfg.baseline_s + 1_000.0);
        assert_eq!(d.update(late, 100.0), 0.0);
        assert_eq!(d.values.len(), 1);
        assert_eq!(d.update(late, f64::NAN), 0.0);
        assert_eq!(d.values.len(), 1);
    }

    #[test]
    fn a_fall_departs_only_where_the_metric_is_two_sided() {
        let mut values = vec![100.0; 30];
        values.push(10.0);
        let one = feed(
            &mut DepartureDetector::new(DepartureConfig::default(), ONE_SIDED),
            &values,
            60.0,
        );
        let two = feed(
            &mut DepartureDetector::new(
                DepartureConfig::default(),
                MetricScale {
                    resolution: 0.5,
                    two_sided: true,
                    limit: None,
                },
            ),
            &values,
            60.0,
        );
        assert_eq!(one[30], 0.0);
        // Floor 5 % of 100 plus 0.5: (100 - 10) / 5.5.
        assert!((two[30] - 90.0 / 5.5).abs() < 1e-9, "{}", two[30]);
    }

    #[test]
    fn a_hard_limit_departs_from_a_wide_baseline_below_it_only() {
        let cfg = DepartureConfig::default();
        let cpu = cfg.recording_scales()[0];
        // Twenty minutes at 20 % with an earlier incident at 88 %: the
        // 90 % quantile is the incident's, so 95 % is within the range.
        let mut values: Vec<f64> = (0..20).map(|i| if i < 4 { 0.88 } else { 0.2 }).collect();
        values.push(0.95);
        let mut d = DepartureDetector::new(cfg.clone(), cpu);
        let scores = feed(&mut d, &values, 60.0);
        assert_eq!(scores[20], cfg.threshold);
        assert!(d.past_limit);
        d.update(Time::from_secs(1_260), 0.2);
        assert!(!d.past_limit);
        let unlimited = DepartureConfig {
            cpu_limit: f64::INFINITY,
            ..cfg.clone()
        };
        let scores = feed(
            &mut DepartureDetector::new(cfg.clone(), unlimited.recording_scales()[0]),
            &values,
            60.0,
        );
        assert!(scores[20] < 0.5, "{}", scores[20]);
        // A service that always runs past the limit is its own normal.
        let mut hot = vec![0.95; 20];
        hot.push(0.97);
        let scores = feed(&mut DepartureDetector::new(cfg.clone(), cpu), &hot, 60.0);
        assert!(scores[20] < cfg.threshold, "{}", scores[20]);
        // No score at all before the warm-up, limit or not.
        let scores = feed(
            &mut DepartureDetector::new(cfg, cpu),
            &[0.2, 0.2, 0.99],
            60.0,
        );
        assert_eq!(scores[2], 0.0);
    }

    #[test]
    fn an_episode_starts_once_and_again_after_it_ends() {
        let mut s = Departure::new(&DepartureConfig::default(), [ONE_SIDED, ONE_SIDED]);
        let mut starts = Vec::new();
        for i in 0..40 {
            let cpu = if (20..23).contains(&i) || i == 30 {
                5.0
            } else {
                1.0
            };
            let (_, metric, start) =
                s.update(Time::from_secs_f64(i as f64 * 60.0), &[1.0, cpu], &[]);
            if start {
                starts.push((i, metric));
            }
        }
        assert_eq!(starts, vec![(20, 1), (30, 1)]);
    }

    fn scrape(t: f64, p99: f64) -> ServiceMetrics {
        ServiceMetrics {
            timestamp: Time::from_secs_f64(t),
            cpu_usage: 0.4,
            memory_usage: 0.3,
            request_rate: 50.0,
            error_rate: 0.0,
            latency_p50: 10.0,
            latency_p99: p99,
            active_connections: 2,
            ready_replicas: 2,
            desired_replicas: 2,
        }
    }

    fn observe(t: f64, p99: f64) -> Observation {
        Observation {
            now: Time::from_secs_f64(t),
            services: vec![super::super::ServiceView {
                name: "api".into(),
                metrics: scrape(t, p99),
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

    #[test]
    fn the_watch_alarms_once_per_episode_and_counts_each_scrape_once() {
        let mut w = DepartureWatch::new(DepartureConfig::default());
        // An hour of history: three scrapes of an incident later stay
        // under a tenth of the baseline, so they do not hide the next one.
        let history: Vec<ServiceMetrics> = (0..60).map(|i| scrape(i as f64 * 60.0, 50.0)).collect();
        w.handle_history("api", &history);
        assert_eq!(w.poll_alarm(), None);
        // A step in the p99, observed twice at each scrape: one alarm.
        for t in [3_600.0, 3_600.0, 3_660.0, 3_660.0, 3_720.0] {
            w.handle_observation(&observe(t, 400.0));
        }
        let alarm = w.poll_alarm().expect("the step alarms");
        assert_eq!(
            (
                alarm.at,
                alarm.service.as_str(),
                alarm.metric,
                alarm.past_limit
            ),
            (Time::from_secs(3_600), "api", "p99", false)
        );
        // 350 ms above a flat 50 ms, in spreads of 5 % of the median plus
        // the 5 ms resolution.
        assert!((alarm.score - 350.0 / 7.5).abs() < 1e-9, "{alarm:?}");
        assert_eq!(w.poll_alarm(), None);
        // Back to normal, then a second step: a second alarm.
        w.handle_observation(&observe(3_780.0, 50.0));
        w.handle_observation(&observe(3_840.0, 400.0));
        assert_eq!(w.poll_alarm().map(|a| a.at), Some(Time::from_secs(3_840)));
    }

    #[test]
    fn a_delay_on_the_calls_into_a_service_alarms_on_that_service() {
        // `web` calls `api`; `api`'s own scrapes stay flat (its server
        // measures behind the delayed link) while the calls `web` makes
        // to it slow from 5 to 300 ms.
        let observe_pair = |t: f64, call_ms: f64| {
            let mut obs = observe(t, 50.0);
            let mut web = obs.services[0].clone();
            web.name = "web".into();
            web.dependencies = vec![super::super::Dependency {
                service: "api".into(),
                fallback: false,
                error_rate: 0.0,
                latency_p99: call_ms,
            }];
            obs.services.push(web);
            obs
        };
        let mut w = DepartureWatch::new(DepartureConfig::default());
        for i in 0..30 {
            w.handle_observation(&observe_pair(i as f64 * 60.0, 5.0));
        }
        assert_eq!(w.poll_alarm(), None);
        w.handle_observation(&observe_pair(1_800.0, 300.0));
        let alarm = w.poll_alarm().expect("the slow calls alarm");
        assert_eq!((alarm.service.as_str(), alarm.metric), ("api", CALLS));
        // 295 ms above a flat 5 ms, in spreads of 5 % of 5 ms plus 5 ms.
        assert!((alarm.score - 295.0 / 5.25).abs() < 1e-9, "{alarm:?}");
        assert_eq!(w.poll_alarm(), None);
    }

    #[test]
    fn the_calls_depart_when_every_caller_with_a_fresh_value_sees_it() {
        let mut d = Departure::new(&DepartureConfig::default(), []);
        let mut step =
            |i: u64, a: f64, b: f64| d.update(Time::from_secs(i * 60), &[], &[("a", a), ("b", b)]);
        for i in 0..30 {
            step(i, 5.0, 5.0);
        }
        // One caller's calls slow, the other's do not: that caller's own.
        assert_eq!(step(30, 300.0, 5.0), (0.0, 0, false));
        // Without a fresh value from `b`, `a` alone speaks: the calls
        // (the index past the service's own metrics, none here) depart.
        let (score, metric, starts) = step(31, 300.0, f64::NAN);
        assert!(starts && metric == 0 && score > 50.0, "{score}");
    }

    #[test]
    fn an_episode_under_way_in_the_history_is_not_news() {
        let mut w = DepartureWatch::new(DepartureConfig::default());
        let mut history: Vec<ServiceMetrics> =
            (0..20).map(|i| scrape(i as f64 * 60.0, 50.0)).collect();
        history.push(scrape(1_200.0, 400.0));
        w.handle_history("api", &history);
        w.handle_observation(&observe(1_260.0, 400.0));
        assert_eq!(w.poll_alarm(), None);
    }
}
