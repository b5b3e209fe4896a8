//! Building blocks of the joint transformer: attention with RoPE and key masks, the MLP,
//! the timestep embedding and the AdaLN-zero joint block.

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::levels::TimeLevels;
use super::rope::Rope;

/// A linear layer whose weights and bias start at zero (AdaLN-zero, output heads).
pub fn zero_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// The ε of [`plain_norm`].
pub const PLAIN_NORM_EPS: f32 = 1e-6;

/// LayerNorm without learned scale and shift (the modulation supplies them).
pub fn plain_norm(d: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d)
        .with_epsilon(PLAIN_NORM_EPS as f64)
        .init(device)
}

/// A [`plain_norm`] applied to `[B, N, d]` (fused forward and backward on flex, see
/// [`super::norm`]).
pub fn apply_norm(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    super::norm::layer_norm(norm, PLAIN_NORM_EPS, x)
}

/// Output columns `start..start + width` of `linear` applied to `x` `[B, N, d_in]` →
/// `[B, N, width]`, computed from those columns of the weight and bias.
///
/// The same values as narrowing `linear.forward(x)`, without its cost: burn differentiates a
/// narrow by zero-filling a tensor of the whole input's shape, here `[B, N, d_out]` per
/// slice, where a narrowed weight zero-fills only `[d_in, d_out]`.
pub fn linear_columns(linear: &Linear, x: Tensor<3>, start: usize, width: usize) -> Tensor<3> {
    // [d_in, d_out] → [d_in, width]
    let w = linear.weight.val().narrow(1, start, width);
    let b = linear
        .bias
        .as_ref()
        .map(|b| b.val().narrow(0, start, width));
    apply_linear(x, w, b)
}

/// `linear` applied to `x` `[B, N, d_in]` → `[B, N, d_out]`: OpenBLAS on flex (see
/// [`super::linear`]), burn's linear elsewhere.
pub fn project(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    apply_linear(
        x,
        linear.weight.val(),
        linear.bias.as_ref().map(|b| b.val()),
    )
}

/// `x·w + b` through [`super::linear::linear`] where it applies, else burn's linear.
fn apply_linear(x: Tensor<3>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<3> {
    if let Some(bias) = &b
        && let Some(y) = super::linear::linear(&x, &w, bias)
    {
        return y;
    }
    burn::tensor::module::linear(x, w, b)
}

/// Multi-head attention: queries from `x`, keys and values from `ctx` (self-attention
/// when they are the same tensor), optional RoPE on queries and keys, optional key mask.
#[derive(Module, Debug)]
pub struct Attention {
    q: Linear,
    kv: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    /// `d_model` queries over `d_ctx` context, `heads` heads.
    pub fn new(d_model: usize, d_ctx: usize, heads: usize, device: &Device) -> Self {
        Self {
            q: LinearConfig::new(d_model, d_model).init(device),
            kv: LinearConfig::new(d_ctx, 2 * d_model).init(device),
            out: LinearConfig::new(d_model, d_model).init(device),
            heads,
        }
    }

    /// `x`: `[B, N, d]`, `ctx`: `[B, M, d_ctx]`, `key_mask`: `[B, M]` true = ignore →
    /// `[B, N, d]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        ctx: Tensor<3>,
        rope: Option<(&Rope, &Rope)>,
        key_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let m = ctx.dims()[1];
        let (h, hd) = (self.heads, d / self.heads);
        // [B, N, d] → [B, H, N, hd]
        let q = project(&self.q, x).reshape([b, n, h, hd]).swap_dims(1, 2);
        // [B, M, d_ctx] → k, v [B, H, M, hd], each from its half of the kv projection's
        // columns (see [`linear_columns`])
        let [k, v] = [0, 1].map(|i| {
            linear_columns(&self.kv, ctx.clone(), i * d, d)
                .reshape([b, m, h, hd])
                .swap_dims(1, 2)
        });
        let (q, k) = match rope {
            Some((rq, rk)) => (rq.apply(q), rk.apply(k)),
            None => (q, k),
        };
        // flex: sonora's own kernel (forward and backward, see `sdpa`)
        let fused = super::sdpa::attention(&q, &k, &v, key_mask.as_ref());
        // libtorch under autodiff: PyTorch's fused attention and its backward (`torch_autograd`)
        #[cfg(feature = "tch")]
        let fused =
            fused.or_else(|| super::torch_autograd::attention(&q, &k, &v, key_mask.as_ref()));
        let o = fused.unwrap_or_else(|| {
            // [B, M] → [B, H, N, M], in the sense this backend's fused attention reads it
            let mask = key_mask.map(|km| {
                let km = if mask_is_inverted(&km.device()) {
                    km.bool_not()
                } else {
                    km
                };
                km.reshape([b, 1, 1, m]).expand([b, h, n, m])
            });
            attention(q, k, v, mask, None, AttentionModuleOptions::default())
        });
        // [B, H, N, hd] → [B, N, d]
        project(&self.out, o.swap_dims(1, 2).reshape([b, n, d]))
    }
}

