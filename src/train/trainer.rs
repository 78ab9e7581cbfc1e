//! Trains the predictor network on a trace dataset: Adam, class-weighted
//! cross-entropy, early stopping on a validation split made *by run* (two
//! windows of one run share most of their scrapes, so a split by window
//! would leak), seeded throughout.

use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::Device;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::model::{PredictorNet, PredictorNetConfig};
use super::traces::{Dataset, FEATURES, TRACES_SLO_LATENCY_MS};
use crate::control::predictor::lstm::{FusedNet, Scratch};
use crate::control::predictor::normalise::{Inputs, Normaliser};
use crate::rng::{Stream, Subsystem};

#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    pub net: PredictorNetConfig,
    #[config(default = 1)]
    pub seed: u64,
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    #[config(default = 32)]
    pub batch: usize,
    #[config(default = 12)]
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    #[config(default = 3)]
    pub patience: usize,
    /// Fraction of runs held out for early stopping.
    #[config(default = 0.2)]
    pub validation_fraction: f64,
    /// One sample every `stride` scrapes of a (run, service).
    #[config(default = 6)]
    pub stride: usize,
    /// Cap on training samples per epoch (drawn afresh each epoch), 0 = all.
    #[config(default = 0)]
    pub max_samples_per_epoch: usize,
}

/// Which features are taken as `ln(1 + x)` before standardising.
pub fn log_features(n: usize) -> Vec<bool> {
    FEATURES[..n]
        .iter()
        .map(|f| {
            matches!(
                *f,
                "request_rate" | "latency_p50_ms" | "latency_p99_ms" | "active_connections"
            )
        })
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

pub struct Trained {
    pub net: PredictorNet,
    /// `net` in the control core's form (`net.to_fused()`): what the
    /// predictor runs and `fused.json` holds.
    pub fused: FusedNet,
    pub normaliser: Normaliser,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    /// Training windows (one every `stride` scrapes of the training runs).
    pub train_samples: usize,
    pub train_runs: Vec<u32>,
    pub val_runs: Vec<u32>,
}

/// Splits run ids into (train, validation) with a seeded shuffle.
pub fn split_runs(ds: &Dataset, fraction: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut ids: Vec<u32> = ds.runs.iter().map(|r| r.id).collect();
    let mut rng = Stream::new_indexed(seed, Subsystem::Training, 1);
    shuffle(&mut ids, &mut rng);
    let n_val = ((ids.len() as f64) * fraction).round() as usize;
    let val = ids.split_off(ids.len() - n_val.min(ids.len()));
    ids.sort_unstable();
    let mut val = val;
    val.sort_unstable();
    (ids, val)
}

fn shuffle<T>(v: &mut [T], rng: &mut Stream) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.index(i + 1));
    }
}

/// A normalised window and its class.
pub struct Samples {
    pub x: Vec<f32>,
    pub y: Vec<usize>,
    pub ends: Vec<usize>,
    pub per_sample: usize,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    pub fn window(&self, i: usize) -> &[f32] {
        &self.x[i * self.per_sample..(i + 1) * self.per_sample]
    }
}

/// The scrape intervals (in multiples of the traces' own) that relative
/// inputs are trained across, one per window in turn: 5, 15, 30 and 60 s
/// for 5 s traces.
pub const INTERVAL_MULTIPLES: [usize; 4] = [1, 3, 6, 12];

/// The window as a scraper every `k` rows would have left it: each row
/// holds the latest scrape at or before it, the window's last row being a
/// scrape (a prediction is made at a scrape). Rows before the window's
/// first such scrape take the first row.
pub fn hold_every(window: &mut [f32], f: usize, k: usize) {
    let n = window.len() / f;
    if k <= 1 || n == 0 {
        return;
    }
    for j in 0..n {
        let back = (n - 1 - j).div_ceil(k) * k;
        let src = (n - 1).saturating_sub(back);
        if src != j {
            window.copy_within(src * f..(src + 1) * f, j * f);
        }
    }
}

