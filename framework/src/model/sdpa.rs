//! Scaled dot-product attention on the `flex` CPU backend: one operation per (batch, head),
//! forward and backward, instead of the chain of whole-tensor operations burn's autodiff
//! records for attention.
//!
//! burn 0.22's autodiff has no attention backward: it differentiates a decomposition
//! (matmul, scale, mask fill, max, subtract, `exp`, sum, divide, matmul), each pass over
//! the whole `[B, H, N, M]` score tensor, single-threaded, with a scalar `expf`, and keeps
//! several of those tensors for the backward pass. Inference on flex takes its fused
//! attention, whose online softmax is also scalar. Here each (batch, head) is one task on
//! rayon's pool: two GEMMs (the `gemm` crate, which flex's matmul uses too) around a row
//! softmax with a vectorised `exp` (AVX2 when the CPU has it), reading `q`, `k`, `v` through
//! their strides and writing the output in `[B, N, H, d]` order, so the attention's
//! `swap_dims(1, 2).reshape([B, N, H·d])` that follows costs nothing. Like PyTorch's CPU
//! flash attention, the forward keeps only each row's log-sum-exp; the backward recomputes
//! the probabilities from it (one more GEMM) instead of storing `[B, H, N, M]`.
//!
//! Semantics are burn's [`burn::tensor::module::attention`] with a key mask: `true` keys
//! are ignored, and a row whose keys are all masked outputs zeros (and passes no gradient).
//! Every other backend (libtorch, CUDA, Vulkan) and every non-f32 tensor takes burn's own
//! attention; [`attention`] decides per call.

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

use super::blas::Operand;

/// Attention of `q` `[B, H, N, d]` over `k` `[B, H, M, d]`, `v` `[B, H, M, dv]`, keys with
/// `key_mask` `[B, M]` true ignored, scale `1/√d` → `[B, H, N, dv]`.
///
/// On `flex` (with or without autodiff) this is the fused kernel of this module; `None` is
/// returned for any other backend or dtype, so the caller can take burn's attention.
pub fn attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    key_mask: Option<&Tensor<2, Bool>>,
) -> Option<Tensor<4>> {
    if !super::flex_kernels()
        || q.dtype() != DType::F32
        || k.dtype() != DType::F32
        || v.dtype() != DType::F32
    {
        return None;
    }
    let [b, _, _, d] = q.dims();
    let m = k.dims()[2];
    let keep = match key_mask {
        None => None,
        Some(km) => {
            let ignore = km.clone().float().into_data().convert::<f32>();
            let ignore = ignore.try_to_vec::<f32>().ok()?;
            if ignore.len() != b * m {
                return None;
            }
            Some(ignore.iter().map(|&x| 1.0 - x).collect())
        }
    };
    if q.dims().contains(&0) || k.dims().contains(&0) || v.dims().contains(&0) {
        return None;
    }
    let scale = 1.0 / (d as f32).sqrt();
    if let (Ok(q), Ok(k), Ok(v)) = (
        q.clone().try_into_primitive::<Flex>(),
        k.clone().try_into_primitive::<Flex>(),
        v.clone().try_into_primitive::<Flex>(),
    ) {
        let (o, _) = forward(&q, &k, &v, keep.as_deref(), scale, false);
        return Some(Tensor::from_primitive::<Flex>(o));
    }
    if let Some(o) = tracked::<NoCheckpointing>(q, k, v, &keep, scale) {
        return Some(o);
    }
    tracked::<BalancedCheckpointing>(q, k, v, &keep, scale)
}

