//! The failure predictor's network as a burn `Module` + `Config` pair:
//! LSTM(F -> 128, sequences) -> dropout -> LSTM(128 -> 64, sequences) ->
//! dropout -> LSTM(64 -> 32, last step) -> dense 16 ReLU -> dense 4 (softmax
//! in the loss and at inference), as the seed's `FailurePredictionEngine`.
//! `burn::nn` has no multi-layer LSTM or inter-layer dropout, so three
//! LSTM layers are stacked with `Dropout` between them.
//!
//! Each layer is a [`GateLstm`]: the same cell as `burn::nn::Lstm` (gates
//! input, forget, cell, output; `c = f*c + i*g`, `h = o*tanh(c)`), with the
//! four gates' weights in one `Linear` for the input and one for the hidden
//! state. Its forward pass is one burn operation with a hand-written
//! backward pass (`lstm_op`): composed from burn's tensor operations step
//! by step, a batch-32 training step took 129 ms; as one operation, 37-41
//! ms on the same machine (`cargo bench --bench predictor -- train_step`).
//!
//! The dropout masks come from a seeded ChaCha8 stream of the training
//! subsystem, four 16-bit draws per 64-bit word: burn's `Dropout` draws a
//! 64-bit Bernoulli sample per element through its generic sampler, which
//! was a sixth of the training step. The stream is seeded from the device's
//! generator at `init`, so `device.seed(s)` before `init` fixes the masks as
//! it fixes the initial weights. The layers stay burn `Dropout`s (their
//! probability and training flag, and the record's layout).

use std::sync::{Arc, Mutex};

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::Device;
use burn::tensor::{Distribution, Tensor, TensorData};
use selfheal_core::rng::{Stream, Subsystem};

/// One LSTM layer with gate-concatenated weights: `input` is
/// `Linear(d_in -> 4h)` with the bias, `hidden` is `Linear(h -> 4h)`
/// without; the output blocks are the input, forget, cell and output gates.
#[derive(Module, Debug)]
pub struct GateLstm {
    input: Linear,
    hidden: Linear,
    d_hidden: usize,
}

impl GateLstm {
    pub fn new(d_input: usize, d_hidden: usize, device: &Device) -> Self {
        GateLstm {
            input: LinearConfig::new(d_input, 4 * d_hidden).init(device),
            hidden: LinearConfig::new(d_hidden, 4 * d_hidden)
                .with_bias(false)
                .init(device),
            d_hidden,
        }
    }

    /// `x`: `[batch, steps, d_in]`; returns every step's hidden state
    /// `[batch, steps, h]`, or only the last one `[batch, 1, h]`. One
    /// autodiff node for the whole sequence (`lstm_op`).
    pub fn forward(&self, x: Tensor<3>, all_steps: bool) -> Tensor<3> {
        let [batch, steps, _] = x.dims();
        let bias = self.input.bias.as_ref().map_or_else(
            || Tensor::zeros([4 * self.d_hidden], &x.device()),
            |b| b.val(),
        );
        let out = lstm_sequence(x, self.input.weight.val(), self.hidden.weight.val(), bias);
        if all_steps {
            out
        } else {
            out.slice([0..batch, steps - 1..steps, 0..self.d_hidden])
        }
    }

    fn to_fused(&self) -> LstmLayer {
        let [input, h4] = self.input.weight.shape().dims();
        LstmLayer {
            input,
            hidden: h4 / 4,
            w_x: values(self.input.weight.val()),
            w_h: values(self.hidden.weight.val()),
            b: self
                .input
                .bias
                .as_ref()
                .map_or(vec![0.0; h4], |b| values(b.val())),
        }
    }
}

use super::lstm_op::lstm_sequence;
use crate::control::predictor::lstm::{Dense, FusedNet, LstmLayer};
use crate::scenario::{FieldPath, Problem};

