//! `sonora eval …`: score checkpoints and datasets with a suite, compare, build the
//! dashboard, validate the metrics, list them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sonora_eval::baseline;
use sonora_eval::cases::Shape;
use sonora_eval::dashboard::{find_reports, write_dashboard};
use sonora_eval::report::{Report, compare};
use sonora_eval::runner::{Weights, default_out, eval_checkpoint, eval_data};
use sonora_eval::suite::SuiteFile;
use sonora_eval::validation::{UntrainedConfig, ValidationConfig, validate_metrics};
use sonora_framework::fsutil::write_atomic;
use sonora_framework::model::ModelConfig;
use sonora_framework::tracking::EventWriter;
use sonora_framework::tracking::mlflow::{MlflowRun, RunStatus};

/// Evaluation commands.
#[derive(Subcommand)]
pub enum EvalCommand {
    /// Sample a suite's cases from a checkpoint, score them, and write `report.json`,
    /// `clips.parquet` and the MP4s (default `<run>/eval/<suite>/step-N/`); logs the scores
    /// to the run's TensorBoard and to MLflow when `MLFLOW_TRACKING_URI` is set.
    Run(RunArgs),
    /// Score a dataset's own clips with a suite (the ceiling a model can reach).
    Data(DataArgs),
    /// Compare reports (files, eval directories, or every report of a run) and say which
    /// is best by the aggregate score: the mean over metrics of each metric's goodness in
    /// [0, 1] (1 = best; failed cases count 0).
    Compare(CompareArgs),
    /// Write `<run>/eval/dashboard.html`: scores over steps, a comparison table, playable clips.
    Dashboard(DashboardArgs),
    /// Check that every metric separates ground truth from the perturbation it targets
    /// (time reversal, teleport, vanish, freeze, audio shift, gravity scale, colour
    /// drift, flicker, character swap); prints AUC per metric.
    Validate(ValidateArgs),
    /// List every metric with its range, direction and meaning.
    Metrics,
    /// Score one MP4 on the consistency metrics (with `--references`, character identity
    /// too): a served clip checked by hand.
    Clip {
        /// The MP4.
        file: PathBuf,
        /// Reference images (PNG) of the character the clip should show.
        #[arg(long, num_args = 1..)]
        references: Vec<PathBuf>,
    },
}

/// Arguments of `sonora eval run`.
#[derive(Args)]
pub struct RunArgs {
    /// Checkpoint directory (…/checkpoints/step-NNNNNN).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Suite config (configs/eval/*.toml).
    #[arg(long)]
    pub suite: PathBuf,
    /// Override a suite key: `--set suite.clips=4` (repeatable).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Output directory (default `<run>/eval/<suite>/step-N`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Score freshly initialised weights of the checkpoint's config instead (the baseline).
    #[arg(long)]
    pub untrained: bool,
    /// Backend.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Where the untrained floor and data ceiling reports are cached (default
    /// `baselines/` beside the output directory).
    #[arg(long)]
    pub baselines: Option<PathBuf>,
    /// Skip the floor and ceiling (the report then has only the raw score).
    #[arg(long)]
    pub no_normalise: bool,
}

/// Arguments of `sonora eval data`.
#[derive(Args)]
pub struct DataArgs {
    /// Suite config; its `suite.data` and `suite.split` name the clips.
    #[arg(long)]
    pub suite: PathBuf,
    /// Override a suite key (repeatable).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Fit clips to this model config's frames, size and fps first, as training does (so the
    /// ceiling is comparable with that model's samples).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `sonora eval compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// `report.json` files or directories holding one.
    pub reports: Vec<PathBuf>,
    /// Also every report under `<RUN>/eval/`.
    #[arg(long)]
    pub run: Option<PathBuf>,
}

