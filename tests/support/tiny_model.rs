//! The `[model.inline]` table of a model small enough to train in a test: 8 frames of
//! 16×16 at 8 fps, 16 kHz audio, one text layer. Included by tests with `#[path]`.

/// The table, with the width and depth to use.
pub fn model_toml(d_model: usize, depth: usize) -> String {
    format!(
        r#"[model.inline]
name = "tiny-test"
frames = 8
height = 16
width = 16
fps = 8.0
sample_rate = 16000
patch_t = 4
patch_h = 8
patch_w = 8
audio_patch = 2000
ref_size = 16
d_model = {d_model}
depth = {depth}
heads = 2
mlp_ratio = 2
text_dim = 32
text_depth = 1
text_heads = 2
text_max_len = 16
vocab_size = 128
"#
    )
}
