//! burn's deprecated ndarray backend gives the same predictions as flex
//! (the default) on the shipped model. Needs the `ndarray-backend` feature:
//! `cargo test --release --features ndarray-backend --test backends`.
#![cfg(feature = "ndarray-backend")]

use std::path::Path;

use burn::prelude::Device;
use burn::tensor::{Tensor, TensorData};
use selfheal::rng::{Stream, Subsystem};
use selfheal::train::store;

fn predict(device: &Device, x: &[f32], n: usize) -> Vec<f32> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/predictor");
    let (cfg, _, net, _) = store::load_net(&dir, device).unwrap();
    let xs = Tensor::<3>::from_data(
        TensorData::new(x.to_vec(), [n, cfg.net.window, cfg.net.features]),
        device,
    );
    burn::tensor::activation::softmax(net.forward(xs), 1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
#[allow(deprecated)] // comparing against the deprecated backend is the point
fn ndarray_and_flex_agree() {
    let n = 8;
    let mut rng = Stream::new(9, Subsystem::Training);
    let x: Vec<f32> = (0..n * 60 * 8).map(|_| rng.normal() as f32).collect();
    let flex = predict(&Device::flex(), &x, n);
    let nd = predict(&Device::ndarray(), &x, n);
    let worst = flex
        .iter()
        .zip(&nd)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "flex and ndarray differ by {worst}");
}