/// Whether `device`'s fused attention takes burn's boolean mask the wrong way round.
///
/// burn defines the mask as true = ignore the key, but burn-tch 0.22.1 hands it to PyTorch's
/// `scaled_dot_product_attention` as it is, where true means *attend*: on `libtorch` and
/// `cuda` every masked attention (caption padding, dropped references, absent image rows)
/// would look only at the keys it should ignore. The PyTorch-twin parity test found it.
/// Rather than trusting a backend's name, each backend is probed once with a two-key
/// attention (query 1, keys ±10, values 1 and 2, key 0 masked: burn's meaning gives 2) and
/// the answer cached, so a fixed burn-tch needs no change here.
pub fn mask_is_inverted(device: &Device) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let key = format!("{device:?}");
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(&inverted) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return inverted;
    }
    let t =
        |v: Vec<f32>, n: usize| Tensor::<4>::from_data(TensorData::new(v, [1, 1, n, 1]), device);
    let mask =
        Tensor::<4, Bool>::from_data(TensorData::new(vec![true, false], [1, 1, 1, 2]), device);
    let out = attention(
        t(vec![1.0], 1),
        t(vec![10.0, -10.0], 2),
        t(vec![1.0, 2.0], 2),
        Some(mask),
        None,
        AttentionModuleOptions::default(),
    )
    .into_scalar::<f32>();
    let inverted = out < 1.5;
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, inverted);
    inverted
}

/// Two-layer GELU MLP.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// `d → ratio·d → d`.
    pub fn new(d: usize, ratio: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(d, d * ratio).init(device),
            fc2: LinearConfig::new(d * ratio, d).init(device),
        }
    }

    /// `[B, N, d]` → `[B, N, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        project(&self.fc2, super::gelu::gelu(project(&self.fc1, x)))
    }
}

/// Sinusoidal features of per-token timesteps followed by an MLP.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    fc1: Linear,
    fc2: Linear,
    freq_dim: usize,
}

impl TimestepEmbedding {
    /// Embeds into `d`.
    pub fn new(d: usize, device: &Device) -> Self {
        let freq_dim = 128;
        Self {
            fc1: LinearConfig::new(freq_dim, d).init(device),
            fc2: LinearConfig::new(d, d).init(device),
            freq_dim,
        }
    }

    /// `t`: `[B, N]` in [0, 1] → `[B, N, d]`.
    pub fn forward(&self, t: Tensor<2>) -> Tensor<3> {
        let [b, n] = t.dims();
        let half = self.freq_dim / 2;
        let f: Vec<f32> = (0..half)
            .map(|j| (-(10000f32.ln()) * j as f32 / half as f32).exp())
            .collect();
        let freqs =
            Tensor::<1>::from_data(TensorData::new(f, [half]), &t.device()).reshape([1, 1, half]);
        // [B, N, 1] · [1, 1, half] → [B, N, half]
        let args = t.mul_scalar(1000.0).reshape([b, n, 1]) * freqs;
        let feats = Tensor::cat(vec![args.clone().cos(), args.sin()], 2);
        self.fc2.forward(silu(self.fc1.forward(feats)))
    }
}

