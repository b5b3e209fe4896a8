//! `sonora bench …`: loader and Parquet read throughput, each beside its anchor.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sonora_datasets::Dataset;
use sonora_datasets::bench::{bench_loader, bench_parquet, has_dataset};
use sonora_datasets::generate::{SynthFile, synthesize};
use sonora_framework::config::load_layered;

/// Benchmarks; each prints its figures and the anchor measured in the same run.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Loader throughput in clips/s (decode + resize + batch) at 16×32×32 and 32×64×64,
    /// with 1 and 2 workers (anchor: the 1-worker run).
    Loader(BenchData),
    /// Parquet read throughput of sonora's reader against pyarrow on the same shards.
    Parquet(BenchData),
    /// Training-step time, tokens/s, achieved GFLOP/s and peak memory per model config
    /// (anchor: the same step computing the AdaLN conditioning for every token; with
    /// `--grad-checkpointing`, the same step without checkpointing).
    TrainStep(BenchModel),
    /// Sampling time per step (Euler + text guidance), tokens/s, GFLOP/s, peak memory.
    Sample(BenchModel),
    /// The server under load: concurrent clients' generation requests and status polls,
    /// batched workers against unbatched ones (the anchor); jobs lost or duplicated; one
    /// request's server overhead against `sonora sample`'s path.
    Serve(super::bench_serve::BenchServe),
    /// All-reduce bandwidth of sonora's collective layer over MPI against MPI_Allreduce
    /// itself (the anchor), 1 MB–256 MB; run as `mpirun -np 2 sonora bench allreduce`.
    #[cfg(feature = "mpi")]
    Allreduce(super::bench_allreduce::BenchAllreduce),
}

/// Which models to benchmark, and how.
#[derive(Args)]
pub struct BenchModel {
    /// Model configs, in order (heap MiB is each row's own peak; peak RSS the process's so
    /// far).
    #[arg(long, num_args = 1.., default_values = ["configs/model/tiny.toml", "configs/model/small.toml"])]
    pub models: Vec<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Backend (`flex`; `cuda`, `libtorch`, `vulkan` when built with their features).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// train-step: time gradient checkpointing against the same step without it.
    #[arg(long)]
    pub grad_checkpointing: bool,
}

