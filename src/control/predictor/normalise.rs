//! Per-feature normalisation fitted on the training set: heavy-tailed
//! features (rates, latencies, connection counts) are taken as `ln(1 + x)`
//! first, then every feature is standardised with the training mean and
//! standard deviation.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    pub log1p: Vec<bool>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normaliser {
    /// Fits on rows of `features` values (each row one scrape).
    pub fn fit<'a>(log1p: Vec<bool>, rows: impl Iterator<Item = &'a [f32]>) -> Self {
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
        Normaliser { log1p, mean, std }
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
}

fn transform(x: f32, log: bool) -> f32 {
    if log { x.max(0.0).ln_1p() } else { x }
}
