//! Attention and LayerNorm on the libtorch backend under autodiff, differentiated by
//! libtorch's own autograd instead of burn's decomposition (cargo feature `tch`).
//!
//! burn 0.22's autodiff has neither an attention nor a LayerNorm backward: on
//! `Autodiff<LibTorch>` it records attention as matmul, scale, mask fill, softmax and matmul,
//! keeping `[B, H, N, M]` tensors for the backward pass, and LayerNorm as a dozen elementwise
//! passes each way, while PyTorch runs one fused kernel each way (flash attention on CPU and
//! CUDA, `native_layer_norm`). Here the forward runs PyTorch's fused operation on inputs that
//! require grad in libtorch, so libtorch records its own one-node graph (saving what its
//! backward kernel needs, e.g. the row log-sum-exp instead of the probabilities); burn gets
//! the output detached and a backward step that runs that graph
//! (`∂⟨out, g⟩/∂inputs` = the vector-Jacobian product for the incoming gradient `g`).
//! Everything stays on the tensors' device, CPU or CUDA.
//!
//! Without autodiff burn-tch already calls the fused operations; on every other backend
//! [`attention`] and [`layer_norm`] return `None`. `SONORA_FLEX_KERNELS=0` turns these off
//! too (see [`super::flex_kernels`]).

// burn 0.22 marks burn-tch deprecated in favour of CubeCL backends, but libtorch is the
// CUDA path this project builds and benchmarks against PyTorch (see README).
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, LibTorch};
use burn::prelude::*;

/// Attention of `q` `[B, H, N, d]` over `k` `[B, H, M, d]`, `v` `[B, H, M, dv]`, keys with
/// `key_mask` `[B, M]` true ignored, scale `1/√d` → `[B, H, N, dv]`, through PyTorch's
/// `scaled_dot_product_attention` and its backward. `None` unless the tensors are on
/// `Autodiff<LibTorch>`.
pub fn attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    key_mask: Option<&Tensor<2, Bool>>,
) -> Option<Tensor<4>> {
    if !super::flex_kernels() {
        return None;
    }
    if let Some(o) = attention_on::<NoCheckpointing>(q, k, v, key_mask) {
        return Some(o);
    }
    attention_on::<BalancedCheckpointing>(q, k, v, key_mask)
}

fn attention_on<C: CheckpointStrategy>(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    key_mask: Option<&Tensor<2, Bool>>,
) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<LibTorch, C>>,
{
    let inputs = [
        q.clone()
            .try_into_primitive::<Autodiff<LibTorch, C>>()
            .ok()?,
        k.clone()
            .try_into_primitive::<Autodiff<LibTorch, C>>()
            .ok()?,
        v.clone()
            .try_into_primitive::<Autodiff<LibTorch, C>>()
            .ok()?,
    ];
    let mask = match key_mask {
        None => None,
        Some(km) => {
            let [b, m] = km.dims();
            let km = km
                .clone()
                .try_into_primitive::<Autodiff<LibTorch, C>>()
                .ok()?;
            // [B, M] true = ignore → [B, 1, 1, M] true = attend (PyTorch's sense)
            Some(km.tensor.logical_not().reshape([b as i64, 1, 1, m as i64]))
        }
    };
    let out = run::<C, 3>(inputs, move |t: &[tch::Tensor]| {
        tch::Tensor::scaled_dot_product_attention(
            &t[0],
            &t[1],
            &t[2],
            mask.as_ref(),
            0.0,
            false,
            None::<f64>,
            false,
        )
    });
    Some(Tensor::from_primitive::<Autodiff<LibTorch, C>>(out))
}

/// LayerNorm of `x` `[B, N, d]` over its last dim with `gamma`, `beta` `[d]` and ε = `eps`,
/// through PyTorch's `layer_norm` and its backward. `None` unless the tensors are on
/// `Autodiff<LibTorch>`.
pub fn layer_norm(
    x: &Tensor<3>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    eps: f32,
) -> Option<Tensor<3>> {
    if !super::flex_kernels() {
        return None;
    }
    if let Some(y) = layer_norm_on::<NoCheckpointing>(x, gamma, beta, eps) {
        return Some(y);
    }
    layer_norm_on::<BalancedCheckpointing>(x, gamma, beta, eps)
}

fn layer_norm_on<C: CheckpointStrategy>(
    x: &Tensor<3>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    eps: f32,
) -> Option<Tensor<3>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<LibTorch, C>>,
{
    let d = x.dims()[2] as i64;
    let inputs = [
        x.clone()
            .try_into_primitive::<Autodiff<LibTorch, C>>()
            .ok()?,
        gamma
            .clone()
            .try_into_primitive::<Autodiff<LibTorch, C>>()
            .ok()?,
        beta.clone()
            .try_into_primitive::<Autodiff<LibTorch, C>>()
            .ok()?,
    ];
    let out = run::<C, 3>(inputs, move |t: &[tch::Tensor]| {
        t[0].layer_norm([d], Some(&t[1]), Some(&t[2]), f64::from(eps), true)
    });
    Some(Tensor::from_primitive::<Autodiff<LibTorch, C>>(out))
}