/// The AdaLN conditioning: per token, or per distinct timestep and spread to the tokens.
#[derive(Clone, Debug)]
pub enum Conditioning {
    /// One row per token `[B, N, d]`.
    PerToken(Tensor<3>),
    /// One row per distinct timestep `[B, K, d]` and the tokens' assignment to them.
    Levels(Tensor<3>, Box<TimeLevels>),
}

impl Conditioning {
    /// `linear(silu(c))` for every token, split into `parts` equal slices of its output
    /// width, each from its own columns of the weight ([`linear_columns`]): `parts` ×
    /// `[B, N, d_out / parts]`.
    pub fn modulation(&self, linear: &Linear, parts: usize) -> Vec<Tensor<3>> {
        let (c, levels) = match self {
            Self::PerToken(c) => (c, None),
            Self::Levels(c, levels) => (c, Some(levels)),
        };
        let h = silu(c.clone());
        let width = linear.weight.dims()[1] / parts;
        (0..parts)
            .map(|i| {
                let m = linear_columns(linear, h.clone(), i * width, width);
                match levels {
                    None => m,
                    // [B, K, width] → [B, N, width]
                    Some(levels) => levels.spread(m),
                }
            })
            .collect()
    }
}

/// One joint block: AdaLN-zero modulated self-attention over all tokens (with RoPE),
/// cross-attention to the text, and a modulated MLP.
#[derive(Module, Debug)]
pub struct JointBlock {
    norm1: LayerNorm,
    attn: Attention,
    norm_x: LayerNorm,
    cross: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    /// Per-token conditioning → shift, scale, gate for attention and MLP (zero-init).
    ada: Linear,
}

impl JointBlock {
    /// A block of width `d` attending to text of width `d_text`.
    pub fn new(d: usize, d_text: usize, heads: usize, mlp_ratio: usize, device: &Device) -> Self {
        Self {
            norm1: plain_norm(d, device),
            attn: Attention::new(d, d, heads, device),
            norm_x: plain_norm(d, device),
            cross: Attention::new(d, d_text, heads, device),
            norm2: plain_norm(d, device),
            mlp: Mlp::new(d, mlp_ratio, device),
            ada: zero_linear(d, 6 * d, device),
        }
    }

