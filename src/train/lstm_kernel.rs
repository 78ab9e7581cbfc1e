//! One LSTM layer over a whole sequence, forward and backward by hand, on
//! plain `f32` slices (row-major). The burn operation in `lstm_op.rs` wraps
//! it so that training records one autodiff node per layer instead of about
//! twenty per time step; the arithmetic is the cell of [`GateLstm`]
//! (gates input, forget, cell, output; `c = f*c + i*g`, `h = o*tanh(c)`).
//!
//! Layout: time-major inside (`row = t * batch + b`), so that each step's
//! rows are contiguous and the input projections of every step, and the
//! weight gradients of every step, are one matrix product each.
//!
//! [`GateLstm`]: super::model::GateLstm

use crate::control::predictor::lstm::{sigmoid, tanh};

/// The sizes of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub steps: usize,
    pub input: usize,
    pub hidden: usize,
}

impl Dims {
    fn rows(&self) -> usize {
        self.batch * self.steps
    }
}

/// What the backward pass needs from the forward pass.
#[derive(Clone, Debug)]
pub struct Cache {
    /// The input, time-major: `[steps * batch, input]`.
    x: Vec<f32>,
    /// Gate activations after their non-linearity: `[steps * batch, 4h]`.
    gates: Vec<f32>,
    /// Cell states and their `tanh`: `[steps * batch, h]` each.
    c: Vec<f32>,
    tanh_c: Vec<f32>,
    /// Hidden states: `[steps * batch, h]`.
    h: Vec<f32>,
}

/// Gradients of the layer's inputs; `x` only when it was asked for.
#[derive(Clone, Debug)]
pub struct Grads {
    pub x: Option<Vec<f32>>,
    pub w_x: Vec<f32>,
    pub w_h: Vec<f32>,
    pub bias: Vec<f32>,
}

/// `[outer, inner, width]` rows reordered to `[inner, outer, width]`:
/// batch-major to time-major and back.
fn swap_major(src: &[f32], outer: usize, inner: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; src.len()];
    for o in 0..outer {
        for i in 0..inner {
            let from = (o * inner + i) * width;
            let to = (i * outer + o) * width;
            out[to..to + width].copy_from_slice(&src[from..from + width]);
        }
    }
    out
}

/// Row `r`'s previous cell state (`batch` rows back in time-major order),
/// or `zeros` at the first step; `c` needs to hold only the rows before `r`.
fn previous<'a>(c: &'a [f32], r: usize, batch: usize, zeros: &'a [f32]) -> &'a [f32] {
    let hidden = zeros.len();
    if r >= batch {
        &c[(r - batch) * hidden..(r - batch + 1) * hidden]
    } else {
        zeros
    }
}

/// A row-major matrix stored in a slice, read as is or transposed.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "slice length matches its shape");
        Mat {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    fn t(self) -> Self {
        Mat {
            transposed: !self.transposed,
            ..self
        }
    }

    /// `(rows, cols, row stride, column stride)` as read.
    fn layout(&self) -> (usize, usize, isize, isize) {
        let (r, c) = (self.rows, self.cols);
        if self.transposed {
            (c, r, 1, c as isize)
        } else {
            (r, c, c as isize, 1)
        }
    }
}

