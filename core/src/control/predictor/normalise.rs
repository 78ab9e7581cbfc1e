//! What the network reads from a window of scrapes: the window's inputs
//! ([`Inputs`]), then per-feature normalisation fitted on the training set:
//! heavy-tailed features (rates, latencies, connection counts) are taken as
//! `ln(1 + x)` first, then every feature is standardised with the training
//! mean and standard deviation.

use serde::{Deserialize, Serialize};

use super::patterns::{CPU, ERRORS, MEMORY, P50, P99, RATE};

/// How a window of raw scrape rows becomes the network's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inputs {
    /// The scrape's values as they are (the seed's inputs): levels in the
    /// units of the cluster the model was trained on.
    #[default]
    Raw,
    /// Values that mean the same on any cluster: CPU and errors as shares,
    /// memory *growth* over the window (of the limit), the request rate and
    /// p99 over their own median in the window (log ratios), p50 and p99
    /// over the SLO latency, ready replicas against their median. Needs all
    /// 8 features.
    Relative,
}

/// Keeps a transformed value in a range the network has seen.
const RELATIVE_CLAMP: f32 = 20.0;

impl Inputs {
    /// Rewrites a row-major window of `f`-wide raw scrape rows in place.
    /// `scratch` is reused for the medians (no allocation once it has
    /// grown to the window's length).
    pub fn apply(self, window: &mut [f32], f: usize, slo_latency_ms: f64, scratch: &mut Vec<f32>) {
        if self == Inputs::Raw || f < 8 || window.len() < f {
            return;
        }
        const P99_BASELINE: usize = 6;
        const READY: usize = 7;
        let mut median = |k: usize| {
            scratch.clear();
            scratch.extend(window.chunks(f).map(|r| r[k]));
            let mid = scratch.len() / 2;
            *scratch.select_nth_unstable_by(mid, f32::total_cmp).1
        };
        let (rate_med, p99_med, ready_med) = (median(RATE), median(P99), median(READY));
        let memory_start = window[MEMORY];
        let slo = (slo_latency_ms as f32).max(1e-3);
        for row in window.chunks_mut(f) {
            let p99 = row[P99];
            row[MEMORY] -= memory_start;
            row[RATE] = ((row[RATE] + 0.1) / (rate_med + 0.1)).ln();
            row[P50] /= slo;
            row[P99] = p99 / slo;
            row[P99_BASELINE] = ((p99 + 1.0) / (p99_med + 1.0)).ln();
            row[READY] = (row[READY] - ready_med) / ready_med.max(1.0);
            for v in [CPU, ERRORS]
                .into_iter()
                .chain([MEMORY, RATE, P50, P99, P99_BASELINE, READY])
            {
                row[v] = row[v].clamp(-RELATIVE_CLAMP, RELATIVE_CLAMP);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    /// What the statistics below were fitted on (models from before this
    /// field read raw scrapes).
    #[serde(default)]
    pub inputs: Inputs,
    pub log1p: Vec<bool>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normaliser {
    /// Fits on rows of `features` values (each row one scrape, already
    /// rewritten by `inputs`).
    pub fn fit<'a>(
        inputs: Inputs,
        log1p: Vec<bool>,
        rows: impl Iterator<Item = &'a [f32]>,
    ) -> Self {
        let f = log1p.len();
        let (mut sum, mut sq, mut n) = (vec![0f64; f], vec![0f64; f], 0f64);
        for r in rows {
            for k in 0..f {
                let v = transform(r[k], log1p[k]) as f64;
                sum[k] += v;
                sq[k] += v * v;
            }
            n += 1.0;
        }
        let n = n.max(1.0);
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = (0..f)
            .map(|k| {
                let m = sum[k] / n;
                ((sq[k] / n - m * m).max(0.0).sqrt() as f32).max(1e-6)
            })
            .collect();
        Normaliser {
            inputs,
            log1p,
            mean,
            std,
        }
    }

    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Normalises one scrape's raw values in place.
    pub fn apply(&self, row: &mut [f32]) {
        for (k, v) in row.iter_mut().enumerate().take(self.features()) {
            *v = (transform(*v, self.log1p[k]) - self.mean[k]) / self.std[k];
        }
    }

    /// Normalises a row-major window of `features()`-wide rows.
    pub fn apply_window(&self, window: &mut [f32]) {
        for row in window.chunks_mut(self.features()) {
            self.apply(row);
        }
    }

    /// A raw window (row-major, `features()` wide) as the network reads it:
    /// rewritten by `inputs` against the SLO latency, then normalised.
    pub fn network_input(&self, window: &mut [f32], slo_latency_ms: f64, scratch: &mut Vec<f32>) {
        self.inputs
            .apply(window, self.features(), slo_latency_ms, scratch);
        self.apply_window(window);
    }
}

fn transform(x: f32, log: bool) -> f32 {
    if log { x.max(0.0).ln_1p() } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12 scrapes of a service: memory at `mem`, rate `rate`, p99 `p99`.
    fn window(mem: f32, rate: f32, p99: f32) -> Vec<f32> {
        (0..12)
            .flat_map(|i| {
                let t = i as f32;
                [
                    0.5 + 0.01 * t,
                    mem + 0.002 * t,
                    rate * (1.0 + 0.05 * (t * 0.7).sin()),
                    0.001 * t,
                    p99 * 0.3,
                    p99 * (1.0 + 0.1 * t),
                    4.0,
                    3.0,
                ]
            })
            .collect()
    }

    #[test]
    fn relative_inputs_do_not_see_a_services_own_levels() {
        let mut scratch = Vec::new();
        // A service at 5 % of its memory limit serving 50 req/s within a
        // 100 ms objective ...
        let mut a = window(0.05, 50.0, 40.0);
        Inputs::Relative.apply(&mut a, 8, 100.0, &mut scratch);
        // ... reads like one at 87 % serving 5000 req/s within 1 s.
        let mut b = window(0.87, 5000.0, 400.0);
        Inputs::Relative.apply(&mut b, 8, 1000.0, &mut scratch);
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            // The log ratios carry small offsets (+0.1 req/s, +1 ms).
            assert!(
                (x - y).abs() < 0.02,
                "feature {} of scrape {}: {x} vs {y}",
                k % 8,
                k / 8
            );
        }
        // Raw inputs are left alone.
        let mut raw = window(0.05, 50.0, 40.0);
        Inputs::Raw.apply(&mut raw, 8, 100.0, &mut scratch);
        assert_eq!(raw, window(0.05, 50.0, 40.0));
    }

    #[test]
    fn memory_growth_and_a_latency_jump_show() {
        let mut scratch = Vec::new();
        let mut w = window(0.3, 100.0, 20.0);
        let last = 11 * 8;
        w[last + 5] = 200.0;
        Inputs::Relative.apply(&mut w, 8, 250.0, &mut scratch);
        assert!(
            (w[last + 1] - 0.022).abs() < 1e-5,
            "growth over the window: {}",
            w[last + 1]
        );
        assert!(
            w[last + 6] > 1.5,
            "p99 ten times its median: {}",
            w[last + 6]
        );
        assert!(
            (w[last + 5] - 0.8).abs() < 1e-5,
            "p99 over the SLO: {}",
            w[last + 5]
        );
    }
}