fn bench_models(a: &BenchModel, sample: bool) -> Result<()> {
    use burn::module::Module;
    use burn::optim::AdamWConfig;
    use sonora_framework::diffusion::FlowConfig;
    use sonora_framework::model::ModelConfig;
    use sonora_framework::model::SonoraDit;
    use sonora_framework::perf::TrainStep;
    use sonora_framework::perf::{bench_sample, bench_train_step_with};
    use sonora_recipes::ema::Ema;
    use sonora_recipes::params::with_stable_ids;
    use sonora_recipes::step::Trainer;
    if sample && a.grad_checkpointing {
        anyhow::bail!(
            "--grad-checkpointing applies to `bench train-step` only (sampling has no backward pass)"
        );
    }
    let device = sonora_framework::device::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let mut reports = Vec::new();
    for m in &a.models {
        let c = ModelConfig::from_file(m)?;
        if sample {
            reports.push(
                bench_sample(&c, a.batch, a.steps.max(2), &device).map_err(anyhow::Error::msg)?,
            );
        } else {
            // the anchor first: the same step with the AdaLN conditioning of every token, or
            // (--grad-checkpointing) without checkpointing
            let pair = if a.grad_checkpointing {
                [(false, false), (false, true)]
            } else {
                [(true, false), (false, false)]
            };
            for (per_token, ckpt) in pair {
                // the recipes' own step: accumulation (1 micro-batch), global-norm clip 1.0,
                // AdamW, EMA 0.999
                let mut make = |m: SonoraDit| -> Box<dyn TrainStep> {
                    let dev = m.devices().into_iter().next().expect("a device");
                    let ema = Ema::new(&m, 0.999);
                    Box::new(Trainer::new(
                        with_stable_ids(m),
                        AdamWConfig::new().init(),
                        Some(ema),
                        FlowConfig::default(),
                        1,
                        1.0,
                        &dev,
                    ))
                };
                reports.push(
                    bench_train_step_with(
                        &c, a.batch, a.steps, per_token, ckpt, &device, &mut make,
                    )
                    .map_err(anyhow::Error::msg)?,
                );
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    println!(
        "{} on `{}`, batch {} ({} timed steps, median)",
        if sample {
            "sampling (per sampler step, 2 passes for CFG)"
        } else {
            "training step (forward + backward + AdamW)"
        },
        a.device,
        a.batch,
        a.steps
    );
    println!(
        "{:<12} {:<31} {:>7} {:>9} {:>10} {:>11} {:>8} {:>9} {:>9}",
        "model",
        "timed",
        "tokens",
        "ms/step",
        "tokens/s",
        "GFLOP/step",
        "GFLOP/s",
        "heap MiB",
        "peak RSS"
    );
    for r in &reports {
        println!(
            "{:<12} {:<31} {:>7} {:>9.1} {:>10.0} {:>11.2} {:>8.1} {:>9.0} {:>9.0}",
            r.model,
            r.what,
            r.tokens,
            r.ms_per_step,
            r.tokens_per_s,
            r.gflop_per_step,
            r.gflops,
            r.peak_heap_mib,
            r.peak_rss_mib
        );
    }
    println!(
        "(heap MiB: the live heap's peak during that row alone; peak RSS: the process's so far)"
    );
    if !sample {
        println!("(GFLOP/step counts the factored path's matmuls for both rows)");
        for pair in reports.chunks(2) {
            if let [anchor, other] = pair {
                if a.grad_checkpointing {
                    println!(
                        "{}: gradient checkpointing = {:.2}× the anchor's step time, {:.2}× its peak heap",
                        other.model,
                        other.ms_per_step / anchor.ms_per_step,
                        other.peak_heap_mib / anchor.peak_heap_mib
                    );
                } else {
                    println!(
                        "{}: factored AdaLN step = {:.2}× the per-token anchor's time ({:.2}× faster)",
                        other.model,
                        other.ms_per_step / anchor.ms_per_step,
                        anchor.ms_per_step / other.ms_per_step
                    );
                }
            }
        }
    }
    Ok(())
}

/// Where the benchmark's data comes from.
#[derive(Args)]
pub struct BenchData {
    /// Dataset to read; by default a synthetic one is made (once) under `--cache`.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Where the default benchmark dataset is kept.
    #[arg(long, default_value = ".bench/data")]
    pub cache: PathBuf,
    /// Config for the default benchmark dataset.
    #[arg(long, default_value = "configs/data/bench.toml")]
    pub config: PathBuf,
    /// Timed passes over the data.
    #[arg(long, default_value_t = 5)]
    pub passes: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchData {
    fn dataset(&self) -> Result<Dataset> {
        let dir = match &self.dataset {
            Some(d) => d.clone(),
            None => {
                if !has_dataset(&self.cache) {
                    let file: SynthFile = load_layered(Some(&self.config), &[])?;
                    eprintln!("making the benchmark dataset in {} …", self.cache.display());
                    synthesize(&file, &self.cache, true, &|_| {})?;
                }
                self.cache.clone()
            }
        };
        Dataset::open(&dir).with_context(|| format!("opening {}", dir.display()))
    }
}

/// Runs a `bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::TrainStep(a) => bench_models(&a, false)?,
        BenchCommand::Sample(a) => bench_models(&a, true)?,
        BenchCommand::Serve(a) => super::bench_serve::run(a)?,
        #[cfg(feature = "mpi")]
        BenchCommand::Allreduce(a) => super::bench_allreduce::run(a)?,
        BenchCommand::Loader(a) => {
            let ds = a.dataset()?;
            let runs = bench_loader(&ds, &[(16, 32, 32), (32, 64, 64)], &[1, 2], a.passes)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "loader throughput on {} ({} clips per pass)",
                    ds.root.display(),
                    ds.manifest.total_clips()
                );
                println!(
                    "{:<10} {:>7} {:>8} {:>9} {:>10} {:>14}",
                    "shape", "workers", "clips", "seconds", "clips/s", "vs 1 worker"
                );
                for r in &runs {
                    println!(
                        "{:<10} {:>7} {:>8} {:>9.2} {:>10.1} {:>13.2}x",
                        r.shape,
                        r.workers,
                        r.clips,
                        r.seconds,
                        r.clips_per_s,
                        r.speedup_vs_1_worker
                    );
                }
            }
        }
        BenchCommand::Parquet(a) => {
            let ds = a.dataset()?;
            let r = bench_parquet(&ds, a.passes)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "parquet read of {} ({:.1} MB, {} rows, best of {} passes)",
                    ds.root.display(),
                    r.bytes as f64 / 1e6,
                    r.rows,
                    r.passes
                );
                println!(
                    "  sonora (arrow-rs): {:.4} s  {:.1} MB/s",
                    r.sonora_s, r.sonora_mb_s
                );
                println!(
                    "  sonora, loader columns (no physics labels): {:.4} s  ratio to pyarrow all columns {:.2}",
                    r.sonora_loader_columns_s,
                    r.pyarrow_s / r.sonora_loader_columns_s
                );
                println!(
                    "  pyarrow (anchor):  {:.4} s  {:.1} MB/s",
                    r.pyarrow_s, r.pyarrow_mb_s
                );
                println!("  ratio sonora/pyarrow throughput: {:.2}", r.ratio);
            }
        }
    }
    Ok(())
}
