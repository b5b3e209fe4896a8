//! Shared by the framework's integration tests.
#![allow(dead_code)] // each test binary uses a part

use sonora_framework::model::ModelConfig;

/// A model small enough to train in a test: 8 frames of 16×16, 8 video + 8 audio tokens.
pub fn cfg() -> ModelConfig {
    ModelConfig {
        name: "test".into(),
        frames: 8,
        height: 16,
        width: 16,
        fps: 8.0,
        sample_rate: 4000,
        patch_t: 4,
        patch_h: 8,
        patch_w: 8,
        audio_patch: 500,
        ref_size: 16,
        d_model: 32,
        depth: 2,
        heads: 2,
        mlp_ratio: 2,
        text_dim: 32,
        text_depth: 1,
        text_heads: 2,
        text_max_len: 8,
        vocab_size: 64,
        shift: None,
        audio_codec: Default::default(),
        audio_hop: None,
        audio_bands: None,
        image_cond: Default::default(),
    }
}

/// The backend the model tests run on: `SONORA_TEST_DEVICE` (`flex` by default; `libtorch`
/// in a `--features tch` build, see scripts/build_tch.sh).
pub fn device() -> burn::prelude::Device {
    let name = std::env::var("SONORA_TEST_DEVICE").unwrap_or_else(|_| "flex".into());
    sonora_framework::device::parse_device(&name)
        .unwrap_or_else(|e| panic!("SONORA_TEST_DEVICE: {e}"))
}
