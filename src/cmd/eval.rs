//! `sonora eval …`: metric validation (checkpoint scoring arrives with the model).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use sonora_eval::validation::{ValidationConfig, validate_metrics};
use sonora_framework::fsutil::write_atomic;

/// Evaluation commands.
#[derive(Subcommand)]
pub enum EvalCommand {
    /// Check that every metric separates ground truth from the perturbation it targets
    /// (time reversal, teleport, vanish, freeze, audio shift, gravity scale, colour
    /// drift, flicker, character swap); prints AUC per metric.
    Validate(ValidateArgs),
    /// List every metric with its range, direction and meaning.
    Metrics,
}

/// Arguments of `sonora eval validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Ground-truth scenes to generate.
    #[arg(long, default_value_t = 40)]
    pub clips: usize,
    /// Scene seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the full report (every metric × perturbation) as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit non-zero when a targeted AUC is below this.
    #[arg(long, default_value_t = 0.9)]
    pub min_auc: f64,
}

/// Runs an `eval` subcommand.
pub fn run(cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Metrics => {
            for m in sonora_eval::metric::catalogue() {
                let dir = if m.higher_is_better {
                    "higher is better"
                } else {
                    "lower is better"
                };
                println!("{:<36} {:<28} {dir}\n    {}", m.name, m.range, m.measures);
            }
            Ok(())
        }
        EvalCommand::Validate(a) => {
            let cfg = ValidationConfig {
                clips: a.clips,
                seed: a.seed,
                ..ValidationConfig::default()
            };
            let report = validate_metrics(&cfg)?;
            print!("{}", report.render_text());
            if let Some(p) = &a.out {
                write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
                println!("full report: {}", p.display());
            }
            let weak: Vec<_> = report
                .targeted()
                .filter(|s| s.auc.is_nan() || s.auc < a.min_auc)
                .collect();
            if !weak.is_empty() {
                let names: Vec<_> = weak
                    .iter()
                    .map(|s| format!("{} vs {} (AUC {:.3})", s.metric, s.perturbation, s.auc))
                    .collect();
                bail!(
                    "{} targeted metric(s) below AUC {}: {}",
                    weak.len(),
                    a.min_auc,
                    names.join("; ")
                );
            }
            Ok(())
        }
    }
}
