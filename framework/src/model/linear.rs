//! Linear layers on the `flex` backend through OpenBLAS ([`super::blas`]), forward and
//! backward.
//!
//! The step's matrix products are most of a flex train step's time (over half of it in the
//! profile), and OpenBLAS's AVX-512 GEMM runs them about twice as fast as the `gemm` crate
//! flex's matmul uses. Forward: `y = x·W + b`, the bias written first and the product added
//! to it. Backward: `dx = g·Wᵀ`, `dW = xᵀ·g`, `db = 1ᵀ·g`, all three GEMMs reading `W`
//! through its strides (a column window of a wider weight, or a transposed one, costs no
//! copy). Without OpenBLAS, on other backends and for other dtypes [`linear`] returns
//! `None` and the caller takes burn's linear.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;
use burn::tensor::DType;

use super::blas::{Blas, Operand, blas};
use super::sdpa::elements;

/// `x` `[B, N, d_in]` · `w` `[d_in, d_out]` + `b` `[d_out]` → `[B, N, d_out]` through
/// OpenBLAS on flex (with or without autodiff); `None` anywhere else, for the caller to
/// take burn's linear.
pub fn linear(x: &Tensor<3>, w: &Tensor<2>, b: &Tensor<1>) -> Option<Tensor<3>> {
    let blas = blas()?;
    if [x.dtype(), w.dtype(), b.dtype()]
        .iter()
        .any(|d| *d != DType::F32)
        || x.dims().contains(&0)
        || w.dims().contains(&0)
        || w.dims()[0] != x.dims()[2]
        || b.dims()[0] != w.dims()[1]
        || x.dims().iter().product::<usize>() >= i32::MAX as usize
        || w.dims()[1] * x.dims()[0] * x.dims()[1] >= i32::MAX as usize
    {
        return None;
    }
    if let (Ok(xp), Ok(wp), Ok(bp)) = (
        x.clone().try_into_primitive::<Flex>(),
        w.clone().try_into_primitive::<Flex>(),
        b.clone().try_into_primitive::<Flex>(),
    ) {
        return Some(Tensor::from_primitive::<Flex>(forward(blas, &xp, &wp, &bp)));
    }
    if let Some(y) = tracked::<NoCheckpointing>(blas, x, w, b) {
        return Some(y);
    }
    tracked::<BalancedCheckpointing>(blas, x, w, b)
}

/// The autodiff path for one checkpointing strategy; `None` when the tensors are not on
/// `Autodiff<Flex, C>`.
fn tracked<C: CheckpointStrategy>(
    blas: &'static Blas,
    x: &Tensor<3>,
    w: &Tensor<2>,
    b: &Tensor<1>,
) -> Option<Tensor<3>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let w = w.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let b = b.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let out = match LinearBackward
        .prepare::<C>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let y = forward(blas, x.primitive(), w.primitive(), b.primitive());
            let state = LinearState {
                x: prep.checkpoint(&x),
                w: prep.checkpoint(&w),
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(blas, x.primitive(), w.primitive(), b.primitive()))
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// The input and the weight (checkpointed, so gradient checkpointing may recompute rather
/// than keep them).
#[derive(Clone, Debug)]
struct LinearState {
    x: NodeId,
    w: NodeId,
}

/// The backward step of [`linear`] on `Autodiff<Flex>`.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let g = grads.consume::<Flex>(&ops.node);
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state.x);
        let w: FlexTensor = checkpointer.retrieve_node_output(ops.state.w);
        let blas = blas().expect("the forward pass loaded OpenBLAS");
        let [px, pw, pb] = ops.parents;
        let (g, _) = rows(&g);
        if let Some(node) = px {
            grads.register::<Flex>(node.id, grad_input(blas, &g, &x, &w));
        }
        if let Some(node) = pw {
            grads.register::<Flex>(node.id, grad_weight(blas, &g, &x));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, grad_bias(blas, &g));
        }
    }
}

/// `t` `[.., cols]` as a contiguous row-major matrix: its elements and `(rows, cols)`.
fn rows(t: &FlexTensor) -> (FlexTensor, (usize, usize)) {
    let t = if t.layout().is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    };
    let shape = t.layout().shape();
    let cols = shape[shape.num_dims() - 1];
    let n = t.layout().num_elements();
    (t, (n / cols.max(1), cols))
}

/// The weight `[d_in, d_out]` as a GEMM operand read through its strides (row-major with
/// unit column stride, or transposed storage), copied to a contiguous one otherwise.
fn weight_operand(w: &FlexTensor) -> (Operand, Option<FlexTensor>) {
    let l = w.layout();
    let s: &[f32] = w.storage();
    // SAFETY: start_offset is within the storage.
    let ptr = unsafe { s.as_ptr().add(l.start_offset()) };
    let (rows, cols) = (l.shape()[0], l.shape()[1]);
    match Operand::strided((ptr, l.strides()[1], l.strides()[0]), rows, cols) {
        Some(op) => (op, None),
        None => {
            let c = w.to_contiguous();
            (Operand::row_major(elements(&c), cols), Some(c))
        }
    }
}

/// `y = x·w + b`: `[B, N, d_in]` → `[B, N, d_out]`.
fn forward(blas: &Blas, x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (x, (n, d_in)) = rows(x);
    let d_out = w.layout().shape()[1];
    let (bias, _) = rows(b);
    let bias = elements(&bias);
    // every row starts as the bias; the product is added to it
    let mut y = Vec::with_capacity(n * d_out);
    for _ in 0..n {
        y.extend_from_slice(bias);
    }
    let (wop, _keep) = weight_operand(w);
    let xop = Operand::row_major(elements(&x), d_in);
    // SAFETY: x is n×d_in, w d_in×d_out through its operand, y n×d_out and fresh.
    unsafe { blas.gemm((n, d_out, d_in), xop, wop, 1.0, y.as_mut_ptr(), d_out) };
    let mut shape = x.layout().shape().to_vec();
    *shape.last_mut().expect("a 3-d input") = d_out;
    FlexTensor::from_data(TensorData::new(y, shape))
}

