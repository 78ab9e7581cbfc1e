//! The failure predictor, as the seed's `FailurePredictionEngine`: the LSTM's
//! forecast of the worst health state in the next prediction window, the
//! pattern detector, and a time-to-failure estimate from the data.
//!
//! Sans-IO like the rest of the core: a [`ServiceWatch`] is fed scrapes
//! with [`ServiceWatch::handle_scrape`] and asked for a [`Prediction`]; the
//! trained weights come in as values (`FusedNet`, `Normaliser`), loaded by
//! the edge (`train::store`).

pub mod lstm;
pub mod normalise;
pub mod patterns;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use self::lstm::{FusedNet, Scratch};
use self::normalise::{Inputs, Normaliser};
use self::patterns::{Detection, FailureType, PatternConfig, Remediation};
use crate::control::anomaly::{AnomalyDetector, DetectorConfig};
use crate::metrics::ServiceMetrics;
use crate::time::Time;

/// The health states, worst last: the predictor's four classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy = 0,
    Degraded = 1,
    Unhealthy = 2,
    Critical = 3,
}

impl Health {
    pub const ALL: [Health; 4] = [
        Health::Healthy,
        Health::Degraded,
        Health::Unhealthy,
        Health::Critical,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
            Health::Critical => "critical",
        }
    }
    pub fn from_index(i: usize) -> Health {
        Health::ALL[i.min(3)]
    }
}

/// A scrape as the network sees it: the seed's seven metrics, then ready
/// replicas. Latencies without traffic count as 0.
pub fn scrape_row(m: &ServiceMetrics) -> [f32; 8] {
    let nz = |x: f64| if x.is_finite() { x as f32 } else { 0.0 };
    [
        nz(m.cpu_usage),
        nz(m.memory_usage),
        nz(m.request_rate),
        nz(m.error_rate),
        nz(m.latency_p50),
        nz(m.latency_p99),
        m.active_connections as f32,
        m.ready_replicas as f32,
    ]
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// A prediction is a warning when P(not healthy) is at least this.
    pub alarm_threshold: f32,
    /// The SLO latency the latency trends are extrapolated to.
    pub slo_latency_ms: f64,
    pub scrape_interval_s: f64,
    pub patterns: PatternConfig,
    pub anomaly: DetectorConfig,
    /// Median seconds to the breach by predicted class, measured on the
    /// training runs; the estimate when no trend is heading for a limit.
    pub median_time_to_breach_s: [Option<f64>; 4],
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            alarm_threshold: 0.5,
            slo_latency_ms: 250.0,
            scrape_interval_s: 5.0,
            patterns: PatternConfig::default(),
            anomaly: DetectorConfig::default(),
            median_time_to_breach_s: [None; 4],
        }
    }
}

/// The seed's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub status: Health,
    /// Probability of `status`.
    pub probability: f32,
    pub probabilities: [f32; 4],
    /// 1 - P(healthy): the score alarms are raised on.
    pub not_healthy: f32,
    pub warning: bool,
    pub failure_type: Option<FailureType>,
    /// Seconds until the SLO is expected to break, when not healthy.
    pub time_to_failure_s: Option<f64>,
    pub recommended_action: Remediation,
}

/// The trained network with what it needs to read raw scrapes.
#[derive(Clone, Debug)]
pub struct Model {
    pub net: FusedNet,
    pub normaliser: Normaliser,
    pub window: usize,
}

/// One service's recent scrapes and anomaly state.
///
/// The network's window is defined in seconds: `window` steps of the
/// training traces' scrape interval (`PredictorConfig::scrape_interval_s`).
/// Scrapes at any other interval are resampled onto that time base
/// (`ServiceWatch::resample`), so a 60 s recording fills a 5 s model's
/// 300 s window with 5 to 6 scrapes and nothing is refused. A gap in the
/// scrapes longer than the window starts it afresh.
#[derive(Clone, Debug)]
pub struct ServiceWatch {
    rows: VecDeque<[f32; 8]>,
    times: VecDeque<Time>,
    errors: AnomalyDetector,
    latency: AnomalyDetector,
    anomaly_errors: f64,
    anomaly_latency: f64,
    window: usize,
    /// The network's time base and the seconds its window spans.
    step_s: f64,
    span_s: f64,
    scratch: Scratch,
    buf: Vec<f32>,
    medians: Vec<f32>,
}

