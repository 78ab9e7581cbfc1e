//! The trained LSTM network as plain arrays, with a fused forward pass.
//!
//! burn's `Lstm` steps four gate products per time step through the tensor
//! API, which costs about 11 ms per window; a control loop that predicts for
//! every service at every tick of thousands of simulated runs needs well
//! under 1 ms. Here each layer computes its input projection for all time
//! steps as one matrix product, then runs the recurrence with one
//! matrix-vector product per step over the concatenated gate weights. The
//! arithmetic is the same as burn's (gate order input, forget, cell, output;
//! `c = f*c + i*g`, `h = o*tanh(c)`), checked equal within 1e-5 by
//! `tests/predictor.rs`.

use serde::{Deserialize, Serialize};

/// One LSTM layer. `w_x` is `[input][4 * hidden]`, `w_h` is
/// `[hidden][4 * hidden]`, `b` is `[4 * hidden]` (input and hidden biases
/// summed); the gate blocks are input, forget, cell, output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmLayer {
    pub input: usize,
    pub hidden: usize,
    pub w_x: Vec<f32>,
    pub w_h: Vec<f32>,
    pub b: Vec<f32>,
}

/// A dense layer, `w` is `[input][output]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub input: usize,
    pub output: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// Stacked LSTMs (the last one read at its final step), then dense layers
/// with ReLU between them, then softmax.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedNet {
    pub lstms: Vec<LstmLayer>,
    pub dense: Vec<Dense>,
}

/// Buffers reused across calls so that inference allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    seq_a: Vec<f32>,
    seq_b: Vec<f32>,
    gates: Vec<f32>,
    c: Vec<f32>,
    h: Vec<f32>,
    act_a: Vec<f32>,
    act_b: Vec<f32>,
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `out[j] += x * row[j]`, written so that it vectorises.
#[inline]
fn axpy(out: &mut [f32], x: f32, row: &[f32]) {
    for (o, r) in out.iter_mut().zip(row) {
        *o += x * r;
    }
}

impl LstmLayer {
    /// Runs the layer over `steps` rows of `input` values in `x`, writing
    /// `steps` rows of hidden states to `out` (`keep_all`) or only the last.
    fn forward(&self, x: &[f32], steps: usize, out: &mut Vec<f32>, keep_all: bool, s: &mut Scratch) {
        let (n, h4) = (self.hidden, 4 * self.hidden);
        // Input projections for every step: [steps][4h] = x [steps][input] * w_x + b.
        s.gates.clear();
        s.gates.resize(steps * h4, 0.0);
        for t in 0..steps {
            let g = &mut s.gates[t * h4..(t + 1) * h4];
            g.copy_from_slice(&self.b);
            for (k, &xv) in x[t * self.input..(t + 1) * self.input].iter().enumerate() {
                axpy(g, xv, &self.w_x[k * h4..(k + 1) * h4]);
            }
        }
        s.c.clear();
        s.c.resize(n, 0.0);
        s.h.clear();
        s.h.resize(n, 0.0);
        out.clear();
        for t in 0..steps {
            let g = &mut s.gates[t * h4..(t + 1) * h4];
            if t > 0 {
                for (k, &hv) in s.h.iter().enumerate() {
                    axpy(g, hv, &self.w_h[k * h4..(k + 1) * h4]);
                }
            }
            let (gi, rest) = g.split_at(n);
            let (gf, rest) = rest.split_at(n);
            let (gc, go) = rest.split_at(n);
            for j in 0..n {
                let c = sigmoid(gf[j]) * s.c[j] + sigmoid(gi[j]) * gc[j].tanh();
                s.c[j] = c;
                s.h[j] = sigmoid(go[j]) * c.tanh();
            }
            if keep_all || t + 1 == steps {
                out.extend_from_slice(&s.h);
            }
        }
    }
}

impl Dense {
    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(&self.b);
        for (k, &xv) in x.iter().enumerate() {
            axpy(out, xv, &self.w[k * self.output..(k + 1) * self.output]);
        }
    }
}

impl FusedNet {
    pub fn input_features(&self) -> usize {
        self.lstms.first().map_or(0, |l| l.input)
    }

    pub fn classes(&self) -> usize {
        self.dense.last().map_or(0, |d| d.output)
    }

    /// Logits for one normalised window, row-major `[steps][features]`.
    pub fn logits(&self, window: &[f32], s: &mut Scratch) -> Vec<f32> {
        let steps = window.len() / self.input_features().max(1);
        let mut cur = std::mem::take(&mut s.seq_a);
        let mut next = std::mem::take(&mut s.seq_b);
        cur.clear();
        cur.extend_from_slice(window);
        for (i, layer) in self.lstms.iter().enumerate() {
            let last = i + 1 == self.lstms.len();
            layer.forward(&cur, steps, &mut next, !last, s);
            std::mem::swap(&mut cur, &mut next);
        }
        let mut a = std::mem::take(&mut s.act_a);
        let mut b = std::mem::take(&mut s.act_b);
        a.clear();
        a.extend_from_slice(&cur);
        for (i, d) in self.dense.iter().enumerate() {
            d.forward(&a, &mut b);
            if i + 1 < self.dense.len() {
                for v in &mut b {
                    *v = v.max(0.0);
                }
            }
            std::mem::swap(&mut a, &mut b);
        }
        let logits = a.clone();
        s.seq_a = cur;
        s.seq_b = next;
        s.act_a = a;
        s.act_b = b;
        logits
    }

    /// Class probabilities for one normalised window.
    pub fn predict(&self, window: &[f32], s: &mut Scratch) -> Vec<f32> {
        softmax(&self.logits(window, s))
    }
}

pub fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unit_lstm_matches_hand_computation() {
        // All weights 0.25, no bias: the same cell burn's own unit test uses.
        let layer = LstmLayer {
            input: 1,
            hidden: 1,
            w_x: vec![0.25; 4],
            w_h: vec![0.25; 4],
            b: vec![0.0; 4],
        };
        let mut out = Vec::new();
        layer.forward(&[0.6, -0.3], 2, &mut out, true, &mut Scratch::default());
        let (mut c, mut h) = (0.0f32, 0.0f32);
        for (t, x) in [0.6f32, -0.3].into_iter().enumerate() {
            let a = 0.25 * (x + h);
            let g = sigmoid(a);
            c = g * c + g * a.tanh();
            h = g * c.tanh();
            assert!((out[t] - h).abs() < 1e-7);
        }
    }
}