/// `dx = g·wᵀ`: `[B, N, d_out]` → `[B, N, d_in]` (the shape of `x`).
fn grad_input(blas: &Blas, g: &FlexTensor, x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let (d_in, d_out) = (w.layout().shape()[0], w.layout().shape()[1]);
    let n = g.layout().num_elements() / d_out;
    let (wop, _keep) = weight_operand(w);
    let wt = Operand {
        trans: !wop.trans,
        ..wop
    };
    let gop = Operand::row_major(elements(g), d_out);
    let mut dx = vec![0.0f32; n * d_in];
    // SAFETY: g is n×d_out, wᵀ d_out×d_in, dx n×d_in and fresh.
    unsafe { blas.gemm((n, d_in, d_out), gop, wt, 0.0, dx.as_mut_ptr(), d_in) };
    FlexTensor::from_data(TensorData::new(dx, x.layout().shape().to_vec()))
}

/// `dw = xᵀ·g`: `[d_in, d_out]`.
fn grad_weight(blas: &Blas, g: &FlexTensor, x: &FlexTensor) -> FlexTensor {
    let (x, (n, d_in)) = rows(x);
    let d_out = g.layout().num_elements() / n;
    let xt = Operand {
        trans: true,
        ..Operand::row_major(elements(&x), d_in)
    };
    let gop = Operand::row_major(elements(g), d_out);
    let mut dw = vec![0.0f32; d_in * d_out];
    // SAFETY: xᵀ is d_in×n, g n×d_out, dw d_in×d_out and fresh.
    unsafe { blas.gemm((d_in, d_out, n), xt, gop, 0.0, dw.as_mut_ptr(), d_out) };
    FlexTensor::from_data(TensorData::new(dw, [d_in, d_out]))
}

/// `db = 1ᵀ·g`: the column sums of `g`, `[d_out]`.
fn grad_bias(blas: &Blas, g: &FlexTensor) -> FlexTensor {
    let shape = g.layout().shape();
    let d_out = shape[shape.num_dims() - 1];
    let n = g.layout().num_elements() / d_out;
    let ones = vec![1.0f32; n];
    let onesop = Operand::row_major(&ones, n);
    let gop = Operand::row_major(elements(g), d_out);
    let mut db = vec![0.0f32; d_out];
    // SAFETY: 1ᵀ is 1×n, g n×d_out, db 1×d_out and fresh.
    unsafe { blas.gemm((1, d_out, n), onesop, gop, 0.0, db.as_mut_ptr(), d_out) };
    FlexTensor::from_data(TensorData::new(db, [d_out]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: usize = 2;
    const N: usize = 37;
    const D_IN: usize = 24;
    const D_OUT: usize = 40;

    fn values<const R: usize>(shape: [usize; R], seed: usize, device: &Device) -> Tensor<R> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 1.5)
            .collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// Output and gradients of `Σ v ⊙ linear(x)` for x, the weight's column window
    /// `[4, 4 + 20)` (as `layers::linear_columns` takes it) and its bias, as host tensors.
    fn grads(device: &Device, ours: bool) -> [Tensor<2>; 4] {
        let x = values([B, N, D_IN], 1, device).require_grad();
        let w = values([D_IN, D_OUT], 2, device).require_grad();
        let b = values([D_OUT], 3, device).require_grad();
        let v = values([B, N, 20], 4, device);
        let (wc, bc) = (w.clone().narrow(1, 4, 20), b.clone().narrow(0, 4, 20));
        let y = if ours {
            linear(&x, &wc, &bc).expect("flex takes OpenBLAS")
        } else {
            burn::tensor::module::linear(x.clone(), wc, Some(bc))
        };
        let g = (y.clone() * v).sum().backward();
        let host = |t: Tensor<2>| Tensor::<2>::from_data(t.to_data(), &Device::flex());
        [
            host(y.reshape([B * N, 20])),
            host(x.grad(&g).expect("dx").reshape([B * N, D_IN])),
            host(w.grad(&g).expect("dw")),
            host(b.grad(&g).expect("db").reshape([1, D_OUT])),
        ]
    }

    #[test]
    fn output_and_gradients_match_burns_linear_with_and_without_checkpointing() {
        assert!(
            blas().is_some(),
            "OpenBLAS is loaded (scripts/setup.sh installs libopenblas0-pthread)"
        );
        let want = grads(&Device::flex().autodiff(), false);
        for device in [
            Device::flex().autodiff(),
            Device::flex().autodiff().gradient_checkpointing(),
        ] {
            let got = grads(&device, true);
            for (name, (g, w)) in ["output", "dx", "dw", "db"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                let scale = w.clone().abs().max().into_scalar::<f32>().max(1e-3);
                let diff = (g.clone() - w.clone()).abs().max().into_scalar::<f32>();
                assert!(
                    diff / scale < 1e-5,
                    "{name} differs by {diff:e} (scale {scale:e})"
                );
            }
        }
        // inference, and a weight stored transposed
        let flex = Device::flex();
        let x = values([B, N, D_IN], 5, &flex);
        let w = values([D_OUT, D_IN], 6, &flex).transpose();
        let b = values([D_OUT], 7, &flex);
        let ours = linear(&x, &w, &b).expect("flex takes OpenBLAS");
        let theirs = burn::tensor::module::linear(x, w, Some(b));
        let diff = (ours - theirs).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "inference differs by {diff:e}");
    }
}