/// Runs `f` on the inputs' libtorch tensors and records it in burn's graph with
/// [`TorchBackward`]; when any input is tracked, `f` runs on leaves that require grad so
/// libtorch keeps its graph for the backward pass.
fn run<C: CheckpointStrategy, const N: usize>(
    inputs: [FloatTensor<Autodiff<LibTorch, C>>; N],
    f: impl Fn(&[tch::Tensor]) -> tch::Tensor,
) -> FloatTensor<Autodiff<LibTorch, C>> {
    let nodes = inputs.each_ref().map(|t| t.node());
    match TorchBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let leaves: Vec<TchTensor> = inputs
                .iter()
                .map(|t| {
                    let p = t.primitive();
                    let leaf = p.tensor.detach().set_requires_grad(true);
                    TchTensor::from_existing(leaf, p.storage.clone())
                })
                .collect();
            let torch_leaves: Vec<tch::Tensor> =
                leaves.iter().map(|l| l.tensor.shallow_clone()).collect();
            let out = f(&torch_leaves);
            let detached = TchTensor::new(out.detach());
            // Sharing the output's and inputs' storage references keeps burn from updating
            // them in place while libtorch's graph holds them for the backward pass.
            let state = TorchGraph {
                out: TchTensor::from_existing(out, detached.storage.clone()),
                leaves,
            };
            prep.finish(state, detached)
        }
        OpsKind::UnTracked(prep) => {
            let plain: Vec<tch::Tensor> = inputs
                .iter()
                .map(|t| t.primitive().tensor.shallow_clone())
                .collect();
            prep.finish(TchTensor::new(f(&plain)))
        }
    }
}

/// libtorch's graph of one operation: its output (attached to the graph) and the leaves it
/// was computed from (one per input, requiring grad).
#[derive(Clone, Debug)]
struct TorchGraph {
    out: TchTensor,
    leaves: Vec<TchTensor>,
}

/// The backward step of [`run`]: libtorch's vector-Jacobian product of the recorded graph.
#[derive(Debug)]
struct TorchBackward;

