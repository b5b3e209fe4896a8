//! The joint video-audio diffusion transformer: video, audio and reference tokens in one
//! sequence, per-token timesteps, AdaLN-zero blocks with 3D RoPE self-attention and text
//! cross-attention, and per-modality heads.
//!
//! The heads predict the clean patch x̂0 and the model returns the velocity
//! `v̂ = (x_t − x̂0) / max(t, T_MIN)` (the x-prediction parameterisation of JiT, Li & He
//! 2025): a pixel patch (768 values in `tiny`) is wider than the transformer, and while
//! noise fills every one of those dimensions, clean patches lie on a low-dimensional
//! manifold a narrow network can reach. The loss stays the velocity MSE.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::prelude::*;

use super::config::{ImageCond, ModelConfig};
use super::layers::{
    Conditioning, JointBlock, TimestepEmbedding, apply_norm, plain_norm, zero_linear,
};
use super::levels::TimeLevels;
use super::rope::Rope;
use super::text::TextEncoder;

/// One forward pass's inputs (tokens already patchified, see [`super::patchify`]).
#[derive(Clone, Debug)]
pub struct DitInput {
    /// Noisy (or clean) video tokens `[B, Nv, video_patch_dim]`.
    pub video: Tensor<3>,
    /// Noisy (or clean) audio tokens `[B, Na, audio_token_dim]`.
    pub audio: Tensor<3>,
    /// Clean reference tokens `[B, Nr, ref_patch_dim]`, if a character is cast.
    pub refs: Option<Tensor<3>>,
    /// Clean in-context image tokens `[B, Ni, video_patch_dim]` (the given first frame held
    /// over a token's frames, `image_cond = "context"`), after the references.
    pub image: Option<Tensor<3>>,
    /// Per-token timesteps `[B, Nv + Na (+ Nr) (+ Ni)]`, 0 = clean, 1 = pure noise.
    pub t: Tensor<2>,
    /// Caption ids `[B, L]`.
    pub text_ids: Tensor<2, Int>,
    /// Caption padding `[B, L]`, true = pad.
    pub text_pad: Tensor<2, Bool>,
    /// Tokens other tokens must not attend to `[B, N]` (true = ignore), e.g. references
    /// dropped for guidance.
    pub token_mask: Option<Tensor<2, Bool>>,
    /// `t` factored into its distinct values, when the caller built `t` on the host
    /// ([`TimeLevels::from_host`]); `None` factors `t` in the forward pass, which reads it
    /// back from the device. Whoever changes `t` must reset this to `None` (or refactor).
    pub levels: Option<TimeLevels>,
}

/// Smallest timestep in the x-prediction → velocity conversion (as in JiT).
pub const T_MIN: f64 = 0.05;

/// Predicted velocities.
#[derive(Clone, Debug)]
pub struct DitOutput {
    /// `[B, Nv, video_patch_dim]`.
    pub video: Tensor<3>,
    /// `[B, Na, audio_token_dim]`.
    pub audio: Tensor<3>,
}

/// The model.
#[derive(Module, Debug)]
pub struct SonoraDit {
    /// Text encoder (trained jointly).
    pub text: TextEncoder,
    video_in: Linear,
    audio_in: Linear,
    ref_in: Linear,
    /// Learned modality embeddings `[3, d]`: video, audio, reference.
    modality: Param<Tensor<2>>,
    /// Added to the in-context image tokens on top of the video embedding `[1, d]`
    /// (`image_cond = "context"` only), so they differ from the clip's first row.
    image_emb: Option<Param<Tensor<2>>>,
    time: TimestepEmbedding,
    text_pool: Linear,
    blocks: Vec<JointBlock>,
    final_norm: LayerNorm,
    final_ada: Linear,
    video_out: Linear,
    audio_out: Linear,
    #[module(skip)]
    cfg: ModelConfig,
    /// Condition every token on its own timestep instead of factoring them (see
    /// [`super::levels`]): the reference path, kept as the benchmarks' anchor.
    #[module(skip)]
    per_token: bool,
}

