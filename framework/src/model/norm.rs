//! LayerNorm on the `flex` CPU backend with its own backward pass.
//!
//! burn 0.22's autodiff has no LayerNorm backward: it differentiates the decomposition
//! (mean, subtract, square, mean, add ε, square root, divide, scale, shift), a dozen
//! single-threaded passes over `[B, N, d]` each way. Here the forward is one pass per row,
//! keeping each row's mean and 1/σ, and the backward is one pass per row for the input's
//! gradient plus per-chunk partial sums for γ's and β's, all over rayon's pool. Without
//! autodiff (flex has its own fused forward), on other backends, for other dtypes and
//! for norms without β, [`layer_norm`] is burn's [`LayerNorm::forward`].

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::sdpa::elements;

/// Rows per rayon task.
const ROWS: usize = 64;

/// `norm` (made with ε = `eps`) applied to `x` `[B, N, d]` → `[B, N, d]`.
pub fn layer_norm(norm: &LayerNorm, eps: f32, x: Tensor<3>) -> Tensor<3> {
    let Some(beta) = norm.beta.as_ref().map(|b| b.val()) else {
        return norm.forward(x);
    };
    let gamma = norm.gamma.val();
    // libtorch under autodiff: PyTorch's fused LayerNorm and its backward (`torch_autograd`)
    #[cfg(feature = "tch")]
    if let Some(y) = super::torch_autograd::layer_norm(&x, &gamma, &beta, eps) {
        return y;
    }
    if !super::flex_kernels() || x.dtype() != DType::F32 || x.dims()[2] == 0 {
        return norm.forward(x);
    }
    if let Some(y) = tracked::<NoCheckpointing>(&x, &gamma, &beta, eps) {
        return y;
    }
    if let Some(y) = tracked::<BalancedCheckpointing>(&x, &gamma, &beta, eps) {
        return y;
    }
    norm.forward(x)
}

fn tracked<C: CheckpointStrategy>(
    x: &Tensor<3>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    eps: f32,
) -> Option<Tensor<3>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let g = gamma
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let b = beta
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let out = match NormBackward
        .prepare::<C>([x.node(), g.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (y, stats) = forward(x.primitive(), g.primitive(), b.primitive(), eps);
            let state = NormState {
                x: prep.checkpoint(&x),
                gamma: prep.checkpoint(&g),
                stats,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = forward(x.primitive(), g.primitive(), b.primitive(), eps);
            prep.finish(y)
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// The input and γ (checkpointed, so gradient checkpointing may recompute rather than keep
/// them), and each row's `(mean, 1/σ)`.
#[derive(Clone, Debug)]
struct NormState {
    x: NodeId,
    gamma: NodeId,
    stats: Vec<(f32, f32)>,
}

/// The backward step of [`layer_norm`] on `Autodiff<Flex>`.
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<Flex>(&ops.node);
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state.x);
        let gamma: FlexTensor = checkpointer.retrieve_node_output(ops.state.gamma);
        let (dx, dgamma, dbeta) = backward(&x, &gamma, &ops.state.stats, &grad);
        let [px, pg, pb] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, dgamma);
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, dbeta);
        }
    }
}