impl<const N: usize> Backward<LibTorch, N> for TorchBackward {
    type State = TorchGraph;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let g = grads.consume::<LibTorch>(&ops.node);
        let graph = ops.state;
        // ⟨out, g⟩: its gradient with respect to each leaf is the VJP for the incoming `g`
        let dot = (&graph.out.tensor * &g.tensor).sum(graph.out.tensor.kind());
        let leaves: Vec<&tch::Tensor> = graph.leaves.iter().map(|l| &l.tensor).collect();
        let dleaves = tch::Tensor::run_backward(&[dot], &leaves, false, false);
        for (parent, d) in ops.parents.into_iter().zip(dleaves) {
            if let Some(node) = parent {
                grads.register::<LibTorch>(node.id, TchTensor::new(d));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;

    const B: usize = 2;
    const H: usize = 3;
    const N: usize = 7;
    const M: usize = 11;
    const D: usize = 4;
    const DV: usize = 5;

    /// Batch 0 ignores three keys, batch 1 all but its first (the model never masks every
    /// key of a row: a caption's first token and the clip's own tokens are always kept).
    fn key_mask(device: &Device) -> Tensor<2, Bool> {
        let mut ignore = vec![false; B * M];
        for j in [1, 4, 10] {
            ignore[j] = true;
        }
        ignore[M + 1..].fill(true);
        Tensor::from_data(TensorData::new(ignore, [B, M]), device)
    }

    /// Normal(mean, std) values of `shape` on `device` from a generator of this test's own
    /// (burn's seeded RNG is shared by tests running in parallel).
    fn normal<const R: usize>(
        shape: [usize; R],
        mean: f32,
        std: f32,
        seed: u64,
        device: &Device,
    ) -> Tensor<R> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dist = rand_distr::Normal::new(mean, std).expect("a valid normal");
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| rng.sample(dist))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// Host copies (flex) of `t`, to compare across backends.
    fn host<const R: usize>(t: &Tensor<R>) -> Tensor<R> {
        Tensor::from_data(t.to_data(), &Device::flex())
    }

    fn rel_diff<const R: usize>(got: &Tensor<R>, want: &Tensor<R>) -> f32 {
        let scale = want.clone().abs().max().into_scalar::<f32>().max(1e-3);
        (got.clone() - want.clone())
            .abs()
            .max()
            .into_scalar::<f32>()
            / scale
    }

    /// Output and gradients of `Σ w ⊙ attention(q, k, v)` with the key mask, through this
    /// module (`ours`) or burn's differentiated attention, as host tensors.
    fn attention_grads(device: &Device, ours: bool) -> [Tensor<4>; 4] {
        // q made [B, N, H, D] and swapped, as the model's is
        let q_leaf = normal([B, N, H, D], 0.0, 2.0, 1, device).require_grad();
        let q = q_leaf.clone().swap_dims(1, 2);
        let k = normal([B, H, M, D], 0.0, 2.0, 2, device).require_grad();
        let v = normal([B, H, M, DV], 0.0, 1.0, 3, device).require_grad();
        let w = normal([B, H, N, DV], 0.0, 1.0, 4, device);
        let mask = key_mask(device);
        let o = if ours {
            attention(&q, &k, &v, Some(&mask)).expect("autodiff libtorch takes this path")
        } else {
            let mask = if super::super::layers::mask_is_inverted(device) {
                mask.bool_not()
            } else {
                mask
            };
            let mask = mask.reshape([B, 1, 1, M]).expand([B, H, N, M]);
            burn_attention(
                q.clone(),
                k.clone(),
                v.clone(),
                Some(mask),
                None,
                AttentionModuleOptions::default(),
            )
        };
        let g = (o.clone() * w).sum().backward();
        let grad = |t: &Tensor<4>| host(&t.grad(&g).expect("a gradient"));
        [host(&o), grad(&q_leaf).swap_dims(1, 2), grad(&k), grad(&v)]
    }

    #[test]
    fn attention_and_its_gradients_match_burns_with_and_without_checkpointing() {
        let plain = Device::libtorch().autodiff();
        let want = attention_grads(&plain, false);
        for device in [
            plain,
            Device::libtorch().autodiff().gradient_checkpointing(),
        ] {
            let got = attention_grads(&device, true);
            for (name, (g, w)) in ["output", "dq", "dk", "dv"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                let diff = rel_diff(g, w);
                assert!(diff < 1e-5, "{name} differs by {diff:e} (relative)");
            }
        }
        // burn's attention on flex agrees, so the mask means the same on both backends
        let flex = attention_grads(&Device::flex().autodiff(), false);
        for (g, w) in flex.iter().zip(&want) {
            assert!(rel_diff(g, w) < 1e-5);
        }
    }

    /// Output and gradients of `Σ w ⊙ LayerNorm(x)` for x, γ, β, through this module
    /// (`ours`) or burn's operations, as host tensors.
    fn norm_grads(device: &Device, ours: bool) -> [Tensor<3>; 4] {
        const EPS: f32 = 1e-6;
        let x = normal([B, N, 24], 0.5, 2.0, 5, device).require_grad();
        let gamma = normal([24], 1.0, 0.5, 6, device).require_grad();
        let beta = normal([24], 0.0, 0.5, 7, device).require_grad();
        let w = normal([B, N, 24], 0.0, 1.0, 8, device);
        let y = if ours {
            layer_norm(&x, &gamma, &beta, EPS).expect("autodiff libtorch takes this path")
        } else {
            let mean = x.clone().mean_dim(2);
            let centred = x.clone() - mean;
            let var = centred.clone().square().mean_dim(2);
            centred / (var + EPS).sqrt() * gamma.clone().reshape([1, 1, 24])
                + beta.clone().reshape([1, 1, 24])
        };
        let g = (y.clone() * w).sum().backward();
        let row = |t: &Tensor<1>| host(&t.grad(&g).expect("a gradient").reshape([1, 1, 24]));
        [
            host(&y),
            host(&x.grad(&g).expect("a gradient")),
            row(&gamma),
            row(&beta),
        ]
    }

    #[test]
    fn layer_norm_and_its_gradients_match_burns_operations() {
        let want = norm_grads(&Device::libtorch().autodiff(), false);
        for device in [
            Device::libtorch().autodiff(),
            Device::libtorch().autodiff().gradient_checkpointing(),
        ] {
            let got = norm_grads(&device, true);
            for (name, (g, w)) in ["output", "dx", "dgamma", "dbeta"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                let diff = rel_diff(g, w);
                assert!(diff < 1e-5, "{name} differs by {diff:e} (relative)");
            }
        }
    }

    #[test]
    fn other_backends_and_plain_libtorch_are_left_to_burn() {
        let flex = Device::flex().autodiff();
        let x = Tensor::<4>::ones([1, 1, 2, 4], &flex);
        assert!(attention(&x, &x, &x, None).is_none());
        // without autodiff burn-tch already runs PyTorch's fused kernels
        let plain = Device::libtorch();
        let x = Tensor::<4>::ones([1, 1, 2, 4], &plain);
        assert!(attention(&x, &x, &x, None).is_none());
        let x = Tensor::<3>::ones([1, 2, 4], &plain);
        let g = Tensor::<1>::ones([4], &plain);
        assert!(layer_norm(&x, &g, &g, 1e-6).is_none());
    }
}
