//! The LSTM layer's hand-written backward pass against burn's autodiff of
//! the same layer composed from tensor operations: outputs and all four
//! gradients agree within 1e-4 (relative to the largest entry), on the sizes of the predictor's layers.

use burn::prelude::Device;
use burn::tensor::{Tensor, TensorData};
use selfheal::rng::{Stream, Subsystem};
use selfheal::train::lstm_op::{lstm_composed, lstm_sequence};

fn random(shape: &[usize], rng: &mut Stream, scale: f64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs one layer both ways on the same data and compares: the output,
/// and the gradients of `sum(weights * output)` (every step weighted, so
/// every step's gradient path is exercised).
fn compare(batch: usize, steps: usize, input: usize, hidden: usize, seed: u64) {
    let device = Device::flex().autodiff();
    let mut rng = Stream::new(seed, Subsystem::Training);
    let x = random(&[batch, steps, input], &mut rng, 1.0);
    let w_x = random(&[input, 4 * hidden], &mut rng, 0.3);
    let w_h = random(&[hidden, 4 * hidden], &mut rng, 0.3);
    let bias = random(&[4 * hidden], &mut rng, 0.3);
    let weights = random(&[batch, steps, hidden], &mut rng, 1.0);

    type Layer = fn(Tensor<3>, Tensor<2>, Tensor<2>, Tensor<1>) -> Tensor<3>;
    let run = |layer: Layer| {
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [batch, steps, input]), &device)
            .require_grad();
        let wxt =
            Tensor::<2>::from_data(TensorData::new(w_x.clone(), [input, 4 * hidden]), &device)
                .require_grad();
        let wht =
            Tensor::<2>::from_data(TensorData::new(w_h.clone(), [hidden, 4 * hidden]), &device)
                .require_grad();
        let bt = Tensor::<1>::from_data(TensorData::new(bias.clone(), [4 * hidden]), &device)
            .require_grad();
        let wt = Tensor::<3>::from_data(
            TensorData::new(weights.clone(), [batch, steps, hidden]),
            &device,
        );
        let out = layer(xt.clone(), wxt.clone(), wht.clone(), bt.clone());
        let loss = (out.clone() * wt).sum();
        let grads = loss.backward();
        [
            values(out.inner()),
            values(xt.grad(&grads).unwrap()),
            values(wxt.grad(&grads).unwrap()),
            values(wht.grad(&grads).unwrap()),
            values(bt.grad(&grads).unwrap()),
        ]
    };
    let ours = run(lstm_sequence);
    let reference = run(lstm_composed);
    for (name, (a, b)) in ["output", "d x", "d w_x", "d w_h", "d bias"]
        .iter()
        .zip(ours.iter().zip(&reference))
    {
        // Weight gradients sum 1,920 products per entry at batch 32 over
        // 60 steps, so the two summation orders differ by float rounding
        // in proportion to the gradient's size: 1e-4 relative to the
        // largest entry (at least 1).
        let diff = max_abs_diff(a, b);
        let scale = b.iter().fold(1.0_f32, |m, v| m.max(v.abs()));
        println!(
            "{name} ({batch}x{steps}x{input} -> {hidden}): largest difference {diff:.2e}, largest entry {scale:.2}"
        );
        assert!(
            diff <= 1e-4 * scale,
            "{name} ({batch}x{steps}x{input} -> {hidden}): largest difference {diff}, largest entry {scale}"
        );
    }
}

#[test]
fn backward_pass_matches_burn_autodiff_on_a_small_layer() {
    compare(3, 7, 5, 6, 1);
}

#[test]
fn backward_pass_matches_burn_autodiff_on_the_predictors_layers() {
    // The shipped network's three layers at batch 32 over a 60-step
    // window: 8 -> 128, 128 -> 64, 64 -> 32.
    compare(32, 60, 8, 128, 2);
    compare(32, 60, 128, 64, 3);
    compare(32, 60, 64, 32, 4);
}