/// Raw windows rewritten by `inputs` (relative inputs across the scrape
/// intervals of [`INTERVAL_MULTIPLES`]).
fn input_windows<'a>(
    ds: &'a Dataset,
    ends: &'a [usize],
    f: usize,
    inputs: Inputs,
) -> impl Iterator<Item = Vec<f32>> + 'a {
    let mut medians = Vec::new();
    ends.iter().enumerate().map(move |(i, &e)| {
        let mut w = ds.window(e, f);
        if inputs == Inputs::Relative {
            // Oldest row first: holding copies from earlier rows only, so
            // in-place order from the start is safe.
            hold_every(&mut w, f, INTERVAL_MULTIPLES[i % INTERVAL_MULTIPLES.len()]);
        }
        inputs.apply(&mut w, f, TRACES_SLO_LATENCY_MS, &mut medians);
        w
    })
}

fn sample_ends(ds: &Dataset, runs: &[u32], stride: usize) -> Vec<usize> {
    ds.sample_ends(stride)
        .into_iter()
        .filter(|&i| runs.binary_search(&ds.rows[i].run).is_ok())
        .collect()
}

pub fn samples(ds: &Dataset, runs: &[u32], stride: usize, norm: &Normaliser) -> Samples {
    let f = norm.features();
    let ends = sample_ends(ds, runs, stride);
    let per_sample = ds.config.window * f;
    let mut x = Vec::with_capacity(ends.len() * per_sample);
    let y = ends
        .iter()
        .map(|&e| ds.rows[e].label.expect("sample ends are labelled") as usize)
        .collect();
    for mut w in input_windows(ds, &ends, f, norm.inputs) {
        norm.apply_window(&mut w);
        x.extend_from_slice(&w);
    }
    Samples {
        x,
        y,
        ends,
        per_sample,
    }
}

/// Mean cross-entropy and accuracy of the fused network on `s`.
pub fn evaluate(fused: &FusedNet, s: &Samples) -> (f64, f64) {
    let mut scratch = Scratch::default();
    let (mut loss, mut right) = (0.0, 0usize);
    for i in 0..s.len() {
        let p = fused.predict(s.window(i), &mut scratch);
        loss -= (p[s.y[i]].max(1e-7) as f64).ln();
        let arg = argmax(&p);
        right += (arg == s.y[i]) as usize;
    }
    let n = s.len().max(1) as f64;
    (loss / n, right as f64 / n)
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Progress reporting for long work: the trainer calls it after every batch.
pub trait Progress {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f64, accuracy: f64);
    fn epoch(&mut self, stats: &EpochStats, best: bool);
}

/// [`train_with`] on raw scrapes, the seed's inputs.
pub fn train(
    ds: &Dataset,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn Progress,
) -> Trained {
    train_with(ds, cfg, Inputs::Raw, device, progress)
}