/// `out = a . b`, or `out += a . b` with `accumulate`; `out` is row-major
/// `[a's rows, b's columns]`. The `gemm` crate (burn's CPU backend's own)
/// picks the widest vector unit the machine has at run time.
fn matmul(out: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    let (m, k, a_rs, a_cs) = a.layout();
    let (k2, n, b_rs, b_cs) = b.layout();
    assert_eq!(k, k2, "inner dimensions agree");
    assert_eq!(out.len(), m * n, "output is [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: each operand's `Mat::new` checked that its slice holds
    // rows x cols values, `layout` gives strides that stay inside it for
    // indices below (rows, cols), and `out` holds m x n values written
    // with row stride n; the three slices are distinct borrows, so the
    // output does not alias an input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One row of one step going forward: the gates before activation
/// (input, forget, cell, output blocks of `c.len()` each, activated in
/// place), the previous cell state, and where the new cell state, its
/// `tanh` and the hidden state go.
struct Row<'a> {
    gates: &'a mut [f32],
    c_prev: &'a [f32],
    c: &'a mut [f32],
    tanh_c: &'a mut [f32],
    h: &'a mut [f32],
}

/// The cell for one row. The activations are the control core's
/// (`fast_exp` based, no library call), so the loop vectorises and the
/// network trains on what it is served with.
#[inline(always)]
fn cell_body(row: Row<'_>) {
    let n = row.c.len();
    let (gi, rest) = row.gates.split_at_mut(n);
    let (gf, rest) = rest.split_at_mut(n);
    let (gc, go) = rest.split_at_mut(n);
    // Equal lengths up front, so the loop runs without bounds checks and
    // vectorises.
    let (go, c_prev) = (&mut go[..n], &row.c_prev[..n]);
    let (c_out, tc_out, h_out) = (row.c, &mut row.tanh_c[..n], &mut row.h[..n]);
    for j in 0..n {
        let i = sigmoid(gi[j]);
        let f = sigmoid(gf[j]);
        let cell = tanh(gc[j]);
        let o = sigmoid(go[j]);
        gi[j] = i;
        gf[j] = f;
        gc[j] = cell;
        go[j] = o;
        let c = f * c_prev[j] + i * cell;
        let tc = tanh(c);
        c_out[j] = c;
        tc_out[j] = tc;
        h_out[j] = o * tc;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cell_avx2(row: Row<'_>) {
    cell_body(row)
}

fn cell(row: Row<'_>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { cell_avx2(row) };
    }
    cell_body(row)
}

/// One row of one step going backward: the activated gates, the previous
/// cell state, this step's `tanh(c)`, the output's gradient `dy`, the
/// gradients flowing back from the next step (`dh_next`, `dc_next`, which
/// becomes this step's), and where the gates' gradients before their
/// non-linearities go.
struct BackRow<'a> {
    gates: &'a [f32],
    c_prev: &'a [f32],
    tanh_c: &'a [f32],
    dy: &'a [f32],
    dh_next: &'a [f32],
    dc_next: &'a mut [f32],
    out: &'a mut [f32],
}

#[inline(always)]
fn cell_backward_body(row: BackRow<'_>) {
    let n = row.dc_next.len();
    let (ai, rest) = row.gates.split_at(n);
    let (af, rest) = rest.split_at(n);
    let (ac, ao) = rest.split_at(n);
    let (oi, rest) = row.out.split_at_mut(n);
    let (of, rest) = rest.split_at_mut(n);
    let (oc, oo) = rest.split_at_mut(n);
    let (ao, oo) = (&ao[..n], &mut oo[..n]);
    let (c_prev, tc) = (&row.c_prev[..n], &row.tanh_c[..n]);
    let (dy, dh_next, dc_next) = (&row.dy[..n], &row.dh_next[..n], row.dc_next);
    for j in 0..n {
        let (i, f, cell, o) = (ai[j], af[j], ac[j], ao[j]);
        let dh = dy[j] + dh_next[j];
        let dc = dc_next[j] + dh * o * (1.0 - tc[j] * tc[j]);
        oi[j] = dc * cell * i * (1.0 - i);
        of[j] = dc * c_prev[j] * f * (1.0 - f);
        oc[j] = dc * i * (1.0 - cell * cell);
        oo[j] = dh * tc[j] * o * (1.0 - o);
        dc_next[j] = dc * f;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cell_backward_avx2(row: BackRow<'_>) {
    cell_backward_body(row)
}

fn cell_backward(row: BackRow<'_>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { cell_backward_avx2(row) };
    }
    cell_backward_body(row)
}

/// `x`: `[batch, steps, input]`; `w_x`: `[input, 4h]`; `w_h`: `[h, 4h]`;
/// `bias`: `[4h]`. Returns every step's hidden state `[batch, steps, h]`
/// and the cache for [`backward`].
pub fn forward(d: Dims, x: &[f32], w_x: &[f32], w_h: &[f32], bias: &[f32]) -> (Vec<f32>, Cache) {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = d;
    let h4 = 4 * hidden;
    assert_eq!(x.len(), batch * steps * input, "x is [batch, steps, input]");
    assert_eq!(w_x.len(), input * h4, "w_x is [input, 4h]");
    assert_eq!(w_h.len(), hidden * h4, "w_h is [h, 4h]");
    assert_eq!(bias.len(), h4, "bias is [4h]");
    let rows = d.rows();

    let xt = swap_major(x, batch, steps, input);
    // Every step's input projection at once, on top of the bias.
    let mut gates: Vec<f32> = bias.iter().copied().cycle().take(rows * h4).collect();
    matmul(
        &mut gates,
        Mat::new(&xt, rows, input),
        Mat::new(w_x, input, h4),
        true,
    );

    let mut c = vec![0.0; rows * hidden];
    let mut tanh_c = vec![0.0; rows * hidden];
    let mut h = vec![0.0; rows * hidden];
    let zeros = vec![0.0; hidden];
    for t in 0..steps {
        let (r0, r1) = (t * batch, (t + 1) * batch);
        if t > 0 {
            matmul(
                &mut gates[r0 * h4..r1 * h4],
                Mat::new(&h[(r0 - batch) * hidden..r0 * hidden], batch, hidden),
                Mat::new(w_h, hidden, h4),
                true,
            );
        }
        for r in r0..r1 {
            let (done, now) = c.split_at_mut(r * hidden);
            cell(Row {
                gates: &mut gates[r * h4..(r + 1) * h4],
                c_prev: previous(done, r, batch, &zeros),
                c: &mut now[..hidden],
                tanh_c: &mut tanh_c[r * hidden..(r + 1) * hidden],
                h: &mut h[r * hidden..(r + 1) * hidden],
            });
        }
    }

    let out = swap_major(&h, steps, batch, hidden);
    (
        out,
        Cache {
            x: xt,
            gates,
            c,
            tanh_c,
            h,
        },
    )
}

/// Back-propagation through time. `dy`: the loss gradient of every step's
/// hidden state, `[batch, steps, h]` (zero where a step's output is unused).
pub fn backward(
    d: Dims,
    cache: &Cache,
    w_x: &[f32],
    w_h: &[f32],
    dy: &[f32],
    want_x: bool,
) -> Grads {
    let Dims {
        batch,
        steps,
        input,
        hidden,
    } = d;
    let h4 = 4 * hidden;
    let rows = d.rows();
    assert_eq!(dy.len(), rows * hidden, "dy is [batch, steps, h]");
    let Cache {
        x,
        gates,
        c,
        tanh_c,
        h,
    } = cache;

    // Gradients of the gates before their non-linearities, every step.
    let mut dg = vec![0.0; rows * h4];
    let mut dh_next = vec![0.0; batch * hidden];
    let mut dc_next = vec![0.0; batch * hidden];
    let zeros = vec![0.0; hidden];
    for t in (0..steps).rev() {
        for b in 0..batch {
            let r = t * batch + b;
            cell_backward(BackRow {
                gates: &gates[r * h4..(r + 1) * h4],
                c_prev: previous(c, r, batch, &zeros),
                tanh_c: &tanh_c[r * hidden..(r + 1) * hidden],
                dy: &dy[(b * steps + t) * hidden..(b * steps + t + 1) * hidden],
                dh_next: &dh_next[b * hidden..(b + 1) * hidden],
                dc_next: &mut dc_next[b * hidden..(b + 1) * hidden],
                out: &mut dg[r * h4..(r + 1) * h4],
            });
        }
        if t > 0 {
            // dh_{t-1} = dG_t . w_h^T
            matmul(
                &mut dh_next,
                Mat::new(&dg[t * batch * h4..(t + 1) * batch * h4], batch, h4),
                Mat::new(w_h, hidden, h4).t(),
                false,
            );
        }
    }

    let mut g_wh = vec![0.0; hidden * h4];
    if steps > 1 {
        // Step t's recurrent input is h_{t-1}: rows shifted by one batch.
        let paired = (steps - 1) * batch;
        matmul(
            &mut g_wh,
            Mat::new(&h[..paired * hidden], paired, hidden).t(),
            Mat::new(&dg[batch * h4..], paired, h4),
            false,
        );
    }
    let mut g_wx = vec![0.0; input * h4];
    matmul(
        &mut g_wx,
        Mat::new(x, rows, input).t(),
        Mat::new(&dg, rows, h4),
        false,
    );
    let mut g_b = vec![0.0; h4];
    for row in dg.chunks_exact(h4) {
        for (s, v) in g_b.iter_mut().zip(row) {
            *s += v;
        }
    }
    let g_x = want_x.then(|| {
        let mut xt = vec![0.0; rows * input];
        matmul(
            &mut xt,
            Mat::new(&dg, rows, h4),
            Mat::new(w_x, input, h4).t(),
            false,
        );
        swap_major(&xt, steps, batch, input)
    });
    Grads {
        x: g_x,
        w_x: g_wx,
        w_h: g_wh,
        bias: g_b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, Subsystem};

    fn random(n: usize, rng: &mut Stream, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (rng.normal() * scale) as f32).collect()
    }

    /// A scalar loss of the outputs: sum of `weights * y`, so `dy = weights`.
    fn loss(d: Dims, x: &[f32], wx: &[f32], wh: &[f32], b: &[f32], weights: &[f32]) -> f64 {
        let (y, _) = forward(d, x, wx, wh, b);
        y.iter().zip(weights).map(|(a, w)| f64::from(a * w)).sum()
    }

    #[test]
    fn gradients_match_central_differences() {
        let d = Dims {
            batch: 3,
            steps: 5,
            input: 4,
            hidden: 6,
        };
        let mut rng = Stream::new(11, Subsystem::Training);
        let x = random(d.batch * d.steps * d.input, &mut rng, 1.0);
        let wx = random(d.input * 4 * d.hidden, &mut rng, 0.5);
        let wh = random(d.hidden * 4 * d.hidden, &mut rng, 0.5);
        let b = random(4 * d.hidden, &mut rng, 0.5);
        let weights = random(d.batch * d.steps * d.hidden, &mut rng, 1.0);
        let (_, cache) = forward(d, &x, &wx, &wh, &b);
        let g = backward(d, &cache, &wx, &wh, &weights, true);

        let eps = 1e-2_f32;
        let check = |name: &str, analytic: &[f32], perturb: &dyn Fn(usize, f32) -> f64| {
            for (k, &a) in analytic.iter().enumerate() {
                let numeric = (perturb(k, eps) - perturb(k, -eps)) / (2.0 * f64::from(eps));
                assert!(
                    (numeric - f64::from(a)).abs() <= 2e-3 * (1.0 + numeric.abs()),
                    "{name}[{k}]: backward {a}, central difference {numeric}"
                );
            }
        };
        let with = |v: &[f32], k: usize, e: f32| {
            let mut v = v.to_vec();
            v[k] += e;
            v
        };
        check("x", g.x.as_deref().unwrap(), &|k, e| {
            loss(d, &with(&x, k, e), &wx, &wh, &b, &weights)
        });
        check("w_x", &g.w_x, &|k, e| {
            loss(d, &x, &with(&wx, k, e), &wh, &b, &weights)
        });
        check("w_h", &g.w_h, &|k, e| {
            loss(d, &x, &wx, &with(&wh, k, e), &b, &weights)
        });
        check("bias", &g.bias, &|k, e| {
            loss(d, &x, &wx, &wh, &with(&b, k, e), &weights)
        });
    }
}
