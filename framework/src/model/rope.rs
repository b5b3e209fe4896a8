//! Rotary position embedding over three axes `(t, h, w)`: the head's rotation pairs are
//! split into a time group (half of them) and two spatial groups (a quarter each). Audio
//! tokens use the same time axis as video, so a sound and its frame share a time position;
//! reference tokens have `t = 0` (no time rotation).

use std::sync::Arc;

use burn::prelude::*;

use super::rotate::{AngleTable, rotate};

/// Precomputed rotations for one token layout.
#[derive(Clone, Debug)]
pub struct Rope {
    /// `[1, 1, N, P]`, P = head_dim / 2.
    cos: Tensor<4>,
    /// `[1, 1, N, P]`.
    sin: Tensor<4>,
    /// Fixed sinusoidal embedding of the same positions, `[1, N, d_model]`.
    absolute: Tensor<3>,
    /// `cos` and `sin` on the host, for flex's rotation kernel ([`super::rotate`]).
    table: Arc<AngleTable>,
}

/// Fixed sin/cos features of `(t, h, w)`: a third of the width per axis.
fn absolute_embedding(positions: &[[f32; 3]], d: usize, device: &Device) -> Tensor<3> {
    let per_axis = (d / 6) * 2; // sin + cos pairs per axis
    let mut v = Vec::with_capacity(positions.len() * d);
    for pos in positions {
        let start = v.len();
        for &x in pos {
            for j in 0..per_axis / 2 {
                let f = 100f64.powf(-(j as f64) / (per_axis / 2) as f64);
                v.push((x as f64 * f).sin() as f32);
                v.push((x as f64 * f).cos() as f32);
            }
        }
        v.resize(start + d, 0.0);
    }
    Tensor::from_data(TensorData::new(v, [1, positions.len(), d]), device)
}

/// Rotation frequencies `θ_j = base^(−j/n)` for one axis group of `n` pairs.
fn freqs(n: usize, base: f64) -> impl Iterator<Item = f64> {
    (0..n).map(move |j| base.powf(-(j as f64) / n as f64))
}

