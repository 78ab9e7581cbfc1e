//! The load forecast: a random forest over the recent metric history,
//! with a calibrated prediction interval.
//!
//! Features (74): for each of the last 10 samples, the request rate as a
//! log-ratio to the current rate (the current log level in the first slot)
//! and six further metrics (CPU, memory, error rate, log p50, log p99, log
//! connections); plus daily and weekly phase as sine and cosine. The target
//! is the log-ratio of the rate `horizon` samples ahead to the current rate,
//! so the trees learn relative change and still work at levels they have not
//! seen.
//!
//! smartcore does not expose a forest's trees, so the 100 trees are trained
//! as `groups` forests of `n_trees / groups` with independent seeds. Their
//! mean is the forecast; their spread, scaled by a normalised-conformal
//! quantile of the recent forecast errors, gives the interval (Papadopoulos
//! et al. 2002; Lei et al. 2018): it is calibrated by construction on the
//! error history, and checked on held-out data by `selfheal eval forecast`.
//!
//! The forest is not always the better forecaster: on load that switches
//! regime at random (bursts, on/off queues) persistence wins. Both are scored
//! on every resolved forecast, and the one with the lower mean absolute
//! error over the last `selection_window` resolutions is used (forecast
//! selection by recent performance), each with its own conformal interval.

use std::collections::VecDeque;

use ndarray::{Array1, Array2};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};

use crate::metrics::ServiceMetrics;

/// Samples of history each feature row looks at.
pub const WINDOW: usize = 10;
/// Features per row.
pub const FEATURES: usize = WINDOW * 7 + 4;

type Forest = RandomForestRegressor<f64, f64, Array2<f64>, Array1<f64>>;

fn push_bounded(q: &mut VecDeque<f64>, x: f64, cap: usize) {
    q.push_back(x);
    if q.len() > cap {
        q.pop_front();
    }
}

/// The finite-sample conformal quantile at `level` of recent scores, once 20
/// exist.
fn quantile(scores: &VecDeque<f64>, level: f64) -> Option<f64> {
    let n = scores.len();
    if n < 20 {
        return None;
    }
    let mut s: Vec<f64> = scores.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let k = (((n + 1) as f64 * level).ceil() as usize).clamp(1, n);
    Some(s[k - 1])
}

#[derive(Clone, Debug, PartialEq)]
pub struct ForecastConfig {
    /// Samples ahead.
    pub horizon: usize,
    pub history: usize,
    /// Samples before the first training.
    pub min_train: usize,
    /// Retrain after this many new samples.
    pub retrain_every: usize,
    pub n_trees: usize,
    pub groups: usize,
    /// Bounded, so that a saved model stays small.
    pub max_depth: u16,
    pub min_samples_leaf: usize,
    /// Features tried at each split (p/3, the usual choice for regression).
    pub features_per_split: usize,
    /// Nominal coverage of the interval.
    pub interval_level: f64,
    /// Forecast errors kept for the interval.
    pub error_window: usize,
    /// Resolved forecasts over which forest and persistence are compared.
    pub selection_window: usize,
    pub seed: u64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            horizon: 1,
            history: 1000,
            min_train: 100,
            retrain_every: 20,
            n_trees: 100,
            groups: 10,
            max_depth: 10,
            min_samples_leaf: 10,
            features_per_split: FEATURES / 3,
            interval_level: 0.8,
            error_window: 200,
            selection_window: 50,
            seed: 0,
        }
    }
}

/// One forecast of the request rate `horizon` samples ahead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    pub rate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Nominal coverage of `[lower, upper]`.
    pub level: f64,
    /// Where the forecast came from.
    pub source: ForecastSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForecastSource {
    /// Fewer than `min_train` samples: the mean of recent load.
    RecentMean,
    /// The forest, its interval not yet calibrated on enough errors.
    ForestUncalibrated,
    Forest,
    /// Persistence (the last value), which has recently beaten the forest.
    Persistence,
}

impl Forecast {
    /// 1 minus the interval's relative width: near 1 for a tight interval,
    /// 0 when it is as wide as the forecast itself.
    pub fn confidence(&self) -> f64 {
        let width = (self.upper - self.lower) / (self.upper + self.lower).max(1e-9);
        (1.0 - width).clamp(0.0, 1.0)
    }
}

