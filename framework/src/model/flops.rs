//! Parameter counts per component and the FLOPs of one forward pass of a text → clip
//! sample (multiply-add = 2 FLOPs; matmuls only, which dominate). A training step costs
//! about 3× the forward.

use burn::module::Module;

use super::config::ModelConfig;
use super::dit::SonoraDit;

/// Parameters of each top-level component and in total.
pub fn param_counts(model: &SonoraDit) -> Vec<(&'static str, usize)> {
    let total = model.num_params();
    let text = model.text.num_params();
    vec![
        ("text encoder", text),
        ("diffusion transformer", total - text),
        ("total", total),
    ]
}

/// Parameters of each top-level component and in total, counted from the config alone
/// (no model is built, so any config can be counted; equal to [`param_counts`] of the
/// built model). `u128` so that no config that passes validation can overflow it.
pub fn param_counts_of(c: &ModelConfig) -> Vec<(&'static str, u128)> {
    let n = |v: usize| v as u128;
    let (d, dt) = (n(c.d_model), n(c.text_dim));
    // a linear layer with bias, a LayerNorm with scale and shift
    let lin = |i: u128, o: u128| i * o + o;
    let norm = |w: u128| 2 * w;
    let text_layer = 4 * lin(dt, dt) + lin(dt, 4 * dt) + lin(4 * dt, dt) + 2 * norm(dt);
    let text = n(c.vocab_size) * dt
        + n(c.text_max_len) * dt
        + n(c.text_depth.max(1)) * text_layer
        + norm(dt);
    let attn = |ctx: u128| lin(d, d) + lin(ctx, 2 * d) + lin(d, d);
    let block = 3 * norm(d)
        + attn(d)
        + attn(dt)
        + lin(d, d * n(c.mlp_ratio))
        + lin(d * n(c.mlp_ratio), d)
        + lin(d, 6 * d);
    let (pv, pa) = (n(c.video_patch_dim()), n(c.audio_token_dim()));
    let image = if c.image_cond == super::config::ImageCond::Context {
        d
    } else {
        0
    };
    let dit = lin(pv, d)
        + lin(pa, d)
        + lin(n(c.ref_patch_dim()), d)
        + 3 * d
        + image
        + lin(128, d)
        + lin(d, d)
        + lin(dt, d)
        + n(c.depth) * block
        + norm(d)
        + lin(d, 2 * d)
        + lin(d, pv)
        + lin(d, pa);
    vec![
        ("text encoder", text),
        ("diffusion transformer", dit),
        ("total", text + dit),
    ]
}

/// Forward FLOPs for one sample with `refs` reference images.
pub fn forward_flops(c: &ModelConfig, refs: usize) -> f64 {
    let (d, l, dt) = (c.d_model as f64, c.text_max_len as f64, c.text_dim as f64);
    let (nv, na, nr) = (
        c.video_tokens() as f64,
        c.audio_tokens() as f64,
        (refs * c.ref_tokens()) as f64,
    );
    let n = nv + na + nr;
    // distinct timesteps (see `levels`): the generated tokens', and 0 for references
    let k = if nr > 0.0 { 2.0 } else { 1.0 };
    let mm = |rows: f64, i: f64, o: f64| 2.0 * rows * i * o;
    let text_layer =
        mm(l, dt, 3.0 * dt) + 2.0 * mm(l, l, dt) + mm(l, dt, dt) + 2.0 * mm(l, dt, 4.0 * dt);
    let embed = mm(nv, c.video_patch_dim() as f64, d)
        + mm(na, c.audio_token_dim() as f64, d)
        + mm(nr, c.ref_patch_dim() as f64, d)
        + mm(k, 128.0, d)
        + mm(k, d, d);
    let block = mm(k, d, 6.0 * d) + mm(n, k, 6.0 * d) // AdaLN modulation, spread to tokens
        + mm(n, d, 3.0 * d) + 2.0 * mm(n, n, d) + mm(n, d, d) // self-attention
        + mm(n, d, d) + mm(l, dt, 2.0 * d) + 2.0 * mm(n, l, d) + mm(n, d, d) // cross-attention
        + 2.0 * mm(n, d, c.mlp_ratio as f64 * d); // MLP
    let head = mm(k, d, 2.0 * d)
        + mm(n, k, 2.0 * d)
        + mm(nv, d, c.video_patch_dim() as f64)
        + mm(na, d, c.audio_token_dim() as f64);
    c.text_depth as f64 * text_layer + embed + c.depth as f64 * block + head
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::prelude::Device;

    use super::*;
    use crate::model::config::{AudioCodec, ImageCond};

    #[test]
    fn counting_from_the_config_equals_counting_the_built_model() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/model");
        let base = ModelConfig::from_file(&dir.join("quickstart.toml")).unwrap();
        let tiny = ModelConfig::from_file(&dir.join("tiny.toml")).unwrap();
        let mut context = base.clone();
        context.image_cond = ImageCond::Context;
        let mut wave = base.clone();
        (wave.audio_codec, wave.audio_hop, wave.audio_bands) = (AudioCodec::Waveform, None, None);
        let mut deep = base.clone();
        (deep.text_depth, deep.mlp_ratio, deep.depth) = (3, 2, 2);
        let device = Device::flex();
        for c in [base, tiny, context, wave, deep] {
            c.validate().unwrap();
            let built: Vec<(&str, u128)> = param_counts(&SonoraDit::new(&c, &device))
                .into_iter()
                .map(|(k, v)| (k, v as u128))
                .collect();
            assert_eq!(param_counts_of(&c), built, "{c:?}");
        }
    }
}
