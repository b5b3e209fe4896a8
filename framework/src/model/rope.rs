//! Rotary position embedding over three axes `(t, h, w)`: the head's rotation pairs are
//! split into a time group (half of them) and two spatial groups (a quarter each). Audio
//! tokens use the same time axis as video, so a sound and its frame share a time position;
//! reference tokens have `t = 0` (no time rotation).

use burn::prelude::*;

/// Precomputed rotations for one token layout.
#[derive(Clone, Debug)]
pub struct Rope {
    /// `[1, 1, N, P]`, P = head_dim / 2.
    cos: Tensor<4>,
    /// `[1, 1, N, P]`.
    sin: Tensor<4>,
    /// Fixed sinusoidal embedding of the same positions, `[1, N, d_model]`.
    absolute: Tensor<3>,
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
        let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, n, p]), device);
        Self {
            cos: t(cos),
            sin: t(sin),
            absolute: absolute_embedding(positions, d_model, device),
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