/// Trains on `inputs` (kept in the normaliser, saved beside the model).
pub fn train_with(
    ds: &Dataset,
    cfg: &TrainConfig,
    inputs: Inputs,
    device: &Device,
    progress: &mut dyn Progress,
) -> Trained {
    let f = cfg.net.features;
    let (train_runs, val_runs) = split_runs(ds, cfg.validation_fraction, cfg.seed);
    let normaliser = match inputs {
        Inputs::Raw => Normaliser::fit(
            Inputs::Raw,
            log_features(f),
            ds.rows
                .iter()
                .filter(|r| train_runs.binary_search(&r.run).is_ok())
                .map(|r| &r.features[..f]),
        ),
        // Relative inputs depend on the window: fitted on the training
        // windows as the network will see them.
        inputs => {
            let ends = sample_ends(ds, &train_runs, cfg.stride);
            let windows: Vec<Vec<f32>> = input_windows(ds, &ends, f, inputs).collect();
            Normaliser::fit(
                inputs,
                vec![false; f],
                windows.iter().flat_map(|w| w.chunks(f)),
            )
        }
    };
    let train_set = samples(ds, &train_runs, cfg.stride, &normaliser);
    let val_set = samples(ds, &val_runs, cfg.stride, &normaliser);
    // Inverse-frequency class weights, capped so a class seen a handful of
    // times cannot dominate.
    let mut counts = [0usize; 4];
    for &y in &train_set.y {
        counts[y] += 1;
    }
    let n = train_set.len().max(1) as f32;
    let weights: Vec<f32> = counts
        .iter()
        .map(|&c| (n / (4.0 * c.max(1) as f32)).clamp(0.2, 20.0))
        .collect();
    let device = device.clone().autodiff();
    device.seed(cfg.seed);
    let mut net = cfg.net.init(&device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new()
        .with_weights(Some(weights))
        .init(&device);
    let mut rng = Stream::new_indexed(cfg.seed, Subsystem::Training, 2);
    let mut best: Option<(f64, usize, PredictorNet, FusedNet)> = None;
    let mut history = Vec::new();
    let window = cfg.net.window;
    for epoch in 1..=cfg.max_epochs {
        let started = std::time::Instant::now();
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        shuffle(&mut order, &mut rng);
        if cfg.max_samples_per_epoch > 0 {
            order.truncate(cfg.max_samples_per_epoch);
        }
        let batches = order.len().div_ceil(cfg.batch);
        let (mut loss_sum, mut right, mut seen) = (0.0, 0usize, 0usize);
        for (b, chunk) in order.chunks(cfg.batch).enumerate() {
            let mut x = Vec::with_capacity(chunk.len() * train_set.per_sample);
            let mut y = Vec::with_capacity(chunk.len());
            for &i in chunk {
                x.extend_from_slice(train_set.window(i));
                y.push(train_set.y[i] as i64);
            }
            let xs = Tensor::<3>::from_data(TensorData::new(x, [chunk.len(), window, f]), &device);
            let ys =
                Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [chunk.len()]), &device);
            let logits = net.forward(xs);
            let pred: Vec<i64> = logits
                .clone()
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("argmax data");
            right += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
            let loss = loss_fn.forward(logits, ys);
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            seen += chunk.len();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(cfg.learning_rate, net, grads);
            progress.batch(
                epoch,
                b + 1,
                batches,
                loss_sum / seen as f64,
                right as f64 / seen as f64,
            );
        }
        let fused = net.valid().to_fused();
        let (val_loss, val_accuracy) = evaluate(&fused, &val_set);
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        let improved = best.as_ref().is_none_or(|b| val_loss < b.0);
        progress.epoch(&stats, improved);
        history.push(stats);
        if improved {
            best = Some((val_loss, epoch, net.valid(), fused));
        } else if best.as_ref().is_some_and(|b| epoch - b.1 >= cfg.patience) {
            break;
        }
    }
    let (_, best_epoch, net, fused) = best.expect("at least one epoch");
    Trained {
        net,
        fused,
        normaliser,
        history,
        best_epoch,
        train_samples: train_set.len(),
        train_runs,
        val_runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_every_third_row_is_what_a_15_s_scraper_leaves() {
        // Seven one-feature rows 0..7; scrapes at rows 6, 3 and 0.
        let mut w: Vec<f32> = (0..7).map(|i| i as f32).collect();
        hold_every(&mut w, 1, 3);
        assert_eq!(w, vec![0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 6.0]);
        // Rows before the first scrape in the window take the first row.
        let mut w: Vec<f32> = (0..6).flat_map(|i| [i as f32, 10.0 * i as f32]).collect();
        hold_every(&mut w, 2, 4);
        assert_eq!(
            w,
            vec![
                0.0, 0.0, 1.0, 10.0, 1.0, 10.0, 1.0, 10.0, 1.0, 10.0, 5.0, 50.0
            ]
        );
        let mut same: Vec<f32> = (0..5).map(|i| i as f32).collect();
        hold_every(&mut same, 1, 1);
        assert_eq!(same, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    }
}