/// The autodiff path for one checkpointing strategy; `None` when the tensors are not on
/// `Autodiff<Flex, C>`.
fn tracked<C: CheckpointStrategy>(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    keep: &Option<Vec<f32>>,
    scale: f32,
) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let q = q.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let k = k.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let v = v.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let out = match SdpaBackward
        .prepare::<C>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (o, lse) = forward(
                q.primitive(),
                k.primitive(),
                v.primitive(),
                keep.as_deref(),
                scale,
                true,
            );
            let state = SdpaState {
                q: prep.checkpoint(&q),
                k: prep.checkpoint(&k),
                v: prep.checkpoint(&v),
                keep: keep.clone(),
                lse,
                scale,
            };
            prep.finish(state, o)
        }
        OpsKind::UnTracked(prep) => {
            let (o, _) = forward(
                q.primitive(),
                k.primitive(),
                v.primitive(),
                keep.as_deref(),
                scale,
                false,
            );
            prep.finish(o)
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// What the backward pass needs: the inputs (checkpointed, so gradient checkpointing may
/// recompute rather than keep them), the key mask as 1/0 per `[B, M]` and each row's
/// log-sum-exp `[B, H, N]`.
#[derive(Clone, Debug)]
struct SdpaState {
    q: NodeId,
    k: NodeId,
    v: NodeId,
    keep: Option<Vec<f32>>,
    lse: Vec<f32>,
    scale: f32,
}

/// The backward step of [`attention`] on `Autodiff<Flex>`.
#[derive(Debug)]
struct SdpaBackward;

impl Backward<Flex, 3> for SdpaBackward {
    type State = SdpaState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad_out = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let q: FlexTensor = checkpointer.retrieve_node_output(s.q);
        let k: FlexTensor = checkpointer.retrieve_node_output(s.k);
        let v: FlexTensor = checkpointer.retrieve_node_output(s.v);
        let (dq, dk, dv) = backward(&q, &k, &v, &s, &grad_out);
        let [pq, pk, pv] = ops.parents;
        if let Some(node) = pq {
            grads.register::<Flex>(node.id, dq);
        }
        if let Some(node) = pk {
            grads.register::<Flex>(node.id, dk);
        }
        if let Some(node) = pv {
            grads.register::<Flex>(node.id, dv);
        }
    }
}

/// A `[B, H, rows, cols]` f32 tensor read through its strides.
#[derive(Clone, Copy)]
pub(super) struct View {
    ptr: *const f32,
    pub(super) dims: [usize; 4],
    strides: [isize; 4],
}

// SAFETY: a View points into a tensor the caller keeps alive for the whole operation and is
// only read.
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    /// Pointer to row 0 of head `(b, h)`.
    pub(super) fn head(&self, b: usize, h: usize) -> *const f32 {
        let off = b as isize * self.strides[0] + h as isize * self.strides[1];
        // SAFETY: (b, h) is within the dims, so the offset is within the storage.
        unsafe { self.ptr.offset(off) }
    }
    pub(super) fn row_stride(&self) -> isize {
        self.strides[2]
    }
    pub(super) fn col_stride(&self) -> isize {
        self.strides[3]
    }
}

/// The f32 elements of a contiguous tensor, in order (shared by [`super::gelu`] and
/// [`super::norm`]).
pub(super) fn elements(t: &FlexTensor) -> &[f32] {
    let s: &[f32] = t.storage();
    &s[t.layout().start_offset()..][..t.layout().num_elements()]
}

/// The tensor as a [`View`], copied to a contiguous one first if it has negative strides.
pub(super) fn view(t: &FlexTensor) -> (View, Option<FlexTensor>) {
    let owned = (!t.layout().has_positive_strides()).then(|| t.to_contiguous());
    let t = owned.as_ref().unwrap_or(t);
    let shape = t.layout().shape();
    let strides = t.layout().strides();
    let storage: &[f32] = t.storage();
    let v = View {
        // SAFETY: start_offset is within the storage.
        ptr: unsafe { storage.as_ptr().add(t.layout().start_offset()) },
        dims: [shape[0], shape[1], shape[2], shape[3]],
        strides: [strides[0], strides[1], strides[2], strides[3]],
    };
    (v, owned)
}

/// A `[B, rows, H, cols]` output buffer written by one task per (batch, head).
pub(super) struct Out {
    pub(super) data: Vec<f32>,
    pub(super) dims: [usize; 4],
}