impl ServiceWatch {
    pub fn new(window: usize, cfg: &PredictorConfig) -> Self {
        ServiceWatch {
            rows: VecDeque::with_capacity(window + 1),
            times: VecDeque::with_capacity(window + 1),
            errors: AnomalyDetector::new(cfg.anomaly.clone()),
            latency: AnomalyDetector::new(cfg.anomaly.clone()),
            anomaly_errors: 0.0,
            anomaly_latency: 0.0,
            window,
            step_s: cfg.scrape_interval_s,
            span_s: (window.max(1) - 1) as f64 * cfg.scrape_interval_s,
            scratch: Scratch::default(),
            buf: Vec::new(),
            medians: Vec::new(),
        }
    }

    pub fn handle_scrape(&mut self, m: &ServiceMetrics) {
        self.handle_row(m.timestamp, scrape_row(m));
    }

    pub fn handle_row(&mut self, now: Time, row: [f32; 8]) {
        self.anomaly_errors = self.errors.update(now, row[patterns::ERRORS] as f64);
        self.anomaly_latency = self.latency.update(now, row[patterns::P99] as f64);
        // A gap longer than the window leaves nothing to hold across it:
        // the window fills again from this scrape.
        if self.times.back().is_some_and(|last| {
            now.as_secs_f64() - last.as_secs_f64() > self.span_s.max(self.step_s)
        }) {
            self.rows.clear();
            self.times.clear();
        }
        self.rows.push_back(row);
        self.times.push_back(now);
        // Keep `window` scrapes for the pattern rules, and as many more as
        // the network's window in seconds needs when scrapes come faster
        // than its time base.
        let span = self.span_s;
        while self.rows.len() > self.window
            && self.times[1].as_secs_f64() <= now.as_secs_f64() - span
        {
            self.rows.pop_front();
            self.times.pop_front();
        }
    }

    /// The latest anomaly scores of the error rate and the p99 latency.
    pub fn anomaly_scores(&self) -> (f64, f64) {
        (self.anomaly_errors, self.anomaly_latency)
    }

    /// Mean seconds between the scrapes of the pattern rules' trend window.
    fn trend_spacing_s(&self, trend_window: usize) -> f64 {
        let n = trend_window.min(self.times.len());
        if n < 2 {
            return self.step_s;
        }
        let first = self.times[self.times.len() - n].as_secs_f64();
        let last = self.times[self.times.len() - 1].as_secs_f64();
        (last - first) / (n - 1) as f64
    }

    /// The pattern detector alone (the baseline the LSTM is compared with).
    pub fn pattern(&mut self, cfg: &PredictorConfig) -> Option<Detection> {
        // The window is a ring; lining it up in place costs no allocation.
        let rows = self.rows.make_contiguous();
        patterns::detect(
            &cfg.patterns,
            rows,
            self.anomaly_errors,
            self.anomaly_latency,
            cfg.slo_latency_ms,
        )
    }

