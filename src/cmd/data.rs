//! `sonora data …`: synth, ingest, import, stats, filter, validate, reindex.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sonora_datasets::generate::{SynthFile, synthesize};
use sonora_datasets::import::{self, ColumnMap, ImportOptions, SplitRule};
use sonora_datasets::ingest::{self, IngestFile};
use sonora_datasets::{filter, stats, validate};
use sonora_framework::config::load_layered;

/// Dataset commands. A DATASET is a directory of Parquet shards with its `manifest.json`.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Generate the synthetic physics world (objects under gravity, impacts with sound).
    Synth(SynthArgs),
    /// Turn a folder of media files into a dataset (clips cut, resampled, captioned).
    Ingest(IngestArgs),
    /// Import Parquet/Arrow video datasets made elsewhere (Hugging Face `datasets` exports
    /// and `save_to_disk` folders, polars/DuckDB files): video as struct<bytes, path>,
    /// a path or bytes; captions and other columns by name.
    Import(ImportArgs),
    /// Counts and histograms of a dataset (duration, resolution, captions, tags, characters).
    Stats(StatsArgs),
    /// Copy the clips matching a SQL WHERE expression into a new dataset.
    Filter(FilterArgs),
    /// Full scan: schema, checksums, decodability, declared vs actual shape and duration.
    Validate(ValidateArgs),
    /// Record shards rewritten on purpose (pyarrow, polars, DuckDB) in the manifest, after
    /// checking every row of every shard.
    Reindex(ReindexArgs),
}

