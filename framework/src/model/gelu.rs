//! Exact (erf) GELU on the `flex` CPU backend, forward and backward, vectorised and split
//! over rayon's pool.
//!
//! burn-flex computes GELU and its gradient one element at a time with libm's scalar
//! `erff` on one thread. Here both are compiled for AVX2 + FMA (when the CPU has them) and run
//! in chunks spread over the pool, with erf from Abramowitz & Stegun 7.1.26 (absolute error
//! below 1.5e-7) and the `exp` of [`super::sdpa::exp`]. Other backends and dtypes keep
//! burn's [`burn::tensor::activation::gelu`]; [`gelu`] decides per call.

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
use rayon::prelude::*;

use super::sdpa::{elements, exp};

/// Elements per rayon task.
const CHUNK: usize = 16 * 1024;

/// Abramowitz & Stegun 7.1.26: `erfc(z) ≈ t·(A₀ + A₁t + … + A₄t⁴)·e^{−z²}`, `t = 1/(1 + P z)`.
const P: f32 = 0.327_591_1;
const A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_8,
    -1.453_152_1,
    1.061_405_4,
];

/// `x · Φ(x)` of a `[B, N, d]` tensor; burn's GELU off `flex` or for non-f32 tensors.
pub fn gelu(x: Tensor<3>) -> Tensor<3> {
    if !super::flex_kernels() || x.dtype() != DType::F32 {
        return burn::tensor::activation::gelu(x);
    }
    if let Ok(p) = x.clone().try_into_primitive::<Flex>() {
        return Tensor::from_primitive::<Flex>(map(&p, None));
    }
    if let Some(y) = tracked::<NoCheckpointing>(&x) {
        return y;
    }
    if let Some(y) = tracked::<BalancedCheckpointing>(&x) {
        return y;
    }
    burn::tensor::activation::gelu(x)
}

fn tracked<C: CheckpointStrategy>(x: &Tensor<3>) -> Option<Tensor<3>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let out = match GeluBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let y = map(x.primitive(), None);
            let id = prep.checkpoint(&x);
            prep.finish(id, y)
        }
        OpsKind::UnTracked(prep) => {
            let y = map(x.primitive(), None);
            prep.finish(y)
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// The backward step of [`gelu`] on `Autodiff<Flex>`; its state is the (checkpointed) input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<Flex>(&ops.node);
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, map(&x, Some(&grad)));
        }
    }
}

/// GELU of `x`, or with `grad` the gradient `grad · GELU'(x)`, as a new contiguous tensor.
fn map(x: &FlexTensor, grad: Option<&FlexTensor>) -> FlexTensor {
    let x = x.to_contiguous();
    let g = grad.map(|g| g.to_contiguous());
    let xs = elements(&x);
    let mut out = vec![0.0f32; xs.len()];
    match &g {
        None => out
            .par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(o, x)| rows(x, None, o)),
        Some(g) => {
            let gs = elements(g);
            out.par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
                .for_each(|(o, (x, g))| rows(x, Some(g), o));
        }
    }
    let shape = x.layout().shape().clone();
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// One chunk: `out = GELU(x)` or `out = g · GELU'(x)`.
fn rows(x: &[f32], g: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::sdpa::avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { rows_avx2(x, g, out) };
        }
    }
    rows_portable(x, g, out)
}

