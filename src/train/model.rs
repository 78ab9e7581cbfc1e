//! The failure predictor's network as a burn `Module` + `Config` pair:
//! LSTM(F -> 128, sequences) -> dropout -> LSTM(128 -> 64, sequences) ->
//! dropout -> LSTM(64 -> 32, last step) -> dense 16 ReLU -> dense 4 (softmax
//! in the loss and at inference), as the seed's `FailurePredictionEngine`.
//! `burn::nn` has no multi-layer LSTM or inter-layer dropout, so three
//! `Lstm`s are stacked with `Dropout` between them.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Lstm, LstmConfig, Relu};
use burn::prelude::{Device, s};
use burn::tensor::Tensor;

use crate::control::predictor::lstm::{Dense, FusedNet, LstmLayer};

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
    lstm1: Lstm,
    drop1: Dropout,
    lstm2: Lstm,
    drop2: Dropout,
    lstm3: Lstm,
    dense: Linear,
    relu: Relu,
    out: Linear,
}

impl PredictorNetConfig {
    pub fn init(&self, device: &Device) -> PredictorNet {
        PredictorNet {
            lstm1: LstmConfig::new(self.features, self.hidden1, true).init(device),
            drop1: DropoutConfig::new(self.dropout).init(),
            lstm2: LstmConfig::new(self.hidden1, self.hidden2, true).init(device),
            drop2: DropoutConfig::new(self.dropout).init(),
            lstm3: LstmConfig::new(self.hidden2, self.hidden3, true).init(device),
            dense: LinearConfig::new(self.hidden3, self.dense).init(device),
            relu: Relu::new(),
            out: LinearConfig::new(self.dense, self.classes).init(device),
        }
    }
}

impl PredictorNet {
    /// `x`: `[batch, window, features]`, normalised; returns logits
    /// `[batch, classes]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let (x, _) = self.lstm1.forward(x, None);
        let x = self.drop1.forward(x);
        let (x, _) = self.lstm2.forward(x, None);
        let x = self.drop2.forward(x);
        let (x, _) = self.lstm3.forward(x, None);
        let [batch, steps, hidden] = x.dims();
        let last = x.slice(s![.., steps - 1, ..]).reshape([batch, hidden]);
        let x = self.relu.forward(self.dense.forward(last));
        self.out.forward(x)
    }

    /// The trained weights as the control core's fused network.
    pub fn to_fused(&self) -> FusedNet {
        FusedNet {
            lstms: vec![
                fuse_lstm(&self.lstm1),
                fuse_lstm(&self.lstm2),
                fuse_lstm(&self.lstm3),
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

fn fuse_lstm(l: &Lstm) -> LstmLayer {
    let forget = l
        .forget_gate
        .as_ref()
        .expect("the predictor's LSTMs have a forget gate");
    let gates = [&l.input_gate, forget, &l.cell_gate, &l.output_gate];
    let [input, hidden] = l.input_gate.input_transform.weight.shape().dims();
    let h4 = 4 * hidden;
    let mut w_x = vec![0.0; input * h4];
    let mut w_h = vec![0.0; hidden * h4];
    let mut b = vec![0.0; h4];
    for (g, gate) in gates.iter().enumerate() {
        let wi = values(gate.input_transform.weight.val());
        let wh = values(gate.hidden_transform.weight.val());
        for k in 0..input {
            w_x[k * h4 + g * hidden..k * h4 + (g + 1) * hidden]
                .copy_from_slice(&wi[k * hidden..(k + 1) * hidden]);
        }
        for k in 0..hidden {
            w_h[k * h4 + g * hidden..k * h4 + (g + 1) * hidden]
                .copy_from_slice(&wh[k * hidden..(k + 1) * hidden]);
        }
        for linear in [&gate.input_transform, &gate.hidden_transform] {
            if let Some(bias) = &linear.bias {
                for (j, v) in values(bias.val()).into_iter().enumerate() {
                    b[g * hidden + j] += v;
                }
            }
        }
    }
    LstmLayer {
        input,
        hidden,
        w_x,
        w_h,
        b,
    }
}
