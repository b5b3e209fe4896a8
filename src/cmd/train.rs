//! `sonora train RECIPE`: runs a training recipe, printing progress and where everything went.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sonora_recipes::Recipe;

/// Arguments of `sonora train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Recipe file (e.g. configs/recipes/quickstart.toml).
    pub recipe: PathBuf,
    /// Override a key: `--set section.key=value` (repeatable).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Replace an existing run directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue a run (`auto` or a checkpoint path) — not implemented yet.
    #[arg(long)]
    pub resume: Option<String>,
}

/// Runs `sonora train`.
pub fn run(a: TrainArgs) -> Result<()> {
    if let Some(r) = a.resume {
        anyhow::bail!(
            "--resume {r}: resuming a run is not implemented yet; start a new run (or pass --overwrite)"
        );
    }
    let recipe = Recipe::load(&a.recipe, &a.set).map_err(anyhow::Error::msg)?;
    let bar = ProgressBar::new(recipe.train.steps);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}, {per_sec}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let out = sonora_recipes::train(&recipe, a.overwrite, &mut |s| {
        bar.set_position(s.step);
        bar.set_message(format!("loss {:.4} lr {:.2e}", s.loss, s.lr));
    })?;
    bar.finish();
    println!("run: {}", out.run_dir.display());
    if let (Some(a), Some(b)) = (out.val_loss_initial, out.val_loss_final) {
        println!("validation loss: {a:.4} → {b:.4}");
    }
    println!("skipped steps (non-finite loss): {}", out.skipped_steps);
    for c in &out.checkpoints {
        println!("checkpoint: {}", c.display());
    }
    for s in &out.samples {
        println!("sample: {}", s.display());
    }
    println!(
        "TensorBoard: tensorboard --logdir {}",
        out.run_dir.join("tb").display()
    );
    Ok(())
}