#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: every task writes only its own (b, h) rows of the buffer.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl Out {
    /// Zeros for a `[B, H, rows, cols]` result stored as `[B, rows, H, cols]`.
    pub(super) fn new(b: usize, h: usize, rows: usize, cols: usize) -> Self {
        Self {
            data: vec![0.0; b * h * rows * cols],
            dims: [b, h, rows, cols],
        }
    }
    /// `(pointer to row 0 of (b, h), row stride)`.
    pub(super) fn head(ptr: OutPtr, dims: [usize; 4], b: usize, h: usize) -> (*mut f32, isize) {
        let [_, nh, rows, cols] = dims;
        let off = b * rows * nh * cols + h * cols;
        // SAFETY: within the buffer for (b, h) inside the dims.
        (unsafe { ptr.0.add(off) }, (nh * cols) as isize)
    }
    /// `[B, rows, H, cols]` storage viewed as `[B, H, rows, cols]`.
    pub(super) fn into_tensor(self) -> FlexTensor {
        let [b, h, rows, cols] = self.dims;
        FlexTensor::from_data(TensorData::new(self.data, [b, rows, h, cols])).transpose(1, 2)
    }
}

/// `dst[m×n] = beta · lhs[m×k] · rhs[k×n]` with explicit (column, row) strides.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    beta: f32,
) {
    // OpenBLAS when it is loaded and the layouts are row-major or transposed ones
    if let Some(blas) = super::blas::blas()
        && let (Some(a), Some(b), Some((c, ldc, false))) = (
            Operand::strided(lhs, m, k),
            Operand::strided(rhs, k, n),
            Operand::strided((dst.0.cast_const(), dst.1, dst.2), m, n)
                .map(|o| (dst.0, o.ld, o.trans)),
        )
    {
        // SAFETY: as below; this task's call runs on this thread.
        unsafe { blas.gemm_serial((m, n, k), a, b, beta, c, ldc) };
        return;
    }
    // SAFETY: the callers pass pointers and strides that address m×k, k×n and m×n
    // matrices inside live buffers, and dst does not overlap lhs or rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            false,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            0.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Forward pass → (`[B, H, N, dv]` output, and with `keep_lse` each row's log-sum-exp
/// `[B, H, N]`).
fn forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    keep: Option<&[f32]>,
    scale: f32,
    keep_lse: bool,
) -> (FlexTensor, Vec<f32>) {
    let ((qv, _q), (kv, _k), (vv, _v)) = (view(q), view(k), view(v));
    let [b, h, n, d] = qv.dims;
    let (m, dv) = (kv.dims[2], vv.dims[3]);
    let mut out = Out::new(b, h, n, dv);
    let mut lse = vec![0.0f32; if keep_lse { b * h * n } else { 0 }];
    let (optr, odims) = (OutPtr(out.data.as_mut_ptr()), out.dims);
    let lse_chunk = if keep_lse { n } else { 0 };
    let run = |(bh, lse_head): (usize, &mut [f32])| {
        let (bi, hi) = (bh / h, bh % h);
        let keep = keep.map(|k| &k[bi * m..(bi + 1) * m]);
        // [N, d] · [d, M] → scores [N, M]
        let mut p = vec![0.0f32; n * m];
        let (qp, kp) = (qv.head(bi, hi), kv.head(bi, hi));
        gemm_into(
            (n, m, d),
            (p.as_mut_ptr(), 1, m as isize),
            (qp, qv.col_stride(), qv.row_stride()),
            (kp, kv.row_stride(), kv.col_stride()),
            scale,
        );
        for (i, row) in p.chunks_exact_mut(m).enumerate() {
            let l = softmax_row(row, keep);
            if let Some(slot) = lse_head.get_mut(i) {
                *slot = l;
            }
        }
        // [N, M] · [M, dv] → [N, dv]
        let (op, ors) = Out::head(optr, odims, bi, hi);
        gemm_into(
            (n, dv, m),
            (op, 1, ors),
            (p.as_ptr(), 1, m as isize),
            (vv.head(bi, hi), vv.col_stride(), vv.row_stride()),
            1.0,
        );
    };
    if keep_lse {
        lse.par_chunks_mut(lse_chunk)
            .enumerate()
            .for_each(|(bh, l)| run((bh, l)));
    } else {
        (0..b * h).into_par_iter().for_each(|bh| run((bh, &mut [])));
    }
    (out.into_tensor(), lse)
}