/// `y = (x − μ)/σ · γ + β` per row → (`y`, each row's `(μ, 1/σ)`).
fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f32,
) -> (FlexTensor, Vec<(f32, f32)>) {
    let (x, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let (xs, g, b) = (elements(&x), elements(&gamma), elements(&beta));
    let d = g.len();
    let rows = xs.len() / d;
    let mut y = vec![0.0f32; xs.len()];
    let mut stats = vec![(0.0f32, 0.0f32); rows];
    y.par_chunks_mut(ROWS * d)
        .zip(xs.par_chunks(ROWS * d))
        .zip(stats.par_chunks_mut(ROWS))
        .for_each(|((y, x), st)| {
            for ((yr, xr), s) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(st) {
                let mean = xr.iter().sum::<f32>() / d as f32;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                let rstd = 1.0 / (var + eps).sqrt();
                for j in 0..d {
                    yr[j] = (xr[j] - mean) * rstd * g[j] + b[j];
                }
                *s = (mean, rstd);
            }
        });
    let shape = x.layout().shape().clone();
    (FlexTensor::from_data(TensorData::new(y, shape)), stats)
}

/// Gradients of `x`, γ and β given the output's.
fn backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    stats: &[(f32, f32)],
    grad: &FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, gamma, gy) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        grad.to_contiguous(),
    );
    let (xs, g, gys) = (elements(&x), elements(&gamma), elements(&gy));
    let d = g.len();
    let mut dx = vec![0.0f32; xs.len()];
    // per chunk: (Σ gy·x̂, Σ gy) over its rows, summed after
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS * d)
        .zip(xs.par_chunks(ROWS * d))
        .zip(gys.par_chunks(ROWS * d))
        .zip(stats.par_chunks(ROWS))
        .map(|(((dx, x), gy), st)| {
            let (mut dg, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
            for (((dxr, xr), gyr), &(mean, rstd)) in dx
                .chunks_exact_mut(d)
                .zip(x.chunks_exact(d))
                .zip(gy.chunks_exact(d))
                .zip(st)
            {
                let (mut m1, mut m2) = (0.0f32, 0.0f32);
                for j in 0..d {
                    let xh = (xr[j] - mean) * rstd;
                    let gxh = gyr[j] * g[j];
                    m1 += gxh;
                    m2 += gxh * xh;
                    dg[j] += gyr[j] * xh;
                    db[j] += gyr[j];
                }
                let (m1, m2) = (m1 / d as f32, m2 / d as f32);
                for j in 0..d {
                    let xh = (xr[j] - mean) * rstd;
                    dxr[j] = rstd * (gyr[j] * g[j] - m1 - xh * m2);
                }
            }
            (dg, db)
        })
        .collect();
    let (mut dg, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
    for (pg, pb) in partial {
        dg.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    let shape = x.layout().shape().clone();
    (
        FlexTensor::from_data(TensorData::new(dx, shape)),
        FlexTensor::from_data(TensorData::new(dg, [d])),
        FlexTensor::from_data(TensorData::new(db, [d])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Distribution;

    #[test]
    fn the_flex_norm_and_its_gradients_match_burns_layer_norm() {
        let device = Device::flex().autodiff();
        let (b, n, d) = (3, 77, 40);
        let x = Tensor::<3>::random([b, n, d], Distribution::Normal(0.5, 2.0), &Device::flex())
            .to_data();
        let w = Tensor::<3>::random([b, n, d], Distribution::Normal(0.0, 1.0), &Device::flex())
            .to_data();
        let mut norm = LayerNormConfig::new(d).with_epsilon(1e-6).init(&device);
        // γ and β away from 1 and 0, so their use and their gradients show
        let random = |mean: f32| {
            let t =
                Tensor::<1>::random([d], Distribution::Normal(mean as f64, 0.5), &Device::flex());
            burn::module::Param::from_tensor(Tensor::from_data(t.to_data(), &device))
        };
        norm.gamma = random(1.0);
        norm.beta = Some(random(0.0));
        let run = |fused: bool| {
            let x = Tensor::<3>::from_data(x.clone(), &device).require_grad();
            let y = if fused {
                layer_norm(&norm, 1e-6, x.clone())
            } else {
                norm.forward(x.clone())
            };
            let grads = (y.clone() * Tensor::from_data(w.clone(), &device))
                .sum()
                .backward();
            let host = |t: Tensor<3>| Tensor::<3>::from_data(t.to_data(), &Device::flex());
            let host1 = |t: Tensor<1>| Tensor::<1>::from_data(t.to_data(), &Device::flex());
            (
                host(y),
                host(x.grad(&grads).unwrap()),
                host1(norm.gamma.val().grad(&grads).unwrap()),
                host1(norm.beta.as_ref().unwrap().val().grad(&grads).unwrap()),
            )
        };
        let (ours, theirs) = (run(true), run(false));
        let d3 = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        let d1 = |a: Tensor<1>, b: Tensor<1>| (a - b).abs().max().into_scalar::<f32>();
        assert!(d3(ours.0, theirs.0) < 1e-4, "output");
        assert!(d3(ours.1, theirs.1) < 1e-4, "dx");
        assert!(d1(ours.2, theirs.2) < 1e-3, "dgamma");
        assert!(d1(ours.3, theirs.3) < 1e-3, "dbeta");
    }
}
