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
