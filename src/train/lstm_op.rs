//! The LSTM layer as one burn operation with a hand-written backward pass.
//!
//! Composed from burn's tensor operations, a layer records about twenty
//! autodiff nodes per time step (two matrix products, a chunk, four
//! activations, the cell update), and a 60-step window of the predictor's
//! three layers spends most of a training step in that bookkeeping. Here
//! each layer is one node: the forward pass keeps what back-propagation
//! through time needs (`lstm_kernel::Cache`) and the backward pass returns
//! the four gradients at once. The mechanism is burn's backend extension
//! (`#[backend_extension]`) with an `Autodiff<B, C>` implementation that
//! registers a [`Backward`] step, as burn's own operations do.

// burn marks its ndarray backend deprecated; it is listed only under the
// optional `ndarray-backend` feature, for comparison with flex.
#![cfg_attr(feature = "ndarray-backend", allow(deprecated))]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Tensor, TensorData};

use super::lstm_kernel::{self, Cache, Dims};

#[backend_extension(Flex, NdArray: cfg(feature = "ndarray-backend"), Autodiff)]
pub trait LstmOps: Backend {
    /// Every step's hidden state `[batch, steps, h]` of one LSTM layer over
    /// `x` `[batch, steps, input]`, with `w_x` `[input, 4h]`, `w_h`
    /// `[h, 4h]` and `bias` `[4h]` (gate blocks input, forget, cell,
    /// output), starting from zero state.
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_x: FloatTensor<Self>,
        w_h: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// [`LstmOps::lstm_sequence`] on high-level tensors, on any device the
/// extension lists (with or without autodiff).
pub fn lstm_sequence(x: Tensor<3>, w_x: Tensor<2>, w_h: Tensor<2>, bias: Tensor<1>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LstmOps>::lstm_sequence(
        x.into_dispatch(),
        w_x.into_dispatch(),
        w_h.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// The same layer composed from burn's tensor operations, step by step,
/// with burn's own autodiff: the reference that the hand-written backward
/// pass is checked against (`tests/lstm_op.rs`) and timed against
/// (`benches/predictor.rs`).
pub fn lstm_composed(x: Tensor<3>, w_x: Tensor<2>, w_h: Tensor<2>, bias: Tensor<1>) -> Tensor<3> {
    let [batch, _, d_in] = x.dims();
    let [hidden, h4] = w_h.dims();
    let device = x.device();
    let bias = bias.reshape([1, h4]);
    let mut h = Tensor::<2>::zeros([batch, hidden], &device);
    let mut c = Tensor::<2>::zeros([batch, hidden], &device);
    let mut outputs = Vec::new();
    for x_t in x.iter_dim(1) {
        let gates =
            x_t.reshape([batch, d_in]).matmul(w_x.clone()) + bias.clone() + h.matmul(w_h.clone());
        let [i, f, g, o]: [Tensor<2>; 4] = gates
            .chunk(4, 1)
            .try_into()
            .expect("four equal gate blocks");
        c = sigmoid(f) * c + sigmoid(i) * tanh(g);
        h = sigmoid(o) * tanh(c.clone());
        outputs.push(h.clone());
    }
    Tensor::stack(outputs, 1)
}

/// The CPU backends answer their reads at once; anything else is a bug
/// in the caller's choice of backend.
fn ready<T>(f: impl Future<Output = T>) -> T {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the LSTM operation runs on CPU backends, which read at once"),
    }
}

fn to_vec<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    ready(B::float_into_data(t))
        .expect("reading a CPU tensor")
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}

fn from_vec<B: Backend>(v: Vec<f32>, shape: &[usize], device: &B::Device) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(v, shape.to_vec()), device)
}

fn dims<B: Backend>(x: &FloatTensor<B>, w_h: &FloatTensor<B>) -> Dims {
    let xs = x.shape();
    let hs = w_h.shape();
    assert_eq!(xs.num_dims(), 3, "x is [batch, steps, input]");
    Dims {
        batch: xs[0],
        steps: xs[1],
        input: xs[2],
        hidden: hs[0],
    }
}

