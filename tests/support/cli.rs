//! Running the `sonora` binary in tests: from the repository root, with the caller's
//! `SONORA_*`, `MLFLOW_TRACKING_URI` and `RUST_LOG` removed so they cannot change a run.
//! Included by tests with `#[path]`.

use std::process::{Command, Output};

/// A `sonora` command with a clean environment.
pub fn sonora() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sonora"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("SONORA_") || k == "MLFLOW_TRACKING_URI" {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `sonora ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    sonora().args(args).output().expect("sonora runs")
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