/// One metrics sample of the history.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    t: f64,
    rate: f64,
    others: [f64; 6],
}

impl Sample {
    fn of(m: &ServiceMetrics) -> Self {
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        Sample {
            t: m.timestamp.as_secs_f64(),
            rate: finite(m.request_rate).max(0.0),
            others: [
                finite(m.cpu_usage),
                finite(m.memory_usage),
                finite(m.error_rate),
                finite(m.latency_p50).max(0.0).ln_1p(),
                finite(m.latency_p99).max(0.0).ln_1p(),
                (m.active_connections as f64).ln_1p(),
            ],
        }
    }
}

/// A forecast made earlier, waiting for its outcome.
#[derive(Clone, Copy, Debug)]
struct Pending {
    due: usize,
    log_base: f64,
    mean: f64,
    spread: f64,
    /// The forest's and persistence's point forecasts (req/s).
    forest: f64,
    persistence: f64,
}

pub struct Forecaster {
    cfg: ForecastConfig,
    samples: VecDeque<Sample>,
    /// Total samples ever pushed (indexes `Pending::due`).
    pushed: usize,
    forests: Vec<Forest>,
    trained_at: Option<usize>,
    fits: u64,
    pending: VecDeque<Pending>,
    scores: VecDeque<f64>,
    forest_errors: VecDeque<f64>,
    persistence_errors: VecDeque<f64>,
}

const SPREAD_FLOOR: f64 = 0.02;

