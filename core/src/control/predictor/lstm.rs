//! The trained LSTM network as plain arrays, with a fused forward pass.
//!
//! Stock burn's `Lstm` took about 11 ms per window on the reference machine
//! and burn's forward pass of this network takes 1.8 ms here; a control
//! loop that predicts for every service at every tick of thousands of
//! simulated runs needs well under 1 ms. Here each layer first computes the
//! input projections of all steps (one `[steps x in] * [in x 4h]` product
//! into the four gates' pre-activations), then runs the recurrence with one
//! `[h] * [h x 4h]` product per step, four weight rows at a time (AVX2 when
//! the CPU has it), and the gate
//! nonlinearities use a polynomial `exp` so that the cell update vectorises
//! too: 0.52 ms per window (`cargo bench --bench predictor`). The arithmetic
//! is burn's (gate order input, forget, cell, output; `c = f*c + i*g`,
//! `h = o*tanh(c)`), equal within 1e-5 (`tests/predictor.rs`).

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

/// `exp(x)` without a library call, so that the cell update vectorises:
/// Cephes' `expf` (range reduction to `|r| <= ln 2 / 2` and a degree-6
/// polynomial, about 1e-7 relative error), with the rounding done by the
/// 1.5 * 2^23 trick, which needs no SSE4.1 instruction.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The logistic function through [`fast_exp`]; the training side's LSTM
/// operation uses it too, so the network trains on the activations it is
/// served with.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

/// `tanh` through [`fast_exp`] (shared with training, as [`sigmoid`]).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (fast_exp(2.0 * x) + 1.0)
}

/// One step of the cell for every unit: `c = f*c + i*g`, `h = o*tanh(c)`.
#[inline(always)]
fn cell_body(gates: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    let (gi, rest) = gates.split_at(n);
    let (gf, rest) = rest.split_at(n);
    let (gc, go) = rest.split_at(n);
    for j in 0..n {
        let cj = sigmoid(gf[j]) * c[j] + sigmoid(gi[j]) * tanh(gc[j]);
        c[j] = cj;
        h[j] = sigmoid(go[j]) * tanh(cj);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn cell_avx2(gates: &[f32], c: &mut [f32], h: &mut [f32]) {
    cell_body(gates, c, h)
}

#[inline]
fn cell(gates: &[f32], c: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { cell_avx2(gates, c, h) };
    }
    cell_body(gates, c, h)
}

/// `out += xs * w` for `w` of `xs.len()` rows of `out.len()` values:
/// four rows at a time so that `out` is loaded and stored a quarter as
/// often, in a fixed summation order (so every instruction set gives the
/// same bits).
#[inline(always)]
fn gemv_acc_body(out: &mut [f32], xs: &[f32], w: &[f32]) {
    let n = out.len();
    let mut k = 0;
    while k + 4 <= xs.len() {
        let (x0, x1, x2, x3) = (xs[k], xs[k + 1], xs[k + 2], xs[k + 3]);
        let r0 = &w[k * n..(k + 1) * n];
        let r1 = &w[(k + 1) * n..(k + 2) * n];
        let r2 = &w[(k + 2) * n..(k + 3) * n];
        let r3 = &w[(k + 3) * n..(k + 4) * n];
        for ((((o, a), b), c), d) in out.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *o += x0 * a + x1 * b + x2 * c + x3 * d;
        }
        k += 4;
    }
    while k < xs.len() {
        let (x, r) = (xs[k], &w[k * n..(k + 1) * n]);
        for (o, a) in out.iter_mut().zip(r) {
            *o += x * a;
        }
        k += 1;
    }
}

/// The same loop compiled for AVX2 (eight lanes instead of SSE2's four);
/// chosen at run time, since release builds target baseline x86-64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gemv_acc_avx2(out: &mut [f32], xs: &[f32], w: &[f32]) {
    gemv_acc_body(out, xs, w)
}

#[inline]
fn gemv_acc(out: &mut [f32], xs: &[f32], w: &[f32]) {
    debug_assert_eq!(w.len(), xs.len() * out.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { gemv_acc_avx2(out, xs, w) };
    }
    gemv_acc_body(out, xs, w)
}