/// Backward pass: the gradients of `q`, `k`, `v` given the output's, `[B, H, *, *]` each.
fn backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    s: &SdpaState,
    grad_out: &FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let ((qv, _q), (kv, _k), (vv, _v)) = (view(q), view(k), view(v));
    let (gv, _g) = view(grad_out);
    let [b, h, n, d] = qv.dims;
    let (m, dv) = (kv.dims[2], vv.dims[3]);
    let (mut dq, mut dk, mut dvo) = (
        Out::new(b, h, n, d),
        Out::new(b, h, m, d),
        Out::new(b, h, m, dv),
    );
    let (pq, pk, pv) = (
        OutPtr(dq.data.as_mut_ptr()),
        OutPtr(dk.data.as_mut_ptr()),
        OutPtr(dvo.data.as_mut_ptr()),
    );
    let (qd, kd, vd) = (dq.dims, dk.dims, dvo.dims);
    let keep = s.keep.as_deref();
    (0..b * h).into_par_iter().for_each(|bh| {
        let (bi, hi) = (bh / h, bh % h);
        let keep = keep.map(|k| &k[bi * m..(bi + 1) * m]);
        let lse = &s.lse[bh * n..(bh + 1) * n];
        let (qp, kp, vp, gp) = (
            qv.head(bi, hi),
            kv.head(bi, hi),
            vv.head(bi, hi),
            gv.head(bi, hi),
        );
        // P [N, M], recomputed from the scores and the kept log-sum-exp
        let mut p = vec![0.0f32; n * m];
        gemm_into(
            (n, m, d),
            (p.as_mut_ptr(), 1, m as isize),
            (qp, qv.col_stride(), qv.row_stride()),
            (kp, kv.row_stride(), kv.col_stride()),
            s.scale,
        );
        for (row, &l) in p.chunks_exact_mut(m).zip(lse) {
            probs_row(row, l, keep);
        }
        // dV = Pᵀ · dO: [M, N] · [N, dv]
        let (dvp, dvrs) = Out::head(pv, vd, bi, hi);
        gemm_into(
            (m, dv, n),
            (dvp, 1, dvrs),
            (p.as_ptr(), m as isize, 1),
            (gp, gv.col_stride(), gv.row_stride()),
            1.0,
        );
        // dP = dO · Vᵀ: [N, dv] · [dv, M]
        let mut ds = vec![0.0f32; n * m];
        gemm_into(
            (n, m, dv),
            (ds.as_mut_ptr(), 1, m as isize),
            (gp, gv.col_stride(), gv.row_stride()),
            (vp, vv.row_stride(), vv.col_stride()),
            1.0,
        );
        // dS = P ⊙ (dP − rowsum(P ⊙ dP))
        for (dsr, pr) in ds.chunks_exact_mut(m).zip(p.chunks_exact(m)) {
            softmax_grad_row(dsr, pr);
        }
        // dQ = scale · dS · K: [N, M] · [M, d]
        let (dqp, dqrs) = Out::head(pq, qd, bi, hi);
        gemm_into(
            (n, d, m),
            (dqp, 1, dqrs),
            (ds.as_ptr(), 1, m as isize),
            (kp, kv.col_stride(), kv.row_stride()),
            s.scale,
        );
        // dK = scale · dSᵀ · Q: [M, N] · [N, d]
        let (dkp, dkrs) = Out::head(pk, kd, bi, hi);
        gemm_into(
            (m, d, n),
            (dkp, 1, dkrs),
            (ds.as_ptr(), m as isize, 1),
            (qp, qv.col_stride(), qv.row_stride()),
            s.scale,
        );
    });
    (dq.into_tensor(), dk.into_tensor(), dvo.into_tensor())
}

