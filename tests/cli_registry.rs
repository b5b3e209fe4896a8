//! `sonora promote` and `sonora models`: checkpoints become numbered versions in a registry
//! directory (files checked by SHA-256), the alias moves only to a version that scores at
//! least as well on the run's eval report unless forced, every move is in the history, and
//! a failed promotion leaves the registry as it was.

use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use cli::{ok, run as sonora, text};

/// A tiny run with checkpoints at steps 2 and 4, each scored by a small suite.
fn scored_run(t: &Path) -> PathBuf {
    let data = t.join("data");
    let d = data.to_str().unwrap();
    cli::tiny_dataset(&data, 4, 1, 2, &[]);
    let recipe = t.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nname = \"r\"\nout_dir = \"{}\"\n{}[data]\npath = \"{d}\"\n[data.loader]\nbatch_size = 2\nworkers = 1\n[train]\nsteps = 4\n[checkpoint]\nevery = 2\nkeep_last = 5\n[sample]\nprompts = []\n",
            t.join("runs").display(),
            tiny_model::model_toml(32, 1)
        ),
    )
    .unwrap();
    ok(&["train", recipe.to_str().unwrap()]);
    let suite = t.join("suite.toml");
    std::fs::write(
        &suite,
        format!("[suite]\nname = \"physics\"\ndata = \"{d}\"\nsplit = \"test\"\nclips = 2\n[sampler]\nsteps = 2\n"),
    )
    .unwrap();
    let run = t.join("runs/r");
    for step in ["step-000002", "step-000004"] {
        let ck = run.join("checkpoints").join(step);
        ok(&[
            "eval",
            "run",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--suite",
            suite.to_str().unwrap(),
        ]);
    }
    run
}

/// Sets the normalised score in a checkpoint's report (to put the gate where the test wants).
fn set_score(run: &Path, step: &str, v: f64) {
    let p = run.join("eval/physics").join(step).join("report.json");
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    r["normalised"]["score"] = v.into();
    std::fs::write(&p, serde_json::to_vec(&r).unwrap()).unwrap();
}

#[test]
fn promotion_is_gated_on_the_eval_score_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = scored_run(t);
    set_score(&run, "step-000002", 0.5);
    set_score(&run, "step-000004", 0.1);
    let reg = t.join("registry");
    let r = reg.to_str().unwrap();
    let ck = |s: &str| {
        run.join("checkpoints")
            .join(s)
            .to_str()
            .unwrap()
            .to_string()
    };

    let out = ok(&[
        "promote",
        &ck("step-000002"),
        "--name",
        "tiny",
        "--registry",
        r,
        "--by",
        "ada",
    ]);
    assert!(
        out.contains("eval score: 0.500 (physics normalised"),
        "{out}"
    );
    assert!(
        out.contains("registered tiny@v1 (step 2)")
            && out.contains("moved tiny@production from nothing to v1"),
        "{out}"
    );
    // the version's files are the checkpoint's, byte for byte
    for f in ["model.safetensors", "tokenizer.json", "manifest.json"] {
        assert_eq!(
            std::fs::read(reg.join("tiny/v1").join(f)).unwrap(),
            std::fs::read(Path::new(&ck("step-000002")).join(f)).unwrap(),
            "{f}"
        );
    }

    // a lower score does not take production, and nothing is written
    let before = std::fs::read(reg.join("tiny/model.json")).unwrap();
    let o = sonora(&[
        "promote",
        &ck("step-000004"),
        "--name",
        "tiny",
        "--registry",
        r,
    ]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("from v1 (score 0.500) to v2 (score 0.100)") && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(std::fs::read(reg.join("tiny/model.json")).unwrap(), before);
    assert!(!reg.join("tiny/v2").exists());

    // another alias has no holder to beat; --force moves production anyway
    ok(&[
        "promote",
        &ck("step-000004"),
        "--name",
        "tiny",
        "--alias",
        "staging",
        "--registry",
        r,
    ]);
    let out = ok(&[
        "promote",
        &ck("step-000004"),
        "--name",
        "tiny",
        "--registry",
        r,
        "--force",
        "--by",
        "bob",
    ]);
    assert!(
        out.contains(
            "moved tiny@production from v1 (score 0.500) to v3, forced past a lower score"
        ),
        "{out}"
    );

    let list = ok(&["models", "list", "--registry", r]);
    assert!(
        list.contains("tiny: 3 version(s); production → v3, staging → v2"),
        "{list}"
    );
    let show = ok(&["models", "show", "tiny", "--registry", r]);
    assert!(
        show.contains("v1   step 2") && show.contains("score 0.500 (physics normalised)"),
        "{show}"
    );
    assert!(
        show.lines()
            .any(|l| l.contains("v3") && l.contains("[production]")),
        "{show}"
    );
    let hist = ok(&["models", "history", "tiny", "--registry", r]);
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines.len(), 3, "{hist}");
    assert!(
        lines[0].contains("tiny@production: - → v1 by ada, score 0.500"),
        "{hist}"
    );
    assert!(lines[1].contains("tiny@staging: - → v2"), "{hist}");
    assert!(
        lines[2].contains("tiny@production: v1 → v3 by bob, score 0.100, forced"),
        "{hist}"
    );
    assert!(
        lines[0].starts_with("20") && lines[0].contains('T') && lines[0].contains('Z'),
        "{hist}"
    );

    // bad input: an unknown model, a bad name, a damaged checkpoint
    let o = sonora(&["models", "show", "nope", "--registry", r]);
    assert!(
        !o.status.success() && text(&o).contains("no model `nope`") && text(&o).contains("tiny"),
        "{}",
        text(&o)
    );
    let o = sonora(&[
        "promote",
        &ck("step-000002"),
        "--name",
        "../x",
        "--registry",
        r,
    ]);
    assert!(
        !o.status.success() && text(&o).contains("model name `../x`"),
        "{}",
        text(&o)
    );
    let bad = t.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for e in std::fs::read_dir(ck("step-000002")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, bad.join(p.file_name().unwrap())).unwrap();
    }
    let w = bad.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let k = bytes.len() - 3;
    bytes[k] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    let o = sonora(&[
        "promote",
        bad.to_str().unwrap(),
        "--name",
        "tiny",
        "--registry",
        r,
    ]);
    assert!(
        !o.status.success() && text(&o).contains("model.safetensors"),
        "{}",
        text(&o)
    );
    assert!(ok(&["models", "list", "--registry", r]).contains("3 version(s)"));
}

