//! Failure-predictor speed.
//!
//! - `train_step_batch32`: forward, backward and Adam step of the
//!   seed-shaped network (60 x 8 windows) on burn's flex backend, one thread.
//!   Compare with PyTorch on the same machine:
//!   `python3 benches/train_step_pytorch.py` (the same network, batch and
//!   optimiser, one thread).
//! - `lstm_layer_forward_backward/{operation,composed}`: the first layer
//!   (8 -> 128, batch 32, 60 steps), forward and backward, as the one
//!   operation training uses (`train::lstm_op`) and as burn's autodiff of
//!   the same layer composed step by step, in the same run.
//! - `infer_window_burn`: one window through the burn network.
//! - `infer_window_fused`: one window through the control core's fused
//!   forward pass over the same weights (the control loop needs under 1 ms).
//!
//! Run with `cargo bench --bench predictor`.

use std::hint::black_box;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::Device;
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use selfheal::control::predictor::lstm::Scratch;
use selfheal::rng::{Stream, Subsystem};
use selfheal::train::lstm_op::{lstm_composed, lstm_sequence};
use selfheal::train::model::PredictorNetConfig;

fn data(n: usize) -> Vec<f32> {
    let mut rng = Stream::new(3, Subsystem::Training);
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn bench(c: &mut Criterion) {
    let cfg = PredictorNetConfig::new();
    let (w, f) = (cfg.window, cfg.features);

    let device = Device::flex().autodiff();
    device.seed(1);
    let mut net = cfg.init(&device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let x = data(32 * w * f);
    let y: Vec<i64> = (0..32).map(|i| i % 4).collect();
    c.bench_function("train_step_batch32", |b| {
        b.iter(|| {
            let xs = Tensor::<3>::from_data(TensorData::new(x.clone(), [32, w, f]), &device);
            let ys = Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [32]), &device);
            let loss = loss_fn.forward(net.forward(xs), ys);
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-3, net.clone(), grads);
        })
    });

    type Layer = fn(Tensor<3>, Tensor<2>, Tensor<2>, Tensor<1>) -> Tensor<3>;
    let (hidden, h4) = (cfg.hidden1, 4 * cfg.hidden1);
    let w_x = data(f * h4);
    let w_h = data(hidden * h4);
    let bias = data(h4);
    let mut layer_group = c.benchmark_group("lstm_layer_forward_backward");
    for (name, layer) in [
        ("operation", lstm_sequence as Layer),
        ("composed", lstm_composed as Layer),
    ] {
        layer_group.bench_function(name, |b| {
            b.iter(|| {
                let xs = Tensor::<3>::from_data(TensorData::new(x.clone(), [32, w, f]), &device);
                let wx = Tensor::<2>::from_data(TensorData::new(w_x.clone(), [f, h4]), &device)
                    .require_grad();
                let wh =
                    Tensor::<2>::from_data(TensorData::new(w_h.clone(), [hidden, h4]), &device)
                        .require_grad();
                let bt = Tensor::<1>::from_data(TensorData::new(bias.clone(), [h4]), &device)
                    .require_grad();
                black_box(layer(xs, wx, wh, bt).sum().backward())
            })
        });
    }
    layer_group.finish();

    let plain = Device::flex();
    let infer = net.valid();
    let one = data(w * f);
    c.bench_function("infer_window_burn", |b| {
        b.iter(|| {
            let xs = Tensor::<3>::from_data(TensorData::new(one.clone(), [1, w, f]), &plain);
            black_box(infer.forward(xs).into_data())
        })
    });

    let fused = infer.to_fused();
    let mut scratch = Scratch::default();
    c.bench_function("infer_window_fused", |b| {
        b.iter(|| black_box(fused.predict(black_box(&one), &mut scratch)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