/// [`rows_portable`] 8 lanes at a time, scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(x: &[f32], g: Option<&[f32]>, out: &mut [f32]) {
    use super::sdpa::x86::exp8;
    use std::arch::x86_64::*;
    let len = x.len();
    let simd = len / 8 * 8;
    let one = _mm256_set1_ps(1.0);
    let sign = _mm256_set1_ps(-0.0);
    for i in (0..simd).step_by(8) {
        // SAFETY: i + 8 <= len for x, g (same length) and out.
        unsafe {
            let xv = _mm256_loadu_ps(x.as_ptr().add(i));
            // z = |x|/√2, t = 1/(1 + P z), tail = erfc(z)/2 = Φ(−|x|)
            let z = _mm256_mul_ps(
                _mm256_andnot_ps(sign, xv),
                _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
            );
            let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(P), z, one));
            let mut poly = _mm256_set1_ps(A[4]);
            for a in [A[3], A[2], A[1], A[0]] {
                poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(a));
            }
            poly = _mm256_mul_ps(poly, t);
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z)));
            let tail = _mm256_mul_ps(_mm256_set1_ps(0.5), _mm256_mul_ps(poly, e));
            let nonneg = _mm256_cmp_ps::<_CMP_GE_OQ>(xv, _mm256_setzero_ps());
            let phi = _mm256_blendv_ps(tail, _mm256_sub_ps(one, tail), nonneg);
            let r = match g {
                None => _mm256_mul_ps(xv, phi),
                Some(g) => {
                    // Φ(x) + x·φ(x), φ(x) = e^{−z²}/√(2π)
                    let d = _mm256_fmadd_ps(_mm256_mul_ps(xv, _mm256_set1_ps(0.398_942_3)), e, phi);
                    _mm256_mul_ps(_mm256_loadu_ps(g.as_ptr().add(i)), d)
                }
            };
            _mm256_storeu_ps(out.as_mut_ptr().add(i), r);
        }
    }
    rows_portable(&x[simd..], g.map(|g| &g[simd..]), &mut out[simd..]);
}

/// The element loop, one element at a time.
#[inline(always)]
fn rows_portable(x: &[f32], g: Option<&[f32]>, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = match g {
            None => gelu_scalar(x[i]),
            Some(g) => g[i] * gelu_grad_scalar(x[i]),
        };
    }
}

/// `Φ(x)`, the standard normal CDF, from erf (A&S 7.1.26).
#[inline(always)]
fn phi(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    // erfc(|x|/√2) / 2 = the tail beyond |x|
    let tail = 0.5 * poly * exp(-z * z);
    if x >= 0.0 { 1.0 - tail } else { tail }
}

/// `x · Φ(x)`.
#[inline(always)]
pub fn gelu_scalar(x: f32) -> f32 {
    x * phi(x)
}

/// `Φ(x) + x · φ(x)`, GELU's derivative.
#[inline(always)]
pub fn gelu_grad_scalar(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    phi(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn erf64(x: f64) -> f64 {
        // the Taylor series, 80 terms: below 1e-9 off for |x| < 4 despite its cancellation
        let mut sum = 0.0;
        let mut term = x;
        for n in 0..80 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_and_its_derivative_match_the_exact_formulas() {
        // |x| ≤ 5.5 keeps x/√2 inside the reference series' range
        for i in 0..=1100 {
            let x = -5.5 + i as f64 * 0.01;
            let cdf = 0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2));
            let want = x * cdf;
            let dwant = cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let got = gelu_scalar(x as f32) as f64;
            let dgot = gelu_grad_scalar(x as f32) as f64;
            assert!(
                (got - want).abs() < 1e-6 * (1.0 + x.abs()),
                "gelu({x}) = {got}, want {want}"
            );
            assert!(
                (dgot - dwant).abs() < 1e-6 * (1.0 + x.abs()),
                "gelu'({x}) = {dgot}, want {dwant}"
            );
        }
    }

    #[test]
    fn the_flex_op_and_its_gradient_match_burns_gelu() {
        let device = Device::flex().autodiff();
        let data = Tensor::<3>::random(
            [3, 37, 701],
            Distribution::Normal(0.0, 3.0),
            &Device::flex(),
        )
        .to_data();
        let w = Tensor::<3>::random(
            [3, 37, 701],
            Distribution::Normal(0.0, 1.0),
            &Device::flex(),
        )
        .to_data();
        let run = |fused: bool| {
            let x = Tensor::<3>::from_data(data.clone(), &device).require_grad();
            let y = if fused {
                gelu(x.clone())
            } else {
                burn::tensor::activation::gelu(x.clone())
            };
            let g = (y.clone() * Tensor::from_data(w.clone(), &device))
                .sum()
                .backward();
            let dx = x.grad(&g).unwrap();
            (
                Tensor::<3>::from_data(y.to_data(), &Device::flex()),
                Tensor::<3>::from_data(dx.to_data(), &Device::flex()),
            )
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
        let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        assert!(diff(y, y_ref) < 1e-5);
        assert!(diff(dx, dx_ref) < 1e-5);
        // without autodiff too
        let x = Tensor::<3>::from_data(data, &Device::flex());
        assert!(diff(gelu(x.clone()), burn::tensor::activation::gelu(x)) < 1e-5);
    }
}
