//! `sonora promote` and `sonora models …`: the embedded model registry
//! (`sonora_framework::registry`), with promotion gated on the checkpoint's eval score.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use sonora_eval::dashboard::find_reports;
use sonora_eval::report::Report;
use sonora_framework::checkpoint::read_manifest_unverified;
use sonora_framework::registry::{Registry, Score, utc};
use sonora_framework::registry_mlflow::promote_mlflow;

/// Where the registry is: `--registry`, else `SONORA_REGISTRY`, else `registry/`.
pub(crate) fn registry_dir(flag: &Option<PathBuf>) -> PathBuf {
    flag.clone()
        .or_else(|| std::env::var_os("SONORA_REGISTRY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("registry"))
}

/// Arguments of `sonora promote`.
#[derive(Args)]
pub struct PromoteArgs {
    /// Checkpoint directory (…/checkpoints/step-NNNNNN).
    pub checkpoint: PathBuf,
    /// The model's name in the registry.
    #[arg(long)]
    pub name: String,
    /// Alias to move to the new version.
    #[arg(long, default_value = "production")]
    pub alias: String,
    /// Move the alias even when the new version scores lower than the one it holds.
    #[arg(long)]
    pub force: bool,
    /// The eval suite whose score gates the promotion (default: `physics` when the run has
    /// it, else its only suite).
    #[arg(long)]
    pub suite: Option<String>,
    /// Registry directory (default `SONORA_REGISTRY`, else `registry/`).
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Who promotes (default `$USER`).
    #[arg(long)]
    pub by: Option<String>,
}

/// `sonora models …`.
#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Every registered model with its aliases.
    List {
        /// Registry directory.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// A model's versions (step, score, source) and aliases.
    Show {
        /// The model's name.
        name: String,
        /// Registry directory.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// Every alias move of a model: when, who, from which version to which, the score.
    History {
        /// The model's name.
        name: String,
        /// Registry directory.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
}

/// The eval score of the checkpoint at `ckpt` from its run's reports: the normalised score
/// when the report has one, else the raw one. `None` when the run has no report of its step.
fn checkpoint_score(ckpt: &Path, suite: Option<&str>) -> Result<Option<Score>> {
    let step = read_manifest_unverified(ckpt)?.step;
    let Some(run) = ckpt
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
        .and_then(Path::parent)
    else {
        return Ok(None);
    };
    let reports: Vec<(PathBuf, Report)> = match find_reports(run) {
        Ok(r) => r
            .into_iter()
            .filter(|(_, r)| !sonora_eval::report::is_reference(r) && r.step == Some(step))
            .collect(),
        Err(_) => return Ok(None),
    };
    let mut suites: Vec<&str> = reports.iter().map(|(_, r)| r.suite.as_str()).collect();
    suites.sort();
    suites.dedup();
    let pick = match suite {
        Some(s) if suites.contains(&s) => s,
        Some(s) => bail!(
            "--suite {s}: the run has no `{s}` report for step {step} (suites: {})",
            suites.join(", ")
        ),
        None if suites.contains(&"physics") => "physics",
        None => match suites.first() {
            Some(s) => s,
            None => return Ok(None),
        },
    };
    let (dir, r) = reports
        .iter()
        .find(|(_, r)| r.suite == pick)
        .expect("a report of the picked suite");
    let (value, kind) = match r.normalised_score() {
        Some(v) => (v, format!("{pick} normalised")),
        None => (r.score, format!("{pick} raw")),
    };
    Ok(Some(Score {
        value,
        kind,
        report: dir.join("report.json").display().to_string(),
    }))
}

/// Runs `sonora promote`.
pub fn promote(a: PromoteArgs) -> Result<()> {
    let reg = Registry::open(&registry_dir(&a.registry));
    let score = checkpoint_score(&a.checkpoint, a.suite.as_deref())?;
    match &score {
        Some(s) => println!("eval score: {:.3} ({}, {})", s.value, s.kind, s.report),
        None => tracing::warn!(
            "{} has no eval report in its run: promoted without a score (run `sonora eval run --checkpoint {} --suite configs/eval/physics.toml` to gate promotions)",
            a.checkpoint.display(),
            a.checkpoint.display()
        ),
    }
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
    if let Ok(uri) = std::env::var("MLFLOW_TRACKING_URI")
        && !uri.is_empty()
    {
        let p = promote_mlflow(&uri, &a.checkpoint, &a.name, &a.alias, score, a.force, &by)?;
        println!(
            "registered {} version {} in MLflow's model registry at {uri} (files in run {})",
            a.name, p.version, p.run_id
        );
        let from = p
            .previous
            .map_or("nothing".to_string(), |v| format!("v{v}"));
        let was = p
            .previous_score
            .map_or(String::new(), |s| format!(" (score {s:.3})"));
        println!(
            "moved {}@{} from {from}{was} to v{}",
            a.name, a.alias, p.version
        );
        return Ok(());
    }
    let p = reg.promote(&a.checkpoint, &a.name, Some(&a.alias), score, a.force, &by)?;
    println!(
        "registered {}@v{} (step {}) in {}",
        a.name,
        p.version.version,
        p.version.step,
        p.dir.display()
    );
    if let Some(m) = &p.moved {
        let from = m.from.map_or("nothing".to_string(), |v| format!("v{v}"));
        let was = p
            .previous_score
            .map_or(String::new(), |s| format!(" (score {s:.3})"));
        let forced = if m.forced {
            ", forced past a lower score"
        } else {
            ""
        };
        println!(
            "moved {}@{} from {from}{was} to v{}{forced}",
            a.name, m.alias, m.to
        );
    }
    println!("its versions: sonora models show {}", a.name);
    Ok(())
}

/// Runs a `models` subcommand.
pub fn models(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::List { registry } => {
            let reg = Registry::open(&registry_dir(&registry));
            let names = reg.models()?;
            if names.is_empty() {
                println!(
                    "no models in {} (add one with `sonora promote CHECKPOINT --name NAME`)",
                    reg.root().display()
                );
            }
            for n in names {
                let m = reg.model(&n)?;
                let aliases: Vec<String> = m
                    .aliases
                    .iter()
                    .map(|(a, v)| format!("{a} → v{v}"))
                    .collect();
                println!(
                    "{n}: {} version(s); {}",
                    m.versions.len(),
                    if aliases.is_empty() {
                        "no aliases".to_string()
                    } else {
                        aliases.join(", ")
                    }
                );
            }
            Ok(())
        }
        ModelsCommand::Show { name, registry } => {
            let reg = Registry::open(&registry_dir(&registry));
            let m = reg.model(&name)?;
            println!("{name} ({})", reg.root().join(&name).display());
            for v in &m.versions {
                let aliases: Vec<&str> = m
                    .aliases
                    .iter()
                    .filter(|(_, x)| **x == v.version)
                    .map(|(a, _)| a.as_str())
                    .collect();
                let score = v.score.as_ref().map_or("no score".to_string(), |s| {
                    format!("score {:.3} ({})", s.value, s.kind)
                });
                println!(
                    "  v{:<3} step {:<8} {score:<32} {} {}",
                    v.version,
                    v.step,
                    v.source,
                    if aliases.is_empty() {
                        String::new()
                    } else {
                        format!("[{}]", aliases.join(", "))
                    }
                );
            }
            Ok(())
        }
        ModelsCommand::History { name, registry } => {
            let reg = Registry::open(&registry_dir(&registry));
            let m = reg.model(&name)?;
            for h in &m.history {
                println!(
                    "{} {}@{}: {} → v{} by {}{}{}",
                    utc(h.at),
                    name,
                    h.alias,
                    h.from.map_or("-".to_string(), |v| format!("v{v}")),
                    h.to,
                    h.by,
                    h.score.map_or(String::new(), |s| format!(", score {s:.3}")),
                    if h.forced { ", forced" } else { "" }
                );
            }
            Ok(())
        }
    }
}