/// Softmax of one score row in place over the kept keys (`keep[j]` 1 or 0), masked keys
/// 0; a row with no kept key becomes zeros. Returns the row's log-sum-exp (−∞ when empty).
fn softmax_row(row: &mut [f32], keep: Option<&[f32]>) -> f32 {
    let max = match keep {
        None => row_max(row),
        Some(k) => row
            .iter()
            .zip(k)
            .filter(|&(_, &k)| k != 0.0)
            .map(|(&s, _)| s)
            .fold(f32::NEG_INFINITY, f32::max),
    };
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return f32::NEG_INFINITY;
    }
    let sum = exp_shifted(row, max, keep);
    scale_row(row, 1.0 / sum);
    max + sum.ln()
}

/// One row of probabilities from its scores and log-sum-exp, in place.
fn probs_row(row: &mut [f32], lse: f32, keep: Option<&[f32]>) {
    if lse == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    exp_shifted(row, lse, keep);
}

/// Whether the AVX2 + FMA row kernels can run here (checked once).
pub(super) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The row's maximum (−∞ for an empty row).
fn row_max(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::max(row) };
    }
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `row *= a`.
fn scale_row(row: &mut [f32], a: f32) {
    row.iter_mut().for_each(|x| *x *= a);
}

/// `ds[j] = p[j] · (ds[j] − Σ p ⊙ ds)`, the softmax's backward for one row.
fn softmax_grad_row(ds: &mut [f32], p: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::softmax_grad(ds, p) };
    }
    let c: f32 = ds.iter().zip(p).map(|(g, p)| g * p).sum();
    ds.iter_mut().zip(p).for_each(|(g, &p)| *g = p * (*g - c));
}

/// `row[j] = exp(row[j] − shift) · keep[j]` → the row's sum.
fn exp_shifted(row: &mut [f32], shift: f32, keep: Option<&[f32]>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::exp_shifted(row, shift, keep) };
    }
    let mut sum = 0.0;
    for (j, x) in row.iter_mut().enumerate() {
        *x = exp(*x - shift) * keep.map_or(1.0, |k| k[j]);
        sum += *x;
    }
    sum
}

/// The row kernels in AVX2 + FMA, 8 lanes, scalar tails.
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// [`super::exp`] on 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::model) fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.336_55)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_floor_ps(_mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(0.5),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let er = _mm256_fmadd_ps(
            p,
            _mm256_mul_ps(r, r),
            _mm256_add_ps(r, _mm256_set1_ps(1.0)),
        );
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(er, _mm256_castsi256_ps(bits))
    }

    /// See [`super::exp_shifted`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_shifted(row: &mut [f32], shift: f32, keep: Option<&[f32]>) -> f32 {
        let len = row.len();
        let simd = len / 8 * 8;
        let sh = _mm256_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        let ptr = row.as_mut_ptr();
        let mut j = 0;
        while j < simd {
            // SAFETY: j + 8 <= len, for row and (same length) keep.
            unsafe {
                let mut e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr.add(j)), sh));
                if let Some(k) = keep {
                    e = _mm256_mul_ps(e, _mm256_loadu_ps(k.as_ptr().add(j)));
                }
                _mm256_storeu_ps(ptr.add(j), e);
                acc = _mm256_add_ps(acc, e);
            }
            j += 8;
        }
        let mut sum = hsum(acc);
        for j in simd..len {
            row[j] = super::exp(row[j] - shift) * keep.map_or(1.0, |k| k[j]);
            sum += row[j];
        }
        sum
    }

    /// See [`super::row_max`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn max(row: &[f32]) -> f32 {
        let simd = row.len() / 8 * 8;
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for j in (0..simd).step_by(8) {
            // SAFETY: j + 8 <= len.
            m = _mm256_max_ps(m, unsafe { _mm256_loadu_ps(row.as_ptr().add(j)) });
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: lanes holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
        lanes
            .iter()
            .chain(&row[simd..])
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// See [`super::softmax_grad_row`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_grad(ds: &mut [f32], p: &[f32]) {
        let len = ds.len();
        let simd = len / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        for j in (0..simd).step_by(8) {
            // SAFETY: j + 8 <= len for both rows.
            unsafe {
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(ds.as_ptr().add(j)),
                    _mm256_loadu_ps(p.as_ptr().add(j)),
                    acc,
                );
            }
        }
        let c = hsum(acc) + (simd..len).map(|j| ds[j] * p[j]).sum::<f32>();
        let cv = _mm256_set1_ps(c);
        for j in (0..simd).step_by(8) {
            // SAFETY: as above.
            unsafe {
                let g = _mm256_loadu_ps(ds.as_ptr().add(j));
                let pj = _mm256_loadu_ps(p.as_ptr().add(j));
                _mm256_storeu_ps(
                    ds.as_mut_ptr().add(j),
                    _mm256_mul_ps(pj, _mm256_sub_ps(g, cv)),
                );
            }
        }
        for j in simd..len {
            ds[j] = p[j] * (ds[j] - c);
        }
    }
}

