//! How much memory a model needs, estimated from its config before anything is allocated,
//! and checked against the memory limit ([`crate::budget`]).

use super::config::ModelConfig;
use super::flops::param_counts_of;

/// Bytes one f32 takes.
const F32: u128 = 4;

/// Estimated peak bytes of a model of `c` on a batch of `batch` clips: the f32 weights
/// (training: also their gradients and AdamW's two moments) plus activations — per token
/// and layer about `(10 + 2·mlp_ratio)·d_model` values kept for the backward pass (the
/// inputs of every matmul, norm and nonlinearity) and `heads · N²` attention scores;
/// inference keeps one layer's worth at a time, for the two halves of a CFG batch.
pub fn estimate_bytes(c: &ModelConfig, batch: usize, training: bool) -> u128 {
    let params = param_counts_of(c).last().map_or(0, |p| p.1);
    let n = (c.video_tokens() + c.audio_tokens() + c.text_max_len) as u128;
    let (b, d, r) = (batch.max(1) as u128, c.d_model as u128, c.mlp_ratio as u128);
    let per_layer = b * (n * d * (10 + 2 * r) + c.heads as u128 * n * n) * F32;
    if training {
        4 * params * F32 + c.depth as u128 * per_layer
    } else {
        params * F32 + 2 * per_layer
    }
}

/// Refuses a model of `c` for `batch` clips that would not fit the memory limit, naming the
/// keys that size it.
pub fn check_memory(c: &ModelConfig, batch: usize, training: bool) -> Result<(), String> {
    let what = format!(
        "{} model `{}` on a batch of {batch}",
        if training { "training" } else { "running" },
        c.name
    );
    crate::budget::check(
        &what,
        estimate_bytes(c, batch, training),
        "the model config's d_model, depth, mlp_ratio, frames, height or width (or the batch size)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_grows_with_width_and_batch_and_refuses_the_absurd() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/model");
        let c = ModelConfig::from_file(&dir.join("quickstart.toml")).unwrap();
        let small = estimate_bytes(&c, 4, true);
        assert!(small > estimate_bytes(&c, 1, true));
        assert!(small > estimate_bytes(&c, 4, false));
        // the quickstart trains in well under a GiB
        assert!(small < 1 << 30, "{small}");
        check_memory(&c, 4, true).unwrap();
        let mut wide = c.clone();
        (wide.d_model, wide.heads, wide.depth) = (1 << 16, 8, 1 << 10);
        wide.validate().unwrap();
        let e = check_memory(&wide, 1, false).unwrap_err();
        assert!(e.contains("d_model") && e.contains("GiB"), "{e}");
    }
}
