//! An online, per-metric anomaly score in [0, 1].
//!
//! Two stages, after Ahmad et al., "Unsupervised real-time anomaly detection
//! for streaming data" (Neurocomputing 2017), the method behind NAB's HTM
//! detector, with the HTM prediction replaced by a robust rolling baseline:
//!
//! 1. a *surprise* per value: how far it lies from the median of the last
//!    `baseline` values, in units of their median absolute deviation;
//! 2. the *anomaly likelihood*: the tail probability of the recent mean
//!    surprise (`short` values) under a normal distribution fitted to the
//!    last `history` surprises, reported on NAB's log scale so that only
//!    very unlikely stretches approach 1.
//!
//! The state is plain data and the update is deterministic: the same values
//! give the same scores in the simulator, in the live adapter and in
//! `selfheal eval nab`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Fixed before scoring NAB (see the predictor issue's note); every field
/// is in samples.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Values the baseline median and MAD are taken over.
    pub baseline: usize,
    /// Surprises the likelihood's normal distribution is fitted to.
    pub history: usize,
    /// Surprises averaged for the short-term mean.
    pub short: usize,
    /// Scores are 0 until this many values have been seen.
    pub warmup: usize,
    /// Surprise is capped so that one wild value cannot dominate the fit.
    pub max_surprise: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            baseline: 64,
            history: 1000,
            short: 6,
            warmup: 100,
            max_surprise: 20.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AnomalyDetector {
    cfg: DetectorConfig,
    values: VecDeque<f64>,
    surprises: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    seen: usize,
    scratch: Vec<f64>,
}

impl AnomalyDetector {
    pub fn new(cfg: DetectorConfig) -> Self {
        AnomalyDetector {
            values: VecDeque::with_capacity(cfg.baseline + 1),
            surprises: VecDeque::with_capacity(cfg.history + 1),
            cfg,
            sum: 0.0,
            sum_sq: 0.0,
            seen: 0,
            scratch: Vec::new(),
        }
    }

    /// Feeds the next value and returns its anomaly score. Non-finite values
    /// (a scrape without traffic) score 0 and leave the state untouched.
    pub fn update(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        self.seen += 1;
        let surprise = self.surprise(x);
        self.values.push_back(x);
        if self.values.len() > self.cfg.baseline {
            self.values.pop_front();
        }
        let Some(s) = surprise else { return 0.0 };
        self.surprises.push_back(s);
        self.sum += s;
        self.sum_sq += s * s;
        if self.surprises.len() > self.cfg.history {
            let old = self.surprises.pop_front().expect("non-empty");
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        if self.seen < self.cfg.warmup || self.surprises.len() < self.cfg.short {
            return 0.0;
        }
        let n = self.surprises.len() as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        // A floor on the spread keeps a flat signal's first wobble from
        // scoring as a certainty.
        let sd = var.sqrt().max(0.5);
        let k = self.cfg.short.min(self.surprises.len());
        let recent = self.surprises.iter().rev().take(k).sum::<f64>() / k as f64;
        let tail = normal_tail((recent - mean) / sd);
        log_likelihood(1.0 - tail)
    }

    fn surprise(&mut self, x: f64) -> Option<f64> {
        if self.values.len() < 8 {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.values.iter().copied());
        let centre = median(&mut self.scratch);
        for v in &mut self.scratch {
            *v = (*v - centre).abs();
        }
        let mad: f64 = median(&mut self.scratch);
        // 1.4826 MAD estimates the standard deviation of normal data; the
        // floor relative to the level stops a constant signal from dividing
        // by zero.
        let scale = (1.4826 * mad).max(1e-3 * centre.abs()).max(1e-9);
        Some(((x - centre).abs() / scale).min(self.cfg.max_surprise))
    }
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// P(Z > z) for a standard normal Z (Abramowitz and Stegun 7.1.26 on erfc).
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    // Numerical Recipes' erfcc: fractional error below 1.2e-7 everywhere.
    let y = t
        * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { y } else { 2.0 - y }
}

/// NAB's `computeLogLikelihood`: maps a likelihood onto [0, 1] so that
/// 0.99999 is about 0.5 and only near-certainties approach 1.
pub fn log_likelihood(likelihood: f64) -> f64 {
    ((1.000_000_000_1 - likelihood).ln() / -23.025_850_929_940_46).clamp(0.0, 1.0)
}

/// Scores a whole series with a fresh detector.
pub fn score_series(cfg: &DetectorConfig, values: &[f64]) -> Vec<f64> {
    let mut d = AnomalyDetector::new(cfg.clone());
    values.iter().map(|&x| d.update(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_shift_scores_high_and_noise_scores_low() {
        let mut values: Vec<f64> = (0..600)
            .map(|i| 10.0 + ((i * 7919) % 13) as f64 * 0.1)
            .collect();
        values.extend((0..20).map(|i| 30.0 + (i % 3) as f64));
        let s = score_series(&DetectorConfig::default(), &values);
        let quiet = s[100..600].iter().copied().fold(0.0, f64::max);
        let shift = s[600..620].iter().copied().fold(0.0, f64::max);
        assert!(quiet < 0.5, "noise scored {quiet}");
        assert!(shift > 0.9, "shift scored {shift}");
    }

    #[test]
    fn tail_matches_known_values() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-7);
        assert!((normal_tail(-1.0) - 0.841_344_746).abs() < 1e-7);
    }
}