impl LstmLayer {
    /// Runs the layer over `steps` rows of `input` values in `x`, writing
    /// `steps` rows of hidden states to `out` (`keep_all`) or only the last.
    fn forward(
        &self,
        x: &[f32],
        steps: usize,
        out: &mut Vec<f32>,
        keep_all: bool,
        s: &mut Scratch,
    ) {
        let (n, h4) = (self.hidden, 4 * self.hidden);
        // Input projections for every step: [steps][4h] = x [steps][input] * w_x + b.
        s.gates.clear();
        s.gates.resize(steps * h4, 0.0);
        for t in 0..steps {
            let g = &mut s.gates[t * h4..(t + 1) * h4];
            g.copy_from_slice(&self.b);
            gemv_acc(g, &x[t * self.input..(t + 1) * self.input], &self.w_x);
        }
        s.c.clear();
        s.c.resize(n, 0.0);
        s.h.clear();
        s.h.resize(n, 0.0);
        out.clear();
        for t in 0..steps {
            let g = &mut s.gates[t * h4..(t + 1) * h4];
            if t > 0 {
                gemv_acc(g, &s.h, &self.w_h);
            }
            cell(g, &mut s.c, &mut s.h);
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
        gemv_acc(out, x, &self.w);
    }
}

impl FusedNet {
    /// The first layer with a NaN or infinite weight or bias (`lstm 2`,
    /// `dense 1`), if any: such a network answers NaN for every window.
    pub fn first_non_finite(&self) -> Option<String> {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        self.lstms
            .iter()
            .position(|l| !(finite(&l.w_x) && finite(&l.w_h) && finite(&l.b)))
            .map(|i| format!("lstm {}", i + 1))
            .or_else(|| {
                self.dense
                    .iter()
                    .position(|d| !(finite(&d.w) && finite(&d.b)))
                    .map(|i| format!("dense {}", i + 1))
            })
    }

    /// What makes the arrays unfit to run, if anything: a missing layer,
    /// an array whose length does not match its layer's widths, or a layer
    /// that does not take the width the one before it gives.
    pub fn shape_problem(&self) -> Option<String> {
        if self.lstms.is_empty() || self.dense.is_empty() {
            return Some("no LSTM or no dense layer".into());
        }
        let mut width = self.lstms[0].input;
        for (i, l) in self.lstms.iter().enumerate() {
            let g = 4 * l.hidden;
            if l.input != width
                || l.w_x.len() != l.input * g
                || l.w_h.len() != l.hidden * g
                || l.b.len() != g
            {
                return Some(format!(
                    "lstm {}: arrays do not fit {} inputs and {} hidden units",
                    i + 1,
                    width,
                    l.hidden
                ));
            }
            width = l.hidden;
        }
        for (i, d) in self.dense.iter().enumerate() {
            if d.input != width || d.w.len() != d.input * d.output || d.b.len() != d.output {
                return Some(format!(
                    "dense {}: arrays do not fit {} inputs and {} outputs",
                    i + 1,
                    width,
                    d.output
                ));
            }
            width = d.output;
        }
        None
    }

    pub fn input_features(&self) -> usize {
        self.lstms.first().map_or(0, |l| l.input)
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
    fn a_nan_or_infinite_weight_is_found_by_layer() {
        let mut net = FusedNet {
            lstms: vec![LstmLayer {
                input: 1,
                hidden: 1,
                w_x: vec![0.5; 4],
                w_h: vec![0.5; 4],
                b: vec![0.0; 4],
            }],
            dense: vec![Dense {
                input: 1,
                output: 4,
                w: vec![1.0; 4],
                b: vec![0.0; 4],
            }],
        };
        assert_eq!(net.first_non_finite(), None);
        net.dense[0].b[2] = f32::INFINITY;
        assert_eq!(net.first_non_finite().as_deref(), Some("dense 1"));
        net.lstms[0].w_h[1] = f32::NAN;
        assert_eq!(net.first_non_finite().as_deref(), Some("lstm 1"));
    }

    #[test]
    fn fast_exp_sigmoid_and_tanh_are_accurate() {
        let mut worst = (0f32, 0f32, 0f32);
        for i in -20_000..=20_000 {
            let x = i as f32 / 1000.0;
            let e = (fast_exp(x) - x.exp()).abs() / x.exp();
            let s = (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs();
            let t = (tanh(x) - x.tanh()).abs();
            worst = (worst.0.max(e), worst.1.max(s), worst.2.max(t));
        }
        assert!(
            worst.0 < 5e-7 && worst.1 < 2e-7 && worst.2 < 5e-7,
            "{worst:?}"
        );
        assert!(fast_exp(-200.0).is_finite());
        assert!((tanh(50.0) - 1.0).abs() < 1e-7 && (tanh(-50.0) + 1.0).abs() < 1e-7);
    }

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
            let g = 1.0 / (1.0 + (-a).exp());
            c = g * c + g * a.tanh();
            h = g * c.tanh();
            assert!((out[t] - h).abs() < 1e-6);
        }
    }
}
