//! `sonora train RECIPE`: runs a training recipe, printing progress and where everything went.
//! SIGINT/SIGTERM write a checkpoint and stop (a second SIGINT stops at once).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sonora_recipes::{Recipe, Resume, TrainOptions, TrainOutcome};

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
    /// Continue a run: `auto` (its newest checkpoint, or from scratch if it has none) or a
    /// checkpoint directory.
    #[arg(long)]
    pub resume: Option<Resume>,
}

/// Exit status after a signal stopped training (128 + SIGTERM).
pub const INTERRUPTED_EXIT: i32 = 143;

/// Registers SIGINT/SIGTERM to set the returned flag; a second SIGINT exits at once.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    // order matters: the conditional shutdown sees the flag set by an earlier signal
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&flag))?;
    signal_hook::flag::register(SIGINT, Arc::clone(&flag))?;
    signal_hook::flag::register(SIGTERM, Arc::clone(&flag))?;
    Ok(flag)
}

/// Trains `recipe` with a progress bar (step, loss, lr, it/s, ETA; `show` false: none).
pub fn train_with_progress(
    recipe: &Recipe,
    opts: &TrainOptions,
    show: bool,
) -> Result<TrainOutcome> {
    let bar = if show {
        ProgressBar::new(recipe.train.steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} step {pos}/{len} {msg} {per_sec} [{elapsed} < ETA {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // without a terminal (logs, CI) the bar is hidden: print a line every log_every steps
    let lines = !std::io::stderr().is_terminal();
    let every = recipe.train.log_every.max(1);
    let mut first: Option<(u64, Instant)> = None;
    let out = sonora_recipes::train(recipe, opts, &mut |s| {
        let (from, t0) = *first.get_or_insert_with(|| {
            // a resumed run starts part-way
            bar.set_position(s.step.saturating_sub(1));
            bar.reset_eta();
            (s.step.saturating_sub(1), Instant::now())
        });
        bar.set_position(s.step);
        bar.set_message(format!("loss {:.4} lr {:.2e}", s.loss, s.lr));
        if lines && (s.step.is_multiple_of(every) || s.step == s.total) {
            let rate = (s.step - from) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            let eta = (s.total - s.step) as f64 / rate.max(1e-9);
            eprintln!(
                "step {}/{} loss {:.4} lr {:.2e} {:.2} it/s ETA {}m{:02}s",
                s.step,
                s.total,
                s.loss,
                s.lr,
                rate,
                (eta / 60.0) as u64,
                (eta % 60.0) as u64
            );
        }
    });
    bar.finish();
    Ok(out?)
}

/// Prints where a run's outputs are.
pub fn report(out: &TrainOutcome) {
    println!("run: {}", out.run_dir.display());
    if let Some(s) = out.resumed_from {
        println!("resumed from step {s}");
    }
    if let (Some(a), Some(b)) = (out.val_loss_initial, out.val_loss_final) {
        println!("validation loss: {a:.4} → {b:.4} (step {})", out.step);
    }
    println!("skipped steps (non-finite loss): {}", out.skipped_steps);
    for c in &out.checkpoints {
        println!("checkpoint: {}", c.display());
    }
    for s in &out.samples {
        println!("sample: {}", s.display());
    }
    if let Some(r) = &out.mlflow_run {
        println!("MLflow run: {r}");
    }
    println!(
        "TensorBoard: tensorboard --logdir {}",
        out.run_dir.join("tb").display()
    );
}

/// Runs `sonora train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let recipe = Recipe::load(&a.recipe, &a.set).map_err(anyhow::Error::msg)?;
    let opts = TrainOptions {
        overwrite: a.overwrite,
        resume: a.resume,
        stop: Some(stop_flag()?),
    };
    // under a launcher, rank 0 speaks for the run (the others only train)
    let rank0 = sonora_framework::distributed::LaunchEnv::detect().is_none_or(|e| e.rank == 0);
    let out = train_with_progress(&recipe, &opts, rank0)?;
    if rank0 {
        report(&out);
    }
    if out.interrupted {
        if rank0 {
            eprintln!(
                "interrupted at step {}; continue with: sonora train {} --resume auto",
                out.step,
                a.recipe.display()
            );
        }
        std::process::exit(INTERRUPTED_EXIT);
    }
    Ok(())
}