impl SonoraDit {
    /// A freshly initialised model for `cfg` (seed the device first for reproducibility).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        Self {
            text: TextEncoder::new(cfg, device),
            video_in: LinearConfig::new(cfg.video_patch_dim(), d).init(device),
            audio_in: LinearConfig::new(cfg.audio_token_dim(), d).init(device),
            ref_in: LinearConfig::new(cfg.ref_patch_dim(), d).init(device),
            modality: Param::from_tensor(Tensor::random(
                [3, d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            image_emb: (cfg.image_cond == ImageCond::Context).then(|| {
                Param::from_tensor(Tensor::random(
                    [1, d],
                    burn::tensor::Distribution::Normal(0.0, 0.02),
                    device,
                ))
            }),
            time: TimestepEmbedding::new(d, device),
            text_pool: LinearConfig::new(cfg.text_dim, d).init(device),
            blocks: (0..cfg.depth)
                .map(|_| JointBlock::new(d, cfg.text_dim, cfg.heads, cfg.mlp_ratio, device))
                .collect(),
            final_norm: plain_norm(d, device),
            final_ada: zero_linear(d, 2 * d, device),
            video_out: zero_linear(d, cfg.video_patch_dim(), device),
            audio_out: zero_linear(d, cfg.audio_token_dim(), device),
            cfg: cfg.clone(),
            per_token: false,
        }
    }

    /// The same model computing the AdaLN conditioning for every token (the slower
    /// reference path; outputs equal the factored path's).
    pub fn with_per_token_conditioning(mut self) -> Self {
        self.per_token = true;
        self
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Velocity of every video and audio token. `rope` must match the token layout
    /// (see [`super::patchify::positions`]).
    pub fn forward(&self, x: DitInput, rope: &Rope) -> DitOutput {
        let nv = x.video.dims()[1];
        let na = x.audio.dims()[1];
        let emb = |i: usize| self.modality.val().narrow(0, i, 1).unsqueeze_dim::<3>(0);
        // tokens → [B, N, d]
        let (xv, xa, t) = (x.video.clone(), x.audio.clone(), x.t.clone());
        let mut parts = vec![
            self.video_in.forward(x.video) + emb(0),
            self.audio_in.forward(x.audio) + emb(1),
        ];
        if let Some(r) = x.refs {
            parts.push(self.ref_in.forward(r) + emb(2));
        }
        if let Some(img) = x.image {
            let mut img = self.video_in.forward(img) + emb(0);
            if let Some(e) = &self.image_emb {
                img = img + e.val().unsqueeze_dim::<3>(0);
            }
            parts.push(img);
        }
        // + absolute (t, h, w) embedding: [1, N, d]
        let h = Tensor::cat(parts, 1) + rope.absolute();
        // text: [B, L, text_dim]; pooled over non-pad positions → [B, 1, d]
        let text = self.text.forward(x.text_ids, x.text_pad.clone());
        let keep = x.text_pad.clone().bool_not().float().unsqueeze_dim::<3>(2);
        let pooled = (text.clone() * keep.clone()).sum_dim(1) / keep.sum_dim(1).clamp_min(1.0);
        // conditioning c = time(t) + pooled text: per distinct timestep [B, K, d] (usually
        // K ≤ 2: noisy and given tokens), else per token [B, N, d]
        let text_c = self.text_pool.forward(pooled);
        let levels = if self.per_token {
            None
        } else {
            x.levels.or_else(|| TimeLevels::factor(&x.t))
        };
        let c = match levels {
            Some(levels) => Conditioning::Levels(
                self.time.forward(levels.values.clone()) + text_c,
                Box::new(levels),
            ),
            None => Conditioning::PerToken(self.time.forward(x.t) + text_c),
        };
        let text_pad = x.text_pad;
        let mut h = h;
        for block in &self.blocks {
            h = block.forward(
                h,
                &c,
                text.clone(),
                text_pad.clone(),
                rope,
                x.token_mask.clone(),
            );
        }
        let m = c.modulation(&self.final_ada, 2);
        let h = apply_norm(&self.final_norm, h) * (m[1].clone() + 1.0) + m[0].clone();
        // heads predict the clean patches: [B, N, d] → x̂0 video [B, Nv, pv], audio [B, Na, pa]
        let x0_video = self.video_out.forward(h.clone().narrow(1, 0, nv));
        let x0_audio = self.audio_out.forward(h.narrow(1, nv, na));
        // velocity v̂ = (x_t − x̂0) / t, with t ≥ T_MIN; t: [B, N] → [B, Nv, 1], [B, Na, 1]
        let tv = t
            .clone()
            .narrow(1, 0, nv)
            .clamp_min(T_MIN)
            .unsqueeze_dim::<3>(2);
        let ta = t.narrow(1, nv, na).clamp_min(T_MIN).unsqueeze_dim::<3>(2);
        DitOutput {
            video: (xv - x0_video) / tv,
            audio: (xa - x0_audio) / ta,
        }
    }
}
