//! RoPE's rotation on the `flex` CPU backend, forward and backward in one pass each.
//!
//! Written with burn's operations the rotation is two narrows, four products, a sum, a
//! difference and a concatenation over `[B, H, N, head_dim]`, each a single-threaded pass
//! over strided views, and its backward pass adds as many again plus a zero-filled
//! `[B, H, N, head_dim]` per narrow. Here each direction is one pass over rayon's pool that
//! reads the input through its strides: the backward pass is the rotation by −θ and needs
//! nothing from the forward pass but the table. Off `flex`, for other dtypes or shapes,
//! [`rotate`] returns `None` and the caller takes burn's operations.

use std::sync::Arc;

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

use super::sdpa::{Out, OutPtr, view};

/// The rotation angles of one token layout on the host: `cos θ` and `sin θ`, `[N, P]` each
/// (row-major), `P` = head_dim / 2.
#[derive(Debug)]
pub struct AngleTable {
    /// `cos θ`, `[N, P]`.
    pub cos: Vec<f32>,
    /// `sin θ`, `[N, P]`.
    pub sin: Vec<f32>,
    /// Tokens `N`.
    pub tokens: usize,
    /// Rotation pairs `P`.
    pub pairs: usize,
}

/// `x` `[B, H, N, 2P]` with each pair `(i, i + P)` of token `n` rotated by `θ[n, i]` → the
/// same shape; `None` off `flex`, for non-f32 tensors or a shape the table does not fit.
pub fn rotate(x: &Tensor<4>, table: &Arc<AngleTable>) -> Option<Tensor<4>> {
    let [_, _, n, hd] = x.dims();
    if !super::flex_kernels()
        || x.dtype() != DType::F32
        || n != table.tokens
        || hd != 2 * table.pairs
        || x.dims().contains(&0)
    {
        return None;
    }
    if let Ok(p) = x.clone().try_into_primitive::<Flex>() {
        return Some(Tensor::from_primitive::<Flex>(apply(&p, table, 1.0)));
    }
    if let Some(y) = tracked::<NoCheckpointing>(x, table) {
        return Some(y);
    }
    tracked::<BalancedCheckpointing>(x, table)
}

fn tracked<C: CheckpointStrategy>(x: &Tensor<4>, table: &Arc<AngleTable>) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let out = match RotateBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = apply(x.primitive(), table, 1.0);
            prep.finish(table.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(apply(x.primitive(), table, 1.0)),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// The backward step of [`rotate`] on `Autodiff<Flex>`: the output's gradient rotated by
/// −θ (the rotation is orthogonal), so its only state is the table.
#[derive(Debug)]
struct RotateBackward;

impl Backward<Flex, 1> for RotateBackward {
    type State = Arc<AngleTable>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, apply(&grad, &ops.state, -1.0));
        }
    }
}

/// `x` `[B, H, N, 2P]` rotated by `sign · θ` → a new `[B, H, N, 2P]` tensor stored as
/// `[B, N, H, 2P]` (the layout attention's projections produce), one task per (batch, head).
fn apply(x: &FlexTensor, table: &AngleTable, sign: f32) -> FlexTensor {
    let (xv, _owned) = view(x);
    let [b, h, n, hd] = xv.dims;
    let p = hd / 2;
    let mut out = Out::new(b, h, n, hd);
    let (optr, odims) = (OutPtr(out.data.as_mut_ptr()), out.dims);
    let (rs, cs) = (xv.row_stride(), xv.col_stride());
    (0..b * h).into_par_iter().for_each(|bh| {
        let (bi, hi) = (bh / h, bh % h);
        let (src, (dst, drs)) = (xv.head(bi, hi), Out::head(optr, odims, bi, hi));
        for t in 0..n {
            let (cos, sin) = (&table.cos[t * p..][..p], &table.sin[t * p..][..p]);
            // SAFETY: row t of head (b, h) lies inside x's storage (read through its
            // strides) and inside this task's rows of the output buffer.
            let (xr, yr) = unsafe {
                (
                    src.offset(t as isize * rs),
                    std::slice::from_raw_parts_mut(dst.offset(t as isize * drs), hd),
                )
            };
            let (y1, y2) = yr.split_at_mut(p);
            for j in 0..p {
                // SAFETY: j and j + P are below head_dim.
                let (x1, x2) = unsafe {
                    (
                        *xr.offset(j as isize * cs),
                        *xr.offset((j + p) as isize * cs),
                    )
                };
                let (c, s) = (cos[j], sign * sin[j]);
                y1[j] = x1 * c - x2 * s;
                y2[j] = x1 * s + x2 * c;
            }
        }
    });
    out.into_tensor()
}