#[derive(Config, Debug, PartialEq)]
pub struct PredictorNetConfig {
    #[config(default = 8)]
    pub features: usize,
    #[config(default = 60)]
    pub window: usize,
    #[config(default = 128)]
    pub hidden1: usize,
    #[config(default = 64)]
    pub hidden2: usize,
    #[config(default = 32)]
    pub hidden3: usize,
    #[config(default = 16)]
    pub dense: usize,
    #[config(default = 4)]
    pub classes: usize,
    #[config(default = 0.2)]
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct PredictorNet {
    lstm1: GateLstm,
    drop1: Dropout,
    lstm2: GateLstm,
    drop2: Dropout,
    lstm3: GateLstm,
    dense: Linear,
    relu: Relu,
    out: Linear,
    /// Where the dropout masks are drawn from (not part of the record).
    #[module(skip)]
    masks: Arc<Mutex<Stream>>,
}

/// The longest input window (the control core's bound, which it checks
/// without burn) and the widest layer a configuration may ask for: far
/// beyond the shipped model, and small enough to build.
pub use selfheal_core::models::MAX_WINDOW;
pub const MAX_WIDTH: usize = 4096;

impl PredictorNetConfig {
    /// Whether a network can be built from these hyper-parameters (a
    /// config file can say anything; burn panics on a dropout outside
    /// [0, 1)). The error names the field.
    pub fn check(&self) -> Result<(), Problem> {
        let problem = |field: &str, message: String| Problem {
            path: FieldPath::default().key(field),
            message,
        };
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(problem(
                "dropout",
                format!("must be at least 0 and below 1, found {}", self.dropout),
            ));
        }
        let features = crate::train::traces::FEATURES.len();
        if !(1..=features).contains(&self.features) {
            return Err(problem(
                "features",
                format!("must be 1 to {features}, found {}", self.features),
            ));
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(problem(
                "window",
                format!("must be 1 to {MAX_WINDOW} scrapes, found {}", self.window),
            ));
        }
        for (name, width) in [
            ("hidden1", self.hidden1),
            ("hidden2", self.hidden2),
            ("hidden3", self.hidden3),
            ("dense", self.dense),
        ] {
            if !(1..=MAX_WIDTH).contains(&width) {
                return Err(problem(
                    name,
                    format!("must be 1 to {MAX_WIDTH}, found {width}"),
                ));
            }
        }
        if self.classes != 4 {
            return Err(problem(
                "classes",
                format!("the predictor has 4 health classes, found {}", self.classes),
            ));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> PredictorNet {
        PredictorNet {
            lstm1: GateLstm::new(self.features, self.hidden1, device),
            drop1: DropoutConfig::new(self.dropout).init(),
            lstm2: GateLstm::new(self.hidden1, self.hidden2, device),
            drop2: DropoutConfig::new(self.dropout).init(),
            lstm3: GateLstm::new(self.hidden2, self.hidden3, device),
            dense: LinearConfig::new(self.hidden3, self.dense).init(device),
            relu: Relu::new(),
            out: LinearConfig::new(self.dense, self.classes).init(device),
            masks: Arc::new(Mutex::new(Stream::new_indexed(
                seed_from(device),
                Subsystem::Training,
                3,
            ))),
        }
    }
}

/// 64 bits from the device's seeded generator (two uniform draws' mantissas
/// of 24 bits and a third's 16).
fn seed_from(device: &Device) -> u64 {
    let draws = values(Tensor::<1>::random(
        [3],
        Distribution::Uniform(0.0, 1.0),
        device,
    ));
    let bits = |x: f32| ((x * (1u32 << 24) as f32) as u64) & 0xFF_FFFF;
    bits(draws[0]) | bits(draws[1]) << 24 | (bits(draws[2]) & 0xFFFF) << 48
}

/// `1 / keep` for the elements a draw keeps, 0 for the others.
fn dropout_mask(stream: &mut Stream, n: usize, keep: f64) -> Vec<f32> {
    let below = (keep * 65_536.0).round() as u32;
    let scale = (1.0 / keep) as f32;
    let mut mask = Vec::with_capacity(n);
    while mask.len() < n {
        let word = stream.next_u64();
        let take = (n - mask.len()).min(4);
        mask.extend((0..take).map(|k| {
            let draw = (word >> (16 * k)) as u16 as u32;
            if draw < below { scale } else { 0.0 }
        }));
    }
    mask
}

impl PredictorNet {
    /// `x`: `[batch, window, features]`, normalised; returns logits
    /// `[batch, classes]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let x = self.lstm1.forward(x, true);
        let x = self.dropout(&self.drop1, x);
        let x = self.lstm2.forward(x, true);
        let x = self.dropout(&self.drop2, x);
        let x = self.lstm3.forward(x, false);
        let [batch, _, hidden] = x.dims();
        let last = x.reshape([batch, hidden]);
        let x = self.relu.forward(self.dense.forward(last));
        self.out.forward(x)
    }

    /// `layer`'s dropout with a mask from [`Self::masks`]; as burn's, only
    /// where a backward pass can follow and the layer is in training.
    fn dropout(&self, layer: &Dropout, x: Tensor<3>) -> Tensor<3> {
        if !layer.training.is_enabled() || !x.device().is_autodiff() || layer.prob == 0.0 {
            return x;
        }
        let shape = x.shape();
        let mask = {
            let mut stream = self.masks.lock().unwrap_or_else(|e| e.into_inner());
            dropout_mask(&mut stream, shape.num_elements(), 1.0 - layer.prob)
        };
        let mask = Tensor::<3>::from_data(TensorData::new(mask, shape), &x.device());
        x * mask
    }

    /// The trained weights as the control core's fused network.
    pub fn to_fused(&self) -> FusedNet {
        FusedNet {
            lstms: vec![
                self.lstm1.to_fused(),
                self.lstm2.to_fused(),
                self.lstm3.to_fused(),
            ],
            dense: vec![dense(&self.dense), dense(&self.out)],
        }
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}

fn dense(l: &Linear) -> Dense {
    let [input, output] = l.weight.shape().dims();
    Dense {
        input,
        output,
        w: values(l.weight.val()),
        b: l.bias
            .as_ref()
            .map_or(vec![0.0; output], |b| values(b.val())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropout_mask_keeps_its_share_scaled_and_follows_its_stream() {
        let mut stream = Stream::new(7, Subsystem::Training);
        let mask = dropout_mask(&mut stream, 100_001, 0.8);
        assert_eq!(mask.len(), 100_001);
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.25));
        let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / mask.len() as f64;
        // Binomial spread at n = 1e5: about 0.0013.
        assert!((kept - 0.8).abs() < 0.006, "{kept}");
        let again = dropout_mask(&mut Stream::new(7, Subsystem::Training), 100_001, 0.8);
        assert_eq!(mask, again);
        let next = dropout_mask(&mut stream, 100_001, 0.8);
        assert_ne!(mask, next);
    }

    #[test]
    fn dropout_acts_only_where_a_backward_pass_can_follow() {
        let cfg = PredictorNetConfig::new();
        let x = |device: &Device| Tensor::<3>::ones([2, cfg.window, cfg.hidden1], device);
        let plain = Device::flex();
        let net = cfg.init(&plain);
        let same = net.dropout(&net.drop1, x(&plain));
        assert_eq!(values(same), values(x(&plain)));
        let device = Device::flex().autodiff();
        let training = cfg.init(&device);
        let dropped = values(training.dropout(&training.drop1, x(&device)));
        let zeros = dropped.iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0 && zeros < dropped.len() / 2, "{zeros}");
    }
}
