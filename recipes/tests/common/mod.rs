//! Shared by the recipes' integration tests: a small synthetic dataset and a recipe with a
//! model small enough to train in seconds.

use std::path::Path;

use sonora_datasets::generate::{ShardConfig, SynthFile, synthesize};
use sonora_datasets::synth::SynthConfig;
use sonora_framework::model::ModelConfig;
use sonora_recipes::Recipe;
use sonora_recipes::config::ModelSection;

/// 1 s, 16×16 synthetic clips: `train` + 4 validation clips.
pub fn dataset(dir: &Path, train: u64, character_prob: f64) {
    let file = SynthFile {
        synth: SynthConfig {
            width: 16,
            height: 16,
            fps: 8.0,
            duration_s: 1.0,
            train,
            val: 4,
            test: 0,
            character_prob,
            ..SynthConfig::default()
        },
        shards: ShardConfig::default(),
    };
    synthesize(&file, dir, true, &|_| {}).unwrap();
}

/// A recipe over `data` writing into `out`: 8 frames of 16×16, `depth` joint blocks of
/// width 32, 150 steps at lr 3e-3.
pub fn recipe(data: &Path, out: &Path, depth: usize) -> Recipe {
    let mut r = Recipe::default();
    r.run.name = "t".into();
    r.run.out_dir = out.to_path_buf();
    r.data.path = data.to_path_buf();
    r.data.loader.batch_size = 4;
    r.data.loader.workers = 1;
    r.model = ModelSection {
        file: None,
        inline: Some(ModelConfig {
            name: "test".into(),
            frames: 8,
            height: 16,
            width: 16,
            fps: 8.0,
            sample_rate: 16000,
            patch_t: 4,
            patch_h: 8,
            patch_w: 8,
            audio_patch: 2000,
            ref_size: 16,
            d_model: 32,
            depth,
            heads: 2,
            mlp_ratio: 2,
            text_dim: 32,
            text_depth: 1,
            text_heads: 2,
            text_max_len: 16,
            vocab_size: 128,
            shift: None,
            audio_codec: Default::default(),
            audio_hop: None,
            audio_bands: None,
            image_cond: Default::default(),
        }),
    };
    r.optimizer.lr = 3e-3;
    r.schedule.warmup_steps = 5;
    r.train.steps = 150;
    r.train.log_every = 5;
    r.checkpoint.every = 50;
    r.checkpoint.keep_last = 2;
    r.sample.sampler.steps = 3;
    r
}