/// Arguments of `sonora eval dashboard`.
#[derive(Args)]
pub struct DashboardArgs {
    /// Run directory (reports are read from `<RUN_DIR>/eval/`).
    pub run_dir: PathBuf,
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
    /// Exit non-zero when a targeted AUC (of a metric or of the aggregate) is below this.
    #[arg(long, default_value_t = 0.9)]
    pub min_auc: f64,
    /// The model config whose untrained output the aggregate is held against.
    #[arg(long, default_value = "configs/model/quickstart.toml")]
    pub model: PathBuf,
    /// Scenes the untrained model samples (0 = skip that comparison).
    #[arg(long, default_value_t = 16)]
    pub untrained_clips: usize,
    /// Sampler steps for the untrained model.
    #[arg(long, default_value_t = 8)]
    pub untrained_steps: usize,
    /// Backend for the untrained model.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs an `eval` subcommand.
pub fn run(cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Run(a) => run_checkpoint(a),
        EvalCommand::Data(a) => {
            let suite = SuiteFile::load(&a.suite, &a.set).map_err(anyhow::Error::msg)?;
            let shape = match &a.model {
                Some(p) => {
                    let m = ModelConfig::from_file(p).map_err(anyhow::Error::msg)?;
                    Some(Shape::of(&m))
                }
                None => None,
            };
            let report = eval_data(&suite, shape, &a.out)?;
            print!("{}", report.render_text());
            println!("report: {}", a.out.join("report.json").display());
            Ok(())
        }
        EvalCommand::Compare(a) => {
            let mut reports = Vec::new();
            for p in &a.reports {
                let f = if p.is_dir() {
                    p.join("report.json")
                } else {
                    p.clone()
                };
                reports.push(Report::read(&f)?);
            }
            if let Some(r) = &a.run {
                reports.extend(find_reports(r)?.into_iter().map(|(_, r)| r));
            }
            if reports.is_empty() {
                bail!("nothing to compare: give report files or --run RUN_DIR");
            }
            print!("{}", compare(&reports));
            Ok(())
        }
        EvalCommand::Dashboard(a) => {
            let p = write_dashboard(&a.run_dir)?;
            println!("dashboard: {}", p.display());
            Ok(())
        }
        EvalCommand::Clip { file, references } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let d = sonora_framework::media::decode_mp4(&bytes)
                .with_context(|| format!("{}: not a playable MP4", file.display()))?;
            let clip = sonora_framework::Clip {
                audio: d
                    .audio
                    .unwrap_or_else(|| sonora_framework::Audio::silence(0, 1, 16000)),
                frames: d.frames,
                fps: d.fps,
                caption: String::new(),
                metadata: Default::default(),
            };
            let mut refs = Vec::new();
            for p in &references {
                let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                let (rgb, h, w) = sonora_framework::media::decode_png(&b)
                    .with_context(|| format!("{}: not a PNG", p.display()))?;
                refs.push((rgb, w, h));
            }
            let scores = sonora_eval::consistency::consistency_scores(
                &sonora_eval::consistency::ConsistencyInput {
                    clip: &clip,
                    references: &refs,
                    boundary: None,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&scores)?);
            Ok(())
        }
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
            let untrained = if a.untrained_clips > 0 {
                let model = ModelConfig::from_file(&a.model).map_err(anyhow::Error::msg)?;
                let device = sonora_framework::device::parse_device(&a.device)
                    .map_err(anyhow::Error::msg)?;
                Some(UntrainedConfig {
                    model,
                    clips: a.untrained_clips,
                    steps: a.untrained_steps,
                    seed: a.seed,
                    device,
                })
            } else {
                None
            };
            let cfg = ValidationConfig {
                clips: a.clips,
                seed: a.seed,
                untrained,
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
                .chain(report.aggregate.iter().filter(|s| s.targeted))
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

/// `sonora eval run`: the report, normalised between the untrained floor and the data
/// ceiling (computed once and cached, see `sonora_eval::baseline`).
fn run_checkpoint(a: RunArgs) -> Result<()> {
    let suite = SuiteFile::load(&a.suite, &a.set).map_err(anyhow::Error::msg)?;
    let device = sonora_framework::device::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&a.checkpoint, &suite.suite.name, a.untrained));
    let weights = if a.untrained {
        Weights::Untrained
    } else {
        Weights::Trained
    };
    let mut report = eval_checkpoint(
        &a.checkpoint,
        weights,
        &suite,
        &out,
        &device,
        &mut |i, n| {
            tracing::info!("sampled {i}/{n} cases");
        },
    )?;
    if !a.no_normalise {
        let cache = a
            .baselines
            .clone()
            .unwrap_or_else(|| baseline::default_cache(&out));
        let model = sonora_framework::checkpoint::read_manifest_unverified(&a.checkpoint)
            .with_context(|| format!("checkpoint {}", a.checkpoint.display()))?
            .model;
        let ceiling = baseline::ceiling(&suite, Shape::of(&model), &cache)?;
        say_baseline("data ceiling", &ceiling);
        let floor = if a.untrained {
            report.clone()
        } else {
            let f = baseline::floor(&a.checkpoint, &suite, &cache, &device, &mut |i, n| {
                tracing::info!("untrained floor: sampled {i}/{n} cases");
            })?;
            say_baseline("untrained floor", &f);
            f.report
        };
        report.normalise(&floor, &ceiling.report);
        report.write(&out)?;
    }
    print!("{}", report.render_text());
    println!("report: {}", out.join("report.json").display());
    println!("table:  {}", out.join("clips.parquet").display());
    if !a.untrained {
        log_scores(&a.checkpoint, &report, &out)?;
    }
    Ok(())
}

