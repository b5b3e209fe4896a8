//! `sonora`: the command line of the sonora framework (thin: parsing and dispatch).

mod cmd;

use clap::{Parser, Subcommand};

/// mimalloc reuses the large column and frame buffers the loader churns through, where
/// glibc malloc maps, zeroes and faults in fresh pages for each (measured with
/// `sonora bench parquet`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Train, evaluate and serve a joint video-audio diffusion transformer.
///
/// Start with `sonora quickstart`: it synthesises a small physics dataset, trains the tiny
/// quickstart model on the CPU and samples clips to MP4, then says what to run next.
#[derive(Parser)]
#[command(name = "sonora", version, about, long_about, propagate_version = true)]
struct Cli {
    /// Log level filter (e.g. `info`, `debug`, `sonora_datasets=debug`); also `RUST_LOG`.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything from nothing: synthesise data, train the quickstart recipe, sample MP4s.
    Quickstart(cmd::quickstart::QuickstartArgs),
    /// Make, import, inspect, filter and validate Parquet clip datasets.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Validate the evaluation metrics against perturbed ground truth; list metrics.
    #[command(subcommand)]
    Eval(cmd::eval::EvalCommand),
    /// Train a recipe (configs/recipes/*.toml).
    Train(cmd::train::TrainArgs),
    /// Generate clips from a checkpoint (text to video + audio) to MP4.
    Sample(cmd::sample::SampleArgs),
    /// Inspect model configs (parameters, tokens, FLOPs).
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Measure loader, Parquet, training-step and sampling throughput.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

fn main() {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Data(c) => cmd::data::run(c),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Eval(c) => cmd::eval::run(c),
        Command::Model(c) => cmd::model::run(c),
        Command::Quickstart(a) => cmd::quickstart::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Sample(a) => cmd::sample::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