    /// Fills `buf` with the network's input before normalisation:
    /// `model.window` steps of its time base ending at the latest scrape,
    /// row-major; `false` (and `buf` empty) until the scrapes span the
    /// window in seconds. Between scrapes a step reads what the model was trained on:
    /// a relative-input model, trained on windows as coarser scrapers leave
    /// them, reads the latest scrape held; a raw-input model, trained on one
    /// interval's scrapes, reads the line between the scrapes around it
    /// (every step lies between two scrapes, the window ending at the latest
    /// one, so nothing is read ahead of time). At its own interval both are
    /// the scrapes themselves.
    fn resample(&mut self, model: &Model) -> bool {
        let out = &mut self.buf;
        out.clear();
        let (Some(&first), Some(&now)) = (self.times.front(), self.times.back()) else {
            return false;
        };
        // A millisecond of slack absorbs the jitter of real scrape times.
        const SLACK_S: f64 = 1e-3;
        let now_s = now.as_secs_f64();
        if now_s - first.as_secs_f64() + SLACK_S < self.span_s {
            return false;
        }
        let features = model.normaliser.features();
        let linear = model.normaliser.inputs == Inputs::Raw;
        // The cursor only moves forward.
        let mut cursor = 0;
        for k in 0..model.window {
            let at = now_s - (model.window - 1 - k) as f64 * self.step_s;
            while cursor + 1 < self.times.len()
                && self.times[cursor + 1].as_secs_f64() <= at + SLACK_S
            {
                cursor += 1;
            }
            let held = &self.rows[cursor][..features];
            let w = match self.rows.get(cursor + 1) {
                Some(_) if linear => {
                    let t0 = self.times[cursor].as_secs_f64();
                    let t1 = self.times[cursor + 1].as_secs_f64();
                    ((at - t0) / (t1 - t0)).clamp(0.0, 1.0) as f32
                }
                _ => 0.0,
            };
            if w == 0.0 {
                out.extend_from_slice(held);
                continue;
            }
            let next = &self.rows[cursor + 1];
            out.extend(held.iter().zip(&next[..features]).map(|(&a, &b)| {
                if a.is_finite() && b.is_finite() {
                    a + (b - a) * w
                } else {
                    a
                }
            }));
        }
        true
    }

    /// The window the network read at the last prediction (resampled,
    /// rewritten and normalised, row-major); only meaningful right after
    /// [`ServiceWatch::predict`] returned a prediction.
    pub fn last_input(&self) -> &[f32] {
        &self.buf
    }

    /// `None` until the scrapes span the network's window in seconds (the
    /// seed answers "healthy with probability 1" there, which no
    /// measurement supports).
    pub fn predict(&mut self, model: &Model, cfg: &PredictorConfig) -> Option<Prediction> {
        if !self.resample(model) {
            return None;
        }
        model
            .normaliser
            .network_input(&mut self.buf, cfg.slo_latency_ms, &mut self.medians);
        let p = model.net.predict(&self.buf, &mut self.scratch);
        let probabilities = [p[0], p[1], p[2], p[3]];
        let class = (0..4)
            .max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]))
            .unwrap_or(0);
        let status = Health::from_index(class);
        let not_healthy = 1.0 - probabilities[0];
        let warning = not_healthy >= cfg.alarm_threshold;
        let detection = self.pattern(cfg);
        let time_to_failure_s = if warning || status != Health::Healthy {
            let spacing_s = self.trend_spacing_s(cfg.patterns.trend_window);
            Some(time_to_failure(detection.as_ref(), status, cfg, spacing_s))
        } else {
            None
        };
        Some(Prediction {
            status,
            probability: probabilities[class],
            probabilities,
            not_healthy,
            warning,
            failure_type: detection.map(|d| d.failure),
            time_to_failure_s,
            recommended_action: detection.map_or(Remediation::Monitor, |d| d.failure.remediation()),
        })
    }
}

/// The driving metric's trend (per scrape, `spacing_s` apart) extrapolated
/// to its limit when it is heading there (0 when already past it);
/// otherwise the median time to breach measured on the training runs for
/// the predicted class.
pub fn time_to_failure(
    d: Option<&Detection>,
    status: Health,
    cfg: &PredictorConfig,
    spacing_s: f64,
) -> f64 {
    if let Some(d) = d {
        if d.value >= d.limit {
            return 0.0;
        }
        if d.slope > 0.0 {
            return (d.limit - d.value) / d.slope * spacing_s;
        }
    }
    cfg.median_time_to_breach_s[status as usize]
        .or(cfg
            .median_time_to_breach_s
            .iter()
            .rev()
            .flatten()
            .next()
            .copied())
        .unwrap_or(0.0)
}
