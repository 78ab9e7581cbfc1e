//! Failure-predictor speed (issue bars: PyTorch on one core of the
//! reference machine trains a batch-32 step in about 40-44 ms and infers
//! one window in about 0.7 ms; the control loop needs under 1 ms).
//!
//! - `train_step_batch32`: forward, backward and Adam step of the
//!   seed-shaped network (60 x 8 windows) on burn's flex backend, one thread.
//! - `infer_window_burn`: one window through the burn network.
//! - `infer_window_fused`: one window through the control core's fused
//!   forward pass over the same weights.
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