impl Rope {
    /// Rotations for `positions` (`[t, h, w]` per token) and `head_dim`, plus the absolute
    /// embedding of width `d_model`.
    pub fn new(positions: &[[f32; 3]], head_dim: usize, d_model: usize, device: &Device) -> Self {
        let p = head_dim / 2;
        let (nh, nw) = (p / 4, p / 4);
        let nt = p - nh - nw;
        let theta: Vec<(usize, f64)> = freqs(nt, 100.0)
            .map(|f| (0, f))
            .chain(freqs(nh, 100.0).map(|f| (1, f)))
            .chain(freqs(nw, 100.0).map(|f| (2, f)))
            .collect();
        let n = positions.len();
        let (mut cos, mut sin) = (Vec::with_capacity(n * p), Vec::with_capacity(n * p));
        for pos in positions {
            for &(axis, f) in &theta {
                let a = pos[axis] as f64 * f;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let t =
            |v: &[f32]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 1, n, p]), device);
        Self {
            cos: t(&cos),
            sin: t(&sin),
            absolute: absolute_embedding(positions, d_model, device),
            table: Arc::new(AngleTable {
                cos,
                sin,
                tokens: n,
                pairs: p,
            }),
        }
    }

    /// The absolute embedding `[1, N, d_model]`, added to the tokens before the first
    /// block: relative rotations alone leave a token of pure noise unable to tell where it
    /// is, and the mean frame (floor at the bottom) depends on where.
    pub fn absolute(&self) -> Tensor<3> {
        self.absolute.clone()
    }

    /// Rotates `x`: `[B, H, N, head_dim]` → same shape (pairs are `(i, i + P)`).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        match rotate(&x, &self.table) {
            Some(y) => y,
            None => self.apply_with_burn_ops(x),
        }
    }

    /// [`Rope::apply`] written with burn's operations (every backend but flex).
    fn apply_with_burn_ops(&self, x: Tensor<4>) -> Tensor<4> {
        let p = x.dims()[3] / 2;
        let x1 = x.clone().narrow(3, 0, p);
        let x2 = x.narrow(3, p, p);
        let (c, s) = (self.cos.clone(), self.sin.clone());
        Tensor::cat(
            vec![
                x1.clone() * c.clone() - x2.clone() * s.clone(),
                x1 * s + x2 * c,
            ],
            3,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// A layout of 2 frames × 3 × 2 patches plus a reference token at t = 0.
    fn positions() -> Vec<[f32; 3]> {
        let mut p: Vec<[f32; 3]> = (0..2)
            .flat_map(|t| {
                (0..3).flat_map(move |h| (0..2).map(move |w| [t as f32, h as f32, w as f32]))
            })
            .collect();
        p.push([0.0, 1.5, 0.5]);
        p
    }

    /// The rotation and the gradient of `Σ w ⊙ rotation(q)` for `q` read, as in
    /// attention, through the `[B, N, H, hd] → [B, H, N, hd]` swap of a projection.
    fn rotated(device: &Device, kernel: bool, q: &Tensor<4>, w: &Tensor<4>) -> [Tensor<4>; 2] {
        let host = Device::flex();
        let rope = Rope::new(&positions(), q.dims()[3], 24, device);
        let q = Tensor::<4>::from_data(q.to_data(), device).require_grad();
        let swapped = q.clone().swap_dims(1, 2);
        let y = if kernel {
            rope.apply(swapped)
        } else {
            rope.apply_with_burn_ops(swapped)
        };
        let g = (y.clone() * Tensor::from_data(w.to_data(), device))
            .sum()
            .backward();
        let to_host = |t: Tensor<4>| Tensor::<4>::from_data(t.to_data(), &host);
        [to_host(y), to_host(q.grad(&g).unwrap())]
    }

    #[test]
    fn flex_rotation_and_its_gradient_match_burns_operations() {
        let host = Device::flex();
        let (b, n, h, hd) = (2, positions().len(), 3, 16);
        let q = Tensor::<4>::random([b, n, h, hd], Distribution::Normal(0.0, 1.0), &host);
        let w = Tensor::<4>::random([b, h, n, hd], Distribution::Normal(0.0, 1.0), &host);
        let plain = Device::flex().autodiff();
        let want = rotated(&plain, false, &q, &w);
        for device in [plain, Device::flex().autodiff().gradient_checkpointing()] {
            let got = rotated(&device, true, &q, &w);
            for (name, (g, w)) in ["rotation", "gradient"].iter().zip(got.iter().zip(&want)) {
                let diff = (g.clone() - w.clone()).abs().max().into_scalar::<f32>();
                assert!(diff < 1e-5, "{name} differs by {diff:e}");
            }
        }
    }

    #[test]
    fn inference_rotation_matches_burns_operations_and_turns_the_pairs() {
        let dev = Device::flex();
        let n = positions().len();
        let rope = Rope::new(&positions(), 8, 24, &dev);
        let x = Tensor::<4>::random([1, 2, n, 8], Distribution::Normal(0.0, 1.0), &dev);
        let xs =
            Tensor::<4>::random([2, n, 3, 8], Distribution::Normal(0.0, 1.0), &dev).swap_dims(1, 2);
        let d = (rope.apply(xs.clone()) - rope.apply_with_burn_ops(xs.clone()))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d < 1e-6, "swapped differs by {d:e}");
        let ours = rope.apply(x.clone());
        let theirs = rope.apply_with_burn_ops(x.clone());
        let diff = (ours.clone() - theirs).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-6, "differs by {diff:e}");
        // token 0 sits at (0, 0, 0): unrotated; token 1 at w = 1 is turned
        let token = |t: &Tensor<4>, i: usize| t.clone().narrow(2, i, 1);
        let same0 = (token(&ours, 0) - token(&x, 0))
            .abs()
            .max()
            .into_scalar::<f32>();
        let moved1 = (token(&ours, 1) - token(&x, 1))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(same0 < 1e-6 && moved1 > 1e-3, "{same0} {moved1}");
        // each pair (i, i + P) keeps its length
        let norms = |t: &Tensor<4>| {
            let (a, b) = (t.clone().narrow(3, 0, 4), t.clone().narrow(3, 4, 4));
            a.clone() * a + b.clone() * b
        };
        let drift = (norms(&ours) - norms(&x)).abs().max().into_scalar::<f32>();
        assert!(drift < 1e-5, "pair lengths drift by {drift:e}");
    }
}