/// `eˣ` for f32 without branches (so loops over it vectorise): `x = n·ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, `eʳ` by Cephes' degree-6 polynomial, `2ⁿ` built in the exponent bits.
/// Relative error below 2e-7 over the range; inputs below −87.3 (including −∞) give
/// ~1e-38 rather than 0, so masked entries are multiplied by 0 afterwards.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    er * two_n
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;

    const B: usize = 2;
    const H: usize = 3;
    const N: usize = 7;
    const M: usize = 11;
    const D: usize = 4;
    const DV: usize = 5;

    /// Batch 0 ignores three keys; batch 1 ignores every key, so its rows must be zeros.
    fn key_mask(device: &Device) -> Tensor<2, Bool> {
        let mut ignore = vec![false; B * M];
        for j in [1, 4, 10] {
            ignore[j] = true;
        }
        ignore[M..].fill(true);
        Tensor::from_data(TensorData::new(ignore, [B, M]), device)
    }

    /// `q` is made `[B, N, H, D]` and swapped, as the model's is, so the kernel reads strides.
    fn inputs(device: &Device, seed: u64) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let d = device.clone();
        d.seed(seed);
        let q =
            Tensor::<4>::random([B, N, H, D], Distribution::Normal(0.0, 2.0), &d).swap_dims(1, 2);
        let k = Tensor::<4>::random([B, H, M, D], Distribution::Normal(0.0, 2.0), &d);
        let v = Tensor::<4>::random([B, H, M, DV], Distribution::Normal(0.0, 1.0), &d);
        (q, k, v)
    }

    fn reference(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let mask = mask.map(|m| m.reshape([B, 1, 1, M]).expand([B, H, N, M]));
        burn_attention(q, k, v, mask, None, AttentionModuleOptions::default())
    }

    fn max_abs_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
        (a.clone() - b.clone()).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_std_over_the_softmax_range() {
        let mut worst = 0.0f32;
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert!(exp(f32::NEG_INFINITY) < 1.2e-38);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn the_row_kernels_match_plain_arithmetic() {
        // 19 entries: two 8-lane blocks and a scalar tail, on whichever path this CPU takes
        let scores: Vec<f32> = (0..19).map(|j| (j as f32 * 0.37).sin() * 9.0).collect();
        let keep: Vec<f32> = (0..19)
            .map(|j| if j % 5 == 3 { 0.0 } else { 1.0 })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(row_max(&scores), max);
        for keep in [None, Some(keep.as_slice())] {
            let mut row = scores.clone();
            let sum = exp_shifted(&mut row, max, keep);
            let want: Vec<f32> = (0..19)
                .map(|j| (scores[j] - max).exp() * keep.map_or(1.0, |k| k[j]))
                .collect();
            for (g, w) in row.iter().zip(&want) {
                assert!((g - w).abs() <= 3e-7 * w.abs().max(1e-30), "{g} vs {w}");
            }
            assert!((sum - want.iter().sum::<f32>()).abs() < 1e-5);
        }
        let p: Vec<f32> = (0..19).map(|j| j as f32 / 171.0).collect();
        let mut ds: Vec<f32> = (0..19).map(|j| (j as f32).cos()).collect();
        let c: f32 = ds.iter().zip(&p).map(|(g, p)| g * p).sum();
        let want: Vec<f32> = ds.iter().zip(&p).map(|(g, p)| p * (g - c)).collect();
        softmax_grad_row(&mut ds, &p);
        for (g, w) in ds.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn the_forward_pass_matches_burns_attention_with_and_without_a_key_mask() {
        let device = Device::flex();
        let (q, k, v) = inputs(&device, 1);
        let mask = key_mask(&device);
        for mask in [None, Some(mask)] {
            let ours = attention(&q, &k, &v, mask.as_ref()).expect("flex takes the kernel");
            let theirs = reference(q.clone(), k.clone(), v.clone(), mask.clone());
            assert_eq!(ours.dims(), [B, H, N, DV]);
            let diff = max_abs_diff(&ours, &theirs);
            assert!(
                diff < 1e-5,
                "forward differs by {diff:e} (mask: {})",
                mask.is_some()
            );
        }
        // the fully masked batch attends to nothing
        let ours = attention(&q, &k, &v, Some(&key_mask(&device))).unwrap();
        let row: f32 = ours.narrow(0, 1, 1).abs().sum().into_scalar();
        assert_eq!(row, 0.0);
    }

    /// Gradients of `Σ w ⊙ attention(q, k, v)` for q, k, v on an autodiff device.
    fn grads(device: &Device, fused: bool) -> [Tensor<4>; 4] {
        let (q, k, v) = inputs(&device.clone().without_autodiff(), 2);
        let w = Tensor::<4>::random(
            [B, H, N, DV],
            Distribution::Normal(0.0, 1.0),
            &device.clone().without_autodiff(),
        );
        let (q, k, v) = (
            Tensor::from_data(q.to_data(), device).require_grad(),
            Tensor::from_data(k.to_data(), device).require_grad(),
            Tensor::from_data(v.to_data(), device).require_grad(),
        );
        let mask = key_mask(device);
        let o = if fused {
            attention(&q, &k, &v, Some(&mask)).expect("autodiff flex takes the kernel")
        } else {
            reference(q.clone(), k.clone(), v.clone(), Some(mask))
        };
        let g = (o.clone() * Tensor::from_data(w.to_data(), device))
            .sum()
            .backward();
        let grad =
            |t: &Tensor<4>| Tensor::<4>::from_data(t.grad(&g).unwrap().to_data(), &Device::flex());
        [
            Tensor::from_data(o.to_data(), &Device::flex()),
            grad(&q),
            grad(&k),
            grad(&v),
        ]
    }

    #[test]
    fn gradients_match_burns_differentiated_attention_with_and_without_checkpointing() {
        let plain = Device::flex().autodiff();
        let checkpointed = Device::flex().autodiff().gradient_checkpointing();
        let want = grads(&plain, false);
        for device in [plain, checkpointed] {
            let got = grads(&device, true);
            for (name, (g, w)) in ["output", "dq", "dk", "dv"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                let scale = w.clone().abs().max().into_scalar::<f32>().max(1e-3);
                let diff = max_abs_diff(g, w);
                assert!(
                    diff / scale < 1e-5,
                    "{name} differs by {diff:e} (scale {scale:e})"
                );
            }
            // the fully masked batch gets no gradient at all
            let dq_masked: f32 = got[1].clone().narrow(0, 1, 1).abs().sum().into_scalar();
            assert_eq!(dq_masked, 0.0);
        }
    }
}
