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

/// Runs `python3 -c SCRIPT` (the test tools scripts/setup.sh --test installs), which must
/// succeed; its stdout.
#[allow(dead_code)] // not every test that includes this module needs it
pub fn python(script: &str) -> String {
    let o = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "python: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
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

/// Runs `sonora ARGS`, which must succeed; its stdout then stderr.
#[allow(dead_code)] // not every test that includes this module needs it
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "sonora {args:?}:\n{}", text(&o));
    text(&o)
}

/// Synthesises a quickstart-world dataset of 1 s, 16×16 clips into `dir`: `train`, `val`
/// and `test` clips, with any further `synth.key=value` settings.
#[allow(dead_code)]
pub fn tiny_dataset(dir: &std::path::Path, train: usize, val: usize, test: usize, extra: &[&str]) {
    let counts = [
        format!("synth.train={train}"),
        format!("synth.val={val}"),
        format!("synth.test={test}"),
    ];
    let mut args = vec![
        "data",
        "synth",
        "--config",
        "configs/data/quickstart.toml",
        "--out",
        dir.to_str().unwrap(),
    ];
    for s in counts
        .iter()
        .map(String::as_str)
        .chain(["synth.width=16", "synth.height=16", "synth.duration_s=1.0"])
        .chain(extra.iter().copied())
    {
        args.extend(["--set", s]);
    }
    ok(&args);
}
