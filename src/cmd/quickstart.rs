//! `sonora quickstart`: everything from nothing — synthesise the quickstart dataset if it is
//! absent, train the quickstart recipe (continuing a previous quickstart run), sample clips
//! to MP4, and print where everything is and what to run next.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sonora_datasets::generate::{SynthFile, synthesize};
use sonora_datasets::manifest::Manifest;
use sonora_datasets::synth::SynthConfig;
use sonora_framework::config::load_layered;
use sonora_recipes::{Recipe, Resume, TrainOptions};

use super::train::{INTERRUPTED_EXIT, report, stop_flag, train_with_progress};

/// Arguments of `sonora quickstart`.
#[derive(Args)]
pub struct QuickstartArgs {
    /// The recipe to train.
    #[arg(long, default_value = "configs/recipes/quickstart.toml")]
    pub recipe: PathBuf,
    /// Data config used to synthesise the dataset when `data.path` holds none.
    #[arg(long, default_value = "configs/data/quickstart.toml")]
    pub data_config: PathBuf,
    /// Override a recipe key: `--set train.steps=100` (repeatable).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Start the run again instead of continuing an earlier quickstart run.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `sonora quickstart`.
pub fn run(a: QuickstartArgs) -> Result<()> {
    let recipe = Recipe::load(&a.recipe, &a.set).map_err(anyhow::Error::msg)?;
    let data = recipe.data.path.clone();
    let file: SynthFile = load_layered(Some(&a.data_config), &[])?;
    if data.join("manifest.json").exists() {
        println!("[1/3] dataset: {} (already there)", data.display());
        let manifest = Manifest::load(&data)?;
        let changed = synth_changes(&manifest.source["synth"], &file.synth);
        if !changed.is_empty() {
            eprintln!(
                "warning: {} was synthesised with other [synth] settings than {} ({}); \
                 training on it as it is. Remove it to synthesise the current world.",
                data.display(),
                a.data_config.display(),
                changed.join(", ")
            );
        }
    } else {
        println!(
            "[1/3] dataset: synthesising {} from {}",
            data.display(),
            a.data_config.display()
        );
        file.synth
            .validate()
            .with_context(|| a.data_config.display().to_string())?;
        let s = synthesize(&file, &data, false, &|_| {})?;
        println!(
            "      {} clips in {} shards",
            s.manifest.total_clips(),
            s.manifest.shards.len()
        );
    }

    println!(
        "[2/3] training {} ({} steps; Ctrl-C checkpoints and stops, rerunning continues)",
        a.recipe.display(),
        recipe.train.steps
    );
    let opts = TrainOptions {
        overwrite: a.overwrite,
        resume: (!a.overwrite).then_some(Resume::Auto),
        stop: Some(stop_flag()?),
    };
    let out = train_with_progress(&recipe, &opts, true)?;
    if out.interrupted {
        report(&out);
        eprintln!(
            "interrupted at step {}; run `sonora quickstart` again to continue",
            out.step
        );
        std::process::exit(INTERRUPTED_EXIT);
    }
    println!("[3/3] samples from the fixed prompts (MP4, H.264 + Opus):");
    report(&out);
    let ckpt = out.checkpoints.last().map_or_else(
        || "runs/quickstart/checkpoints/step-NNNNNN".into(),
        |c| c.display().to_string(),
    );
    println!();
    println!("next:");
    println!(
        "  sonora sample --checkpoint {ckpt} --prompt \"A green ball in the middle falls onto a wooden floor and bounces twice.\" --cfg 1.5 --out samples"
    );
    println!(
        "  tensorboard --logdir {}",
        out.run_dir.join("tb").display()
    );
    println!(
        "  sonora eval run --checkpoint {ckpt} --suite configs/eval/physics.toml   # physics + consistency scores"
    );
    println!(
        "  sonora eval dashboard {}     # scores over steps and clips, one HTML file",
        out.run_dir.display()
    );
    println!(
        "  sonora promote {ckpt} --name quickstart   # a registry version (after eval run: gated on its score)"
    );
    println!(
        "  sonora serve --model quickstart@production --config configs/serve/quickstart.toml   # the OpenAI Videos API on 127.0.0.1:8000 (key in serve-state/admin.key)"
    );
    println!(
        "  sonora train {} --set train.steps={} --resume auto   # train longer",
        a.recipe.display(),
        recipe.train.steps * 2
    );
    println!(
        "  sonora model info configs/model/small.toml           # the next size up (configs/recipes/pretrain-small.toml)"
    );
    Ok(())
}

/// The `[synth]` keys whose value in a dataset's manifest (`stored`, the settings it was
/// synthesised with) differs from `current`, as `key: stored → current`; a key the
/// manifest lacks (a dataset from before the key existed) counts as changed.
fn synth_changes(stored: &serde_json::Value, current: &SynthConfig) -> Vec<String> {
    // not a synthetic dataset (ingested media): nothing to compare
    if !stored.is_object() {
        return Vec::new();
    }
    let Ok(serde_json::Value::Object(now)) = serde_json::to_value(current) else {
        return Vec::new();
    };
    now.iter()
        .filter(|(k, v)| stored.get(k.as_str()) != Some(v))
        .map(|(k, v)| {
            let was = stored
                .get(k.as_str())
                .map_or("unset".into(), |w| w.to_string());
            format!("{k}: {was} → {v}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_changes_name_each_differing_or_missing_key() {
        let cfg = SynthConfig::default();
        let mut stored = serde_json::to_value(&cfg).unwrap();
        assert!(synth_changes(&stored, &cfg).is_empty());
        stored["drift_frac"] = serde_json::json!(0.06);
        stored.as_object_mut().unwrap().remove("textures");
        let c = synth_changes(&stored, &cfg);
        assert_eq!(c, ["drift_frac: 0.06 → 0.45", "textures: unset → true"]);
        assert!(synth_changes(&serde_json::Value::Null, &cfg).is_empty());
    }
}