impl Forecaster {
    pub fn new(cfg: ForecastConfig) -> Self {
        Forecaster {
            cfg,
            samples: VecDeque::new(),
            pushed: 0,
            forests: Vec::new(),
            trained_at: None,
            fits: 0,
            pending: VecDeque::new(),
            scores: VecDeque::new(),
            forest_errors: VecDeque::new(),
            persistence_errors: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ForecastConfig {
        &self.cfg
    }

    /// Forests fitted so far.
    pub fn fits(&self) -> u64 {
        self.fits
    }

    /// Adds a sample, scores forecasts that came due, and retrains on
    /// schedule.
    pub fn push(&mut self, m: &ServiceMetrics) {
        self.samples.push_back(Sample::of(m));
        self.pushed += 1;
        if self.samples.len() > self.cfg.history {
            self.samples.pop_front();
        }
        let actual_rate = self.samples.back().map_or(0.0, |s| s.rate);
        let actual = actual_rate.ln_1p();
        while let Some(p) = self.pending.front().copied() {
            if p.due > self.pushed {
                break;
            }
            self.pending.pop_front();
            if p.due == self.pushed {
                let score = ((actual - p.log_base) - p.mean).abs() / p.spread;
                let window = self.cfg.error_window;
                push_bounded(&mut self.scores, score, window);
                push_bounded(
                    &mut self.forest_errors,
                    (actual_rate - p.forest).abs(),
                    window,
                );
                push_bounded(
                    &mut self.persistence_errors,
                    (actual_rate - p.persistence).abs(),
                    window,
                );
            }
        }
        let due = match self.trained_at {
            None => {
                self.samples.len() >= self.cfg.min_train.saturating_add(WINDOW + self.cfg.horizon)
            }
            Some(at) => self.pushed - at >= self.cfg.retrain_every,
        };
        if due {
            self.train();
        }
    }

    fn row(&self, end: usize, out: &mut [f64]) {
        let s = &self.samples;
        let now = s[end];
        let base = now.rate.ln_1p();
        for k in 0..WINDOW {
            let x = s[end - k];
            let o = k * 7;
            out[o] = if k == 0 { base } else { x.rate.ln_1p() - base };
            out[o + 1..o + 7].copy_from_slice(&x.others);
        }
        let day = std::f64::consts::TAU * now.t / 86_400.0;
        let week = day / 7.0;
        out[WINDOW * 7..].copy_from_slice(&[day.sin(), day.cos(), week.sin(), week.cos()]);
    }

    /// Trains the forests on every complete (window, horizon) pair.
    pub fn train(&mut self) {
        let h = self.cfg.horizon;
        let n = self.samples.len();
        if n < WINDOW + h + 2 {
            return;
        }
        let rows = n - (WINDOW - 1) - h;
        let mut x = Array2::<f64>::zeros((rows, FEATURES));
        let mut y = Array1::<f64>::zeros(rows);
        for (r, end) in (WINDOW - 1..n - h).enumerate() {
            let mut row = x.row_mut(r);
            self.row(end, row.as_slice_mut().expect("row-major"));
            y[r] = self.samples[end + h].rate.ln_1p() - self.samples[end].rate.ln_1p();
        }
        let per_group = (self.cfg.n_trees / self.cfg.groups).max(1);
        let m = self.cfg.features_per_split.clamp(1, FEATURES);
        let mut forests = Vec::with_capacity(self.cfg.groups);
        for g in 0..self.cfg.groups {
            let params = RandomForestRegressorParameters::default()
                .with_n_trees(per_group)
                .with_max_depth(self.cfg.max_depth)
                .with_min_samples_leaf(self.cfg.min_samples_leaf)
                .with_min_samples_split(2 * self.cfg.min_samples_leaf)
                .with_m(m)
                .with_seed(crate::rng::splitmix64(
                    self.cfg.seed ^ (self.fits << 8) ^ g as u64,
                ));
            match Forest::fit(&x, &y, params) {
                Ok(f) => forests.push(f),
                // A degenerate training set (all targets equal) keeps the
                // previous model rather than failing the control loop.
                Err(_) => return,
            }
        }
        self.forests = forests;
        self.trained_at = Some(self.pushed);
        self.fits += 1;
    }

    /// Forecasts the rate `horizon` samples after the newest one.
    pub fn forecast(&mut self) -> Option<Forecast> {
        let n = self.samples.len();
        let last = *self.samples.back()?;
        let level = self.cfg.interval_level;
        if self.forests.is_empty() || n < WINDOW {
            let recent: Vec<f64> = self
                .samples
                .iter()
                .rev()
                .take(WINDOW)
                .map(|s| s.rate)
                .collect();
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            let sd = (recent.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / recent.len() as f64)
                .sqrt();
            // About +-1.28 sd for a nominal 80 % under normality.
            let z = 1.2816 * level / 0.8;
            return Some(Forecast {
                rate: mean,
                lower: (mean - z * sd).max(0.0),
                upper: mean + z * sd,
                level,
                source: ForecastSource::RecentMean,
            });
        }
        let mut row = vec![0.0; FEATURES];
        self.row(n - 1, &mut row);
        let x = Array2::from_shape_vec((1, FEATURES), row).expect("shape");
        let preds: Vec<f64> = self
            .forests
            .iter()
            .filter_map(|f| f.predict(&x).ok())
            .map(|p| p[0])
            .collect();
        let g = preds.len().max(1) as f64;
        let mean = preds.iter().sum::<f64>() / g;
        let spread = ((preds.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / g).sqrt()
            * g.sqrt())
        .max(SPREAD_FLOOR);
        let log_base = last.rate.ln_1p();
        let to_rate = |lr: f64| ((log_base + lr).exp() - 1.0).max(0.0);
        let forest = to_rate(mean);
        self.pending.push_back(Pending {
            due: self.pushed + self.cfg.horizon,
            log_base,
            mean,
            spread,
            forest,
            persistence: last.rate,
        });
        if self.persistence_wins() {
            let hw = quantile(&self.persistence_errors, level).unwrap_or(0.0);
            return Some(Forecast {
                rate: last.rate,
                lower: (last.rate - hw).max(0.0),
                upper: last.rate + hw,
                level,
                source: ForecastSource::Persistence,
            });
        }
        let (q, source) = match quantile(&self.scores, level) {
            Some(q) => (q, ForecastSource::Forest),
            None => (1.2816 * level / 0.8, ForecastSource::ForestUncalibrated),
        };
        Some(Forecast {
            rate: forest,
            lower: to_rate(mean - q * spread),
            upper: to_rate(mean + q * spread),
            level,
            source,
        })
    }

    /// Has persistence had the lower mean absolute error over the last
    /// `selection_window` resolved forecasts?
    fn persistence_wins(&self) -> bool {
        let w = self.cfg.selection_window;
        if self.forest_errors.len() < w.min(20) {
            return false;
        }
        let mean_last =
            |e: &VecDeque<f64>| e.iter().rev().take(w).sum::<f64>() / e.len().min(w) as f64;
        mean_last(&self.persistence_errors) < mean_last(&self.forest_errors)
    }
}
