//! `sonora model info CONFIG`: parameter counts per component and FLOPs per sample.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use sonora_framework::model::ModelConfig;
use sonora_framework::model::flops::{forward_flops, param_counts_of};
use sonora_framework::model::memory::estimate_bytes;

/// Model commands.
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Parameter counts per component, token counts and FLOPs per sample of a model config.
    Info {
        /// A model config (e.g. configs/model/tiny.toml).
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `model` subcommand.
pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Info { config, json } => {
            let c = ModelConfig::from_file(&config)?;
            // counted from the config: nothing is allocated, so any valid config can be asked
            let params = param_counts_of(&c);
            let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
            let (infer, train) = (
                gib(estimate_bytes(&c, 1, false)),
                gib(estimate_bytes(&c, 1, true)),
            );
            let fwd = forward_flops(&c, 0);
            let fwd_char = forward_flops(&c, 1);
            if json {
                let p: serde_json::Map<String, serde_json::Value> = params
                    .iter()
                    .map(|(k, v)| (k.to_string(), u64::try_from(*v).unwrap_or(u64::MAX).into()))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "config": c, "params": p, "video_tokens": c.video_tokens(), "audio_tokens": c.audio_tokens(),
                        "ref_tokens_per_image": c.ref_tokens(), "forward_gflop_per_sample": fwd / 1e9,
                        "train_gflop_per_sample": 3.0 * fwd / 1e9, "forward_gflop_per_sample_with_1_ref": fwd_char / 1e9,
                        "memory_gib_sampling_one_clip": infer, "memory_gib_training_per_clip": train,
                    }))?
                );
                return Ok(());
            }
            println!("model `{}` ({})", c.name, config.display());
            println!(
                "  clip: {} frames of {}×{} at {} fps, {} Hz mono audio",
                c.frames, c.height, c.width, c.fps, c.sample_rate
            );
            println!(
                "  tokens: {} video ({}×{}×{} patches of {} values) + {} audio ({} samples each, {:?} of {} values); {} per reference image",
                c.video_tokens(),
                c.patch_t,
                c.patch_h,
                c.patch_w,
                c.video_patch_dim(),
                c.audio_tokens(),
                c.audio_patch,
                c.audio_codec,
                c.audio_token_dim(),
                c.ref_tokens()
            );
            println!(
                "  width {} × depth {}, {} heads of {}; text encoder {} × {}, vocab {}",
                c.d_model,
                c.depth,
                c.heads,
                c.head_dim(),
                c.text_dim,
                c.text_depth,
                c.vocab_size
            );
            println!("  parameters:");
            for (k, v) in &params {
                println!("    {k:<24} {:>12} ({:.2} M)", v, *v as f64 / 1e6);
            }
            println!(
                "  FLOPs per sample (matmuls): forward {:.2} GFLOP, training step ≈ {:.2} GFLOP (3× forward); with one reference image {:.2} GFLOP forward",
                fwd / 1e9,
                3.0 * fwd / 1e9,
                fwd_char / 1e9
            );
            println!(
                "  memory (estimate): {infer:.2} GiB to sample one clip, {train:.2} GiB to train on one clip (weights, AdamW state, activations)"
            );
            Ok(())
        }
    }
}