/// Says whether a baseline was computed or reused, and where it is.
fn say_baseline(what: &str, b: &baseline::Baseline) {
    let how = if b.computed { "computed" } else { "reused" };
    println!(
        "{what}: {how} {} (score {:.3})",
        b.dir.display(),
        b.report.score
    );
}

/// Logs a checkpoint's aggregate scores to its run's TensorBoard (`eval/<suite>/…` at the
/// checkpoint's step) and to MLflow when `MLFLOW_TRACKING_URI` names a server.
fn log_scores(ckpt: &Path, report: &Report, out: &Path) -> Result<()> {
    let step = report.step.unwrap_or(0);
    // the normalised score first (TensorBoard and MLflow list tags alphabetically:
    // `normalised_score` sorts before `physics.*` and `score`)
    let scalars: Vec<(String, f64)> = report
        .normalised_score()
        .map(|v| ("normalised_score".to_string(), v))
        .into_iter()
        .chain(std::iter::once(("score".to_string(), report.score)))
        .chain(report.metrics.iter().map(|(k, m)| (k.clone(), m.mean)))
        .chain(
            report
                .normalised
                .iter()
                .flat_map(|n| n.by_mode.iter())
                .map(|(k, v)| (format!("normalised_score/{k}"), *v)),
        )
        .filter(|(_, v)| v.is_finite())
        .collect();
    if let Some(run) = ckpt
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
        .and_then(Path::parent)
    {
        let mut tb = EventWriter::create(&run.join("tb"))?;
        for (k, v) in &scalars {
            tb.scalar(&format!("eval/{}/{k}", report.suite), step, *v)?;
        }
        println!(
            "TensorBoard: eval/{}/* at step {step} in {}",
            report.suite,
            run.join("tb").display()
        );
    }
    if let Ok(uri) = std::env::var("MLFLOW_TRACKING_URI")
        && !uri.is_empty()
    {
        let name = format!("eval-{}-step-{step}", report.suite);
        let mut m = MlflowRun::start(
            &uri,
            "sonora-eval",
            &name,
            &[
                ("sonora.checkpoint", ckpt.display().to_string()),
                ("sonora.suite", report.suite.clone()),
            ],
        )
        .context("MLflow")?;
        for (k, v) in &scalars {
            m.log_metric(k, *v, step);
        }
        let bytes = std::fs::read(out.join("report.json"))?;
        if let Err(e) = m.log_artifact("report.json", &bytes) {
            tracing::warn!("MLflow: report.json not uploaded: {e}");
        }
        let id = m.run_id.clone();
        m.finish(RunStatus::Finished);
        println!("MLflow run: {id}");
    }
    Ok(())
}