    /// `x`: `[B, N, d]`; `c`: its conditioning; `text`: `[B, L, d_text]`; masks true =
    /// ignore.
    pub fn forward(
        &self,
        x: Tensor<3>,
        c: &Conditioning,
        text: Tensor<3>,
        text_mask: Tensor<2, Bool>,
        rope: &Rope,
        token_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        // six [B, N, d]: shift, scale, gate for attention and for the MLP
        let m = c.modulation(&self.ada, 6);
        let modulate = |h: Tensor<3>, shift: &Tensor<3>, scale: &Tensor<3>| {
            h * (scale.clone() + 1.0) + shift.clone()
        };
        let h = modulate(apply_norm(&self.norm1, x.clone()), &m[0], &m[1]);
        let x = x + m[2].clone()
            * self
                .attn
                .forward(h.clone(), h, Some((rope, rope)), token_mask);
        let x = x.clone()
            + self
                .cross
                .forward(apply_norm(&self.norm_x, x), text, None, Some(text_mask));
        let h = modulate(apply_norm(&self.norm2, x.clone()), &m[3], &m[4]);
        x + m[5].clone() * self.mlp.forward(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The block with a random (not zero) modulation, so the test sees it.
    fn block(d: usize, dev: &Device) -> JointBlock {
        JointBlock {
            ada: LinearConfig::new(d, 6 * d).init(dev),
            ..JointBlock::new(d, 16, 2, 2, dev)
        }
    }

    #[test]
    fn a_masked_key_is_ignored_as_if_it_were_not_there() {
        // the attention with key 2 of 3 masked equals the attention over keys 0 and 1 alone
        // (on every backend: burn-tch reads the mask the other way, see `mask_is_inverted`)
        let dev = Device::flex();
        assert!(
            !mask_is_inverted(&dev),
            "flex reads burn's mask as burn defines it"
        );
        let (b, n, d) = (1, 2, 8);
        let attn = Attention::new(d, d, 2, &dev);
        let x = Tensor::<3>::random([b, n, d], Distribution::Normal(0.0, 1.0), &dev);
        let ctx = Tensor::<3>::random([b, 3, d], Distribution::Normal(0.0, 1.0), &dev);
        let mask =
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false, false, true], [1, 3]), &dev);
        let masked = attn.forward(x.clone(), ctx.clone(), None, Some(mask));
        let fewer = attn.forward(x.clone(), ctx.clone().narrow(1, 0, 2), None, None);
        let all = attn.forward(x, ctx, None, None);
        let diff =
            |a: &Tensor<3>, b: &Tensor<3>| (a.clone() - b.clone()).abs().max().into_scalar::<f32>();
        assert!(diff(&masked, &fewer) < 1e-5, "masked ≠ without the key");
        assert!(
            diff(&masked, &all) > 1e-3,
            "the masked key made no difference"
        );
    }

    #[test]
    fn per_level_conditioning_equals_per_token() {
        // some tokens given (two levels) and every token at one timestep (one level)
        check_levels(
            vec![0.0, 0.0, 0.6, 0.6, 0.6, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
            2,
        );
        check_levels(
            vec![0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
            1,
        );
    }

    fn check_levels(ts: Vec<f32>, expected_k: usize) {
        let dev = Device::flex();
        let (b, n, d, l) = (2, 6, 8, 3);
        let blk = block(d, &dev);
        let positions: Vec<[f32; 3]> = (0..n).map(|i| [i as f32, 0.0, 0.0]).collect();
        let rope = Rope::new(&positions, d / 2, d, &dev);
        let t = Tensor::<2>::from_data(TensorData::new(ts, [b, n]), &dev);
        let levels = TimeLevels::factor(&t).expect("levels");
        let k = levels.values.dims()[1];
        assert_eq!(k, expected_k, "distinct timesteps per example");
        let c_levels = Tensor::<3>::random([b, k, d], Distribution::Normal(0.0, 1.0), &dev);
        let per_token = Conditioning::PerToken(levels.spread(c_levels.clone()));
        let per_level = Conditioning::Levels(c_levels, Box::new(levels));
        let x = Tensor::<3>::random([b, n, d], Distribution::Normal(0.0, 1.0), &dev);
        let text = Tensor::<3>::random([b, l, 16], Distribution::Normal(0.0, 1.0), &dev);
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; b * l], [b, l]), &dev);
        let run = |c: &Conditioning| {
            blk.forward(x.clone(), c, text.clone(), pad.clone(), &rope, None)
                .to_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (a, bb) = (run(&per_token), run(&per_level));
        let plain = blk
            .forward(
                x.clone(),
                &Conditioning::PerToken(Tensor::zeros([b, n, d], &dev)),
                text.clone(),
                pad.clone(),
                &rope,
                None,
            )
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        // the modulation matters here, and both paths give it the same way
        let max_diff = |p: &[f32], q: &[f32]| {
            p.iter()
                .zip(q)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        let moved = max_diff(&a, &plain);
        assert!(moved > 1e-2, "modulation had no effect ({moved})");
        let diff = max_diff(&a, &bb);
        assert!(diff < 1e-5, "per-level and per-token differ by {diff}");
    }
}