/// Arguments of `sonora data synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// Data config (`configs/data/*.toml`): `[synth]` world settings and `[shards]` layout.
    #[arg(long)]
    pub config: PathBuf,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of training clips (overrides `synth.train`).
    #[arg(long)]
    pub clips: Option<u64>,
    /// World seed (overrides `synth.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override any config value: `--set synth.width=96` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Replace a dataset already in `--out`.
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `sonora data ingest`.
#[derive(Args)]
pub struct IngestArgs {
    /// Folder of media files (searched recursively).
    pub src: PathBuf,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Captions file: CSV with `file,caption` columns or JSONL with `file` and `caption`.
    #[arg(long)]
    pub captions: Option<PathBuf>,
    /// Ingest config (TOML, `[ingest]` section): clip length, fps, size, sample rate, splits.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any config value: `--set ingest.fps=12` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Replace a dataset already in `--out`.
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `sonora data import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Parquet or Arrow files, or folders searched for them.
    #[arg(required = true)]
    pub src: Vec<PathBuf>,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Source columns for sonora's fields: `caption=text,video=clip,clip_id=id,tags=labels`
    /// (unmapped fields try common names: video/clip/path, caption/text/prompt, clip_id/id, tags).
    #[arg(long, value_name = "FIELD=COLUMN,…", default_value = "")]
    pub map: String,
    /// Take each row's split from this column (train, val/validation/dev, test).
    #[arg(long, value_name = "COL", conflicts_with = "split")]
    pub split_by: Option<String>,
    /// Put every row in this split (train, val or test). Default: by a hash of the row's
    /// id with `ingest.val_fraction` / `ingest.test_fraction`.
    #[arg(long, value_name = "SPLIT")]
    pub split: Option<String>,
    /// Clip shape config (TOML, `[ingest]` and `[shards]` as for `data ingest`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any config value: `--set ingest.fps=12` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Replace a dataset already in `--out`.
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `sonora data stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Dataset directory.
    pub dataset: PathBuf,
    /// Print JSON instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `sonora data filter`.
#[derive(Args)]
pub struct FilterArgs {
    /// Source dataset directory.
    pub dataset: PathBuf,
    /// SQL WHERE expression over the metadata columns, e.g. `duration_s > 1.5 AND split = 'train'`.
    #[arg(long = "where", value_name = "EXPR")]
    pub where_expr: String,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a dataset already in `--out`.
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `sonora data reindex`.
#[derive(Args)]
pub struct ReindexArgs {
    /// Dataset directory.
    pub dataset: PathBuf,
}

/// Arguments of `sonora data validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Dataset directory.
    pub dataset: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `data` subcommand.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Synth(a) => synth(a),
        DataCommand::Ingest(a) => ingest(a),
        DataCommand::Import(a) => import_cmd(a),
        DataCommand::Reindex(a) => reindex(a),
        DataCommand::Stats(a) => stats(a),
        DataCommand::Filter(a) => filter(a),
        DataCommand::Validate(a) => validate(a),
    }
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn synth(a: SynthArgs) -> Result<()> {
    let mut sets = a.sets.clone();
    if let Some(n) = a.clips {
        sets.push(format!("synth.train={n}"));
    }
    if let Some(s) = a.seed {
        sets.push(format!("synth.seed={s}"));
    }
    let file: SynthFile = load_layered(Some(&a.config), &sets)?;
    file.synth
        .validate()
        .with_context(|| format!("{}", a.config.display()))?;
    let total = file.synth.train + file.synth.val + file.synth.test;
    let pb = progress_bar(total, "synthesising clips");
    let summary = synthesize(&file, &a.out, a.overwrite, &|n| pb.set_position(n))?;
    pb.finish_and_clear();
    let m = &summary.manifest;
    println!(
        "wrote {} clips ({}) in {} shards to {}",
        m.total_clips(),
        m.splits
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        m.shards.len(),
        a.out.display()
    );
    println!(
        "character references: {}/characters ({} characters)",
        a.out.display(),
        summary.characters
    );
    println!(
        "next: sonora data stats {0} && sonora data validate {0}",
        a.out.display()
    );
    Ok(())
}

/// The `[ingest]`/`[shards]` config of `data ingest` and `data import`: the file (or the
/// defaults) with `--set` overrides, checked.
fn ingest_config(config: Option<&std::path::Path>, sets: &[String]) -> Result<IngestFile> {
    let file: IngestFile = load_layered(config, sets)?;
    file.ingest
        .validate()
        .with_context(|| config.map_or("<defaults>".into(), |p| p.display().to_string()))?;
    Ok(file)
}

/// Prints `title`, then the first ten `lines` indented, then how many more the report holds.
fn print_first(title: String, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    println!("{title}");
    for l in lines.iter().take(10) {
        println!("  {l}");
    }
    if lines.len() > 10 {
        println!("  … and {} more (all in the report)", lines.len() - 10);
    }
}

fn ingest(a: IngestArgs) -> Result<()> {
    let file = ingest_config(a.config.as_deref(), &a.sets)?;
    let pb = progress_bar(0, "ingesting media files");
    let result = ingest::ingest(
        &a.src,
        &a.out,
        &file,
        a.captions.as_deref(),
        a.overwrite,
        &|done, total| {
            pb.set_length(total);
            pb.set_position(done);
        },
    );
    pb.finish_and_clear();
    let report = result?;
    println!(
        "ingested {} clips ({}) from {} of {} files in {} to {}",
        report.clips_total,
        report
            .clips_written
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.files_ingested,
        report.files_seen,
        a.src.display(),
        a.out.display()
    );
    print_first(
        format!("skipped {} files:", report.skipped.len()),
        report
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect(),
    );
    print_first(
        format!(
            "left alone {} files whose extension is not in ingest.extensions:",
            report.ignored.len()
        ),
        report.ignored.clone(),
    );
    let uncaptioned = report.ingested.iter().filter(|f| !f.captioned).count();
    if uncaptioned > 0 {
        println!("{uncaptioned} ingested files have no caption (tagged `uncaptioned`)");
    }
    if !report.unmatched_captions.is_empty() {
        println!(
            "{} caption entries matched no ingested file",
            report.unmatched_captions.len()
        );
    }
    println!("report: {}", report.report_path().display());
    println!(
        "next: sonora data stats {0} && sonora data validate {0}",
        a.out.display()
    );
    Ok(())
}

fn import_cmd(a: ImportArgs) -> Result<()> {
    let file = ingest_config(a.config.as_deref(), &a.sets)?;
    let split = match (a.split_by, a.split) {
        (Some(c), _) => SplitRule::Column(c),
        (None, Some(s)) => SplitRule::Fixed(s),
        (None, None) => SplitRule::Hash,
    };
    let opts = ImportOptions {
        file,
        map: ColumnMap::parse(&a.map)?,
        split,
        overwrite: a.overwrite,
    };
    let pb = ProgressBar::new_spinner();
    pb.set_message("importing rows");
    let result = import::import(&a.src, &a.out, &opts, &|rows| {
        pb.set_message(format!("importing rows: {rows} done"));
        pb.tick();
    });
    pb.finish_and_clear();
    let report = result?;
    println!(
        "imported {} clips ({}) from {} of {} rows in {} file(s) to {} ({:.1} s, {:.2} clips/s)",
        report.clips_total,
        report
            .clips_written
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.rows_imported,
        report.rows_seen,
        report.sources.len(),
        a.out.display(),
        report.seconds,
        report.clips_total as f64 / report.seconds.max(1e-9),
    );
    println!(
        "columns: {}",
        report
            .columns
            .iter()
            .map(|(k, v)| format!("{k} <- {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !report.columns_not_imported.is_empty() {
        println!(
            "not imported (schema v1 has no place for them): {}",
            report.columns_not_imported.join(", ")
        );
    }
    print_first(
        format!("skipped {} rows:", report.bad_rows.len()),
        report
            .bad_rows
            .iter()
            .map(|b| format!("{} row {}: {}", b.file, b.row, b.reason))
            .collect(),
    );
    println!("report: {}", a.out.join(import::REPORT_FILE).display());
    println!(
        "next: sonora data stats {0} && sonora data validate {0}",
        a.out.display()
    );
    Ok(())
}

fn reindex(a: ReindexArgs) -> Result<()> {
    let changed = sonora_datasets::reindex::reindex(&a.dataset)?;
    if changed.is_empty() {
        println!(
            "{}: the manifest already matches every shard",
            a.dataset.display()
        );
    }
    for c in &changed {
        println!(
            "{}: {} → {} bytes, {} → {} rows, sha256 {}… → {}…",
            c.path,
            c.before.bytes,
            c.after.bytes,
            c.before.rows,
            c.after.rows,
            &c.before.sha256[..12.min(c.before.sha256.len())],
            &c.after.sha256[..12],
        );
    }
    println!("next: sonora data validate {}", a.dataset.display());
    Ok(())
}

fn stats(a: StatsArgs) -> Result<()> {
    let s = stats::stats(&a.dataset)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.render_text());
    }
    Ok(())
}

fn filter(a: FilterArgs) -> Result<()> {
    let r = filter::filter(&a.dataset, &a.where_expr, &a.out, a.overwrite)?;
    println!(
        "{} of {} clips match `{}`; wrote {} ({}) in {} shards to {}",
        r.rows_matched,
        r.rows_scanned,
        r.where_expr,
        r.rows_matched,
        r.splits
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.shards_written,
        a.out.display()
    );
    Ok(())
}

fn validate(a: ValidateArgs) -> Result<()> {
    let pb = progress_bar(0, "validating rows");
    let result = validate::validate(&a.dataset, &|done, total| {
        pb.set_length(total);
        pb.set_position(done);
    });
    pb.finish_and_clear();
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    if !report.ok {
        bail!(
            "{} problems found in {}",
            report.problems.len(),
            a.dataset.display()
        );
    }
    Ok(())
}