/// The inputs read out of their tensors: `(dims, x, w_x, w_h, bias)`.
type Read = (Dims, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn read<B: Backend>(
    x: FloatTensor<B>,
    w_x: FloatTensor<B>,
    w_h: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> Read {
    let d = dims::<B>(&x, &w_h);
    (
        d,
        to_vec::<B>(x),
        to_vec::<B>(w_x),
        to_vec::<B>(w_h),
        to_vec::<B>(bias),
    )
}

/// The forward pass, with what the backward step needs.
fn forward<B: Backend>(
    x: FloatTensor<B>,
    w_x: FloatTensor<B>,
    w_h: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> (FloatTensor<B>, Saved<B::Device>) {
    let device = x.device();
    let (d, x, w_x, w_h, bias) = read::<B>(x, w_x, w_h, bias);
    let (out, cache) = lstm_kernel::forward(d, &x, &w_x, &w_h, &bias);
    let out = from_vec::<B>(out, &[d.batch, d.steps, d.hidden], &device);
    let saved = Saved {
        dims: d,
        cache: Arc::new(cache),
        w_x: Arc::new(w_x),
        w_h: Arc::new(w_h),
        device,
    };
    (out, saved)
}

/// A backend without autodiff runs the forward pass only.
macro_rules! forward_only {
    ($backend:ty) => {
        impl LstmOps for $backend {
            fn lstm_sequence(
                x: FloatTensor<Self>,
                w_x: FloatTensor<Self>,
                w_h: FloatTensor<Self>,
                bias: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                forward::<Self>(x, w_x, w_h, bias).0
            }
        }
    };
}

forward_only!(Flex);
#[cfg(feature = "ndarray-backend")]
forward_only!(burn::backend::NdArray);

/// What the backward step keeps: the forward cache and the weights it
/// multiplies gradients by.
#[derive(Clone)]
struct Saved<D> {
    dims: Dims,
    cache: Arc<Cache>,
    w_x: Arc<Vec<f32>>,
    w_h: Arc<Vec<f32>>,
    device: D,
}

impl<D> std::fmt::Debug for Saved<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved").field("dims", &self.dims).finish()
    }
}

#[derive(Debug)]
struct LstmBackward;

impl<B: Backend> Backward<B, 4> for LstmBackward {
    type State = Saved<B::Device>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved {
            dims: d,
            cache,
            w_x,
            w_h,
            device,
        } = ops.state;
        let dy = to_vec::<B>(grads.consume::<B>(&ops.node));
        let [x, wx, wh, b] = ops.parents;
        let g = lstm_kernel::backward(d, &cache, &w_x, &w_h, &dy, x.is_some());
        let h4 = 4 * d.hidden;
        if let (Some(node), Some(gx)) = (x, g.x) {
            let t = from_vec::<B>(gx, &[d.batch, d.steps, d.input], &device);
            grads.register::<B>(node.id, t);
        }
        if let Some(node) = wx {
            grads.register::<B>(node.id, from_vec::<B>(g.w_x, &[d.input, h4], &device));
        }
        if let Some(node) = wh {
            grads.register::<B>(node.id, from_vec::<B>(g.w_h, &[d.hidden, h4], &device));
        }
        if let Some(node) = b {
            grads.register::<B>(node.id, from_vec::<B>(g.bias, &[h4], &device));
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> LstmOps for Autodiff<B, C> {
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_x: FloatTensor<Self>,
        w_h: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prep = LstmBackward
            .prepare::<C>([x.node(), w_x.node(), w_h.node(), bias.node()])
            .compute_bound()
            .stateful();
        let (x, w_x, w_h, bias) = (
            x.into_primitive(),
            w_x.into_primitive(),
            w_h.into_primitive(),
            bias.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let (out, saved) = forward::<B>(x, w_x, w_h, bias);
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward::<B>(x, w_x, w_h, bias).0),
        }
    }
}
