//! `sonora`: the command line of the sonora framework (thin: parsing and dispatch).

mod cmd;

use clap::{Parser, Subcommand};

/// mimalloc reuses the large column and frame buffers the loader churns through, where
/// glibc malloc maps, zeroes and faults in fresh pages for each (measured with
/// `sonora bench parquet`).
///
/// Wrapped to count live and peak heap bytes for the benchmarks' per-row peak memory.
#[global_allocator]
static GLOBAL: sonora_framework::perf::CountingAlloc<mimalloc::MiMalloc> =
    sonora_framework::perf::CountingAlloc(mimalloc::MiMalloc);

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in the bundled v2 and v3
/// headers; the test below checks it still reads a documented default: 1000 ms in v3, 10 in v2).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped instead of returning it to the OS after a delay: a training step
/// frees and re-allocates the same large activation buffers, and re-faulting them costs the
/// kernel a page-zeroing each time (≈ 12 % of a quickstart step, `perf record`). The
/// environment's `MIMALLOC_PURGE_DELAY` still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is a plain store mimalloc reads on its next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

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
    /// Register a checkpoint as a new version of a named model and move an alias to it
    /// (refused when it scores lower than the alias's current version, unless --force).
    Promote(cmd::registry::PromoteArgs),
    /// List registered models, show one's versions, or its alias history.
    #[command(subcommand)]
    Models(cmd::registry::ModelsCommand),
    /// Serve a model over the OpenAI Videos API (jobs, remix, extension, keys); `sonora
    /// serve keys create|list|revoke` manages its API keys.
    Serve(cmd::serve::ServeArgs),
    /// Verify the signed provenance of an MP4 the server wrote.
    #[command(subcommand)]
    Provenance(cmd::provenance::ProvenanceCommand),
    /// Measure loader, Parquet, training-step and sampling throughput.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

/// The log filter from `--log` (or `RUST_LOG`), refused when a directive is neither a
/// level nor names a target: `--log loud` would otherwise enable a target nobody logs to
/// and hide every line.
fn log_filter(spec: &str, from: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let target = d.split(['=', '[']).next().unwrap_or(d);
        let known = LEVELS.contains(&target.to_ascii_lowercase().as_str())
            || target.starts_with("sonora")
            || target.contains("::")
            || d.contains('=');
        if !known {
            return Err(format!(
                "{from} {spec:?}: `{d}` is not a log level ({}) nor a `target=level` directive (e.g. `sonora_datasets=debug`)",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(spec).map_err(|e| format!("{from} {spec:?}: {e}"))
}

/// An error and its causes on one line, each cause once: an error whose message already
/// quotes its source (as many I/O errors do) is not followed by that source again.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg
}

fn main() {
    use std::io::IsTerminal;
    keep_freed_memory();
    let cli = Cli::parse();
    let (spec, from) = match std::env::var("RUST_LOG") {
        Ok(v) => (v, "RUST_LOG"),
        Err(_) => (cli.log.clone(), "--log"),
    };
    let filter = match log_filter(&spec, from) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only for a terminal: logs piped to a file stay plain text
        .with_ansi(std::io::stderr().is_terminal())
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
        Command::Promote(a) => cmd::registry::promote(a),
        Command::Models(c) => cmd::registry::models(c),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Provenance(c) => cmd::provenance::run(c),
    };
    if let Err(e) = result {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_filters_are_levels_or_directives() {
        for ok in [
            "info",
            "debug",
            "sonora_datasets=debug",
            "warn,sonora_recipes=trace",
            "OFF",
        ] {
            assert!(super::log_filter(ok, "--log").is_ok(), "{ok}");
        }
        let e = super::log_filter("loud", "--log").unwrap_err();
        assert!(
            e.contains("`loud` is not a log level") && e.contains("--log"),
            "{e}"
        );
        assert!(super::log_filter("sonora=shouting", "--log").is_err());
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(io).context("x.json: No such file or directory");
        assert_eq!(super::one_line(&e), "x.json: No such file or directory");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::one_line(&e), "outer: inner");
    }

    #[test]
    fn the_purge_delay_option_index_is_mimallocs() {
        // SAFETY: reading an option has no preconditions.
        let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert!(
            v == 1000 || v == 10 || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some(),
            "option 15 reads {v}, not a purge_delay default (1000 in mimalloc v3, 10 in v2)"
        );
    }
}