#[test]
fn a_checkpoint_without_a_report_is_promoted_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = scored_run(t);
    // a copy outside any run directory has no reports
    let lone = t.join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    for e in std::fs::read_dir(run.join("checkpoints/step-000004")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, lone.join(p.file_name().unwrap())).unwrap();
    }
    let o = cli::sonora()
        .args(["promote", lone.to_str().unwrap(), "--name", "m"])
        .env("SONORA_REGISTRY", t.join("reg"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no eval report") && text(&o).contains("registered m@v1"),
        "{}",
        text(&o)
    );
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("reg/m/model.json")).unwrap()).unwrap();
    assert!(entry["versions"][0]["score"].is_null(), "{entry}");
    assert_eq!(entry["aliases"]["production"], 1);
}

// the tracking reader (`check`) is not needed here
#[allow(dead_code)]
#[path = "support/mlflow_server.rs"]
mod mlflow_server;

#[test]
fn with_an_mlflow_server_promotion_uses_its_model_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let server = mlflow_server::Server::start(t);
    let run = scored_run(t);
    set_score(&run, "step-000002", 0.5);
    set_score(&run, "step-000004", 0.1);
    let promote = |step: &str, force: bool| {
        let mut c = cli::sonora();
        c.args(["promote"])
            .arg(run.join("checkpoints").join(step))
            .args(["--name", "tiny"])
            .env("MLFLOW_TRACKING_URI", &server.uri);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let read = || -> serde_json::Value {
        let o = std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlflow_alias.py"))
            .args([&server.uri, "tiny", "production"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let o = promote("step-000002", false);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("registered tiny version 1 in MLflow"),
        "{}",
        text(&o)
    );
    let v = read();
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["tags"]["sonora.step"], "2");
    assert_eq!(v["tags"]["sonora.score"], "0.5");
    assert!(
        v["source"].as_str().unwrap().ends_with("/checkpoint"),
        "{v}"
    );
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"checkpoint/model.safetensors")
            && files.contains(&"checkpoint/manifest.json"),
        "{v}"
    );
    // a lower score leaves the alias and registers nothing
    let o = promote("step-000004", false);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("from v1 (score 0.500)") && text(&o).contains("(score 0.100)"),
        "{}",
        text(&o)
    );
    let v = read();
    assert_eq!(
        (v["version"].as_u64(), v["versions"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    // forced, it moves
    let o = promote("step-000004", true);
    assert!(o.status.success(), "{}", text(&o));
    let v = read();
    assert_eq!(
        (v["version"].as_u64(), v["versions"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    assert_eq!(v["tags"]["sonora.step"], "4");
}
