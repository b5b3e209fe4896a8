//! `sonora eval run / data / compare / dashboard` end to end through the binary: a tiny
//! model trained for a few steps is scored at two checkpoints and untrained, beside the
//! dataset's own clips; the scores reach TensorBoard; compare names the best; the dashboard
//! renders in headless Chromium with its clips playable and nothing fetched from the network.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/cli.rs"]
mod cli;
#[path = "support/mlflow_server.rs"]
mod mlflow_server;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use cli::{run as sonora, text};

fn ok(args: &[&str]) -> String {
    let o = sonora(args);
    assert!(o.status.success(), "sonora {args:?}:\n{}", text(&o));
    text(&o)
}

/// A 1 s, 16×16 dataset whose test split has 3 clips; a tiny model trained 4 steps on it.
fn trained(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = tmp.join("data");
    let d = data.to_str().unwrap();
    ok(&[
        "data",
        "synth",
        "--config",
        "configs/data/quickstart.toml",
        "--out",
        d,
        "--set",
        "synth.train=8",
        "--set",
        "synth.val=2",
        "--set",
        "synth.test=3",
        "--set",
        "synth.width=16",
        "--set",
        "synth.height=16",
        "--set",
        "synth.duration_s=1.0",
        "--set",
        "synth.character_prob=0.5",
    ]);
    let recipe = tmp.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"[run]
name = "r"
out_dir = "{}"
{model}[data]
path = "{d}"
[data.loader]
batch_size = 4
workers = 1
[train]
steps = 4
[checkpoint]
every = 2
keep_last = 5
[sample]
prompts = []
"#,
            tmp.join("runs").display(),
            model = tiny_model::model_toml(32, 1)
        ),
    )
    .unwrap();
    ok(&["train", recipe.to_str().unwrap()]);
    (data, tmp.join("runs/r"))
}

#[test]
fn score_compare_and_dashboard_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = trained(tmp.path());
    let suite = tmp.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[suite]\nname = \"phys\"\ndata = \"{}\"\nsplit = \"test\"\nclips = 3\nmodes = [\"text\", \"image\", \"extension\", \"remix\", \"character\"]\n[sampler]\nsteps = 3\nbatch = 4\n",
            data.display()
        ),
    )
    .unwrap();
    let s = suite.to_str().unwrap();
    for step in ["step-000002", "step-000004"] {
        let ck = run.join("checkpoints").join(step);
        let t = ok(&[
            "eval",
            "run",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--suite",
            s,
        ]);
        assert!(t.contains("TensorBoard: eval/phys/*"), "{t}");
        let dir = run.join("eval/phys").join(step);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        let rows = r["rows"].as_array().unwrap();
        // 3 scenes × text, image, extension, plus a character case per scene with a character
        let modes: Vec<&str> = rows.iter().map(|x| x["mode"].as_str().unwrap()).collect();
        assert_eq!(
            modes.iter().filter(|m| **m == "text").count(),
            3,
            "{modes:?}"
        );
        assert_eq!(modes.iter().filter(|m| **m == "extension").count(), 3);
        assert_eq!(modes.iter().filter(|m| **m == "remix").count(), 3);
        assert!(rows.iter().all(|x| x["status"] == "ok"), "{r}");
        for x in rows {
            let v = dir.join(x["video"].as_str().unwrap());
            assert_eq!(&std::fs::read(&v).unwrap()[4..8], b"ftyp");
        }
        // extension cases are scored on continuity across their boundary
        assert!(
            rows.iter()
                .filter(|x| x["mode"] == "extension")
                .all(|x| x["scores"].get("consistency.boundary_continuity").is_some())
        );
        assert!(dir.join("clips.parquet").is_file());
        // summaries per case kind
        for m in ["text", "image", "extension", "remix"] {
            assert_eq!(r["by_mode"][m]["cases"], 3, "{}", r["by_mode"]);
        }
        assert!(
            r["by_mode"]["extension"]["metrics"]
                .get("consistency.boundary_continuity")
                .is_some()
        );
        assert_eq!(r["step"], step[5..].parse::<u64>().unwrap());
    }
    ok(&[
        "eval",
        "run",
        "--checkpoint",
        run.join("checkpoints/step-000004").to_str().unwrap(),
        "--suite",
        s,
        "--untrained",
    ]);
    assert!(
        run.join("eval/phys/untrained-step-000004/report.json")
            .is_file()
    );
    let data_out = run.join("eval/phys/data");
    ok(&[
        "eval",
        "data",
        "--suite",
        s,
        "--out",
        data_out.to_str().unwrap(),
    ]);

    // compare says which is best, by the documented aggregate
    let t = ok(&["eval", "compare", "--run", run.to_str().unwrap()]);
    assert!(t.contains("best checkpoint: "), "{t}");
    for l in [
        "r/step-000002",
        "r/step-000004",
        "untrained (r/step-000004)",
        "data (data)",
    ] {
        assert!(t.lines().any(|x| x.starts_with(l)), "{l} missing:\n{t}");
    }

    // the eval scalars are in the run's TensorBoard at the checkpoints' steps
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, json\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
             ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0}); ea.Reload()\n\
             print(json.dumps([e.step for e in ea.Scalars('eval/phys/score')]))",
        ])
        .arg(run.join("tb"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut steps: Vec<u64> = serde_json::from_slice(&o.stdout).unwrap();
    steps.sort();
    assert_eq!(steps, [2, 4]);

    // the dashboard, in headless Chromium with the network blocked
    let t = ok(&["eval", "dashboard", run.to_str().unwrap()]);
    let page = run.join("eval/dashboard.html");
    assert!(t.contains(page.to_str().unwrap()), "{t}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let o = Command::new("node")
        .arg(script)
        .arg(&page)
        .output()
        .expect("node runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        d["requests"].as_array().unwrap().len(),
        0,
        "fetched from the network: {d}"
    );
    assert_eq!(d["errors"].as_array().unwrap().len(), 0, "{}", d["errors"]);
    assert!(d["charts"].as_u64().unwrap() >= 5, "{}", d["charts"]);
    assert!(d["polylines"].as_u64().unwrap() >= 5);
    assert_eq!(
        d["tableRows"].as_u64().unwrap(),
        1 + 4,
        "header + 4 sources"
    );
    let videos = d["videos"].as_array().unwrap();
    assert!(videos.len() >= 9, "{}", videos.len());
    for v in videos {
        assert!(
            v["readyState"].as_u64().unwrap() >= 1 && v["duration"].as_f64().unwrap() > 0.9,
            "{v}"
        );
        assert!(v["error"].is_null(), "{v}");
    }
    assert!(
        d["text"]
            .as_str()
            .unwrap()
            .contains("physics.permanence_violation")
    );
}

#[test]
fn bad_eval_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("s.toml");
    std::fs::write(&suite, "[suite]\nmetrics = [\"consistency.flickr\"]\n").unwrap();
    let o = sonora(&[
        "eval",
        "run",
        "--checkpoint",
        tmp.path().to_str().unwrap(),
        "--suite",
        suite.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("consistency.flickr")
            && text(&o).contains("consistency.temporal_flicker"),
        "{}",
        text(&o)
    );
    // a checkpoint that will not load
    std::fs::write(&suite, "[suite]\nname = \"x\"\n").unwrap();
    let ck = tmp.path().join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("manifest.json"), "{ not json").unwrap();
    let o = sonora(&[
        "eval",
        "run",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--suite",
        suite.to_str().unwrap(),
        "--out",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("checkpoint") && text(&o).contains("manifest.json"),
        "{}",
        text(&o)
    );
    // a dashboard of a run without reports
    let o = sonora(&["eval", "dashboard", tmp.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no eval reports"), "{}", text(&o));
    // every shipped suite parses
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/eval")).unwrap()
    {
        let f = f.unwrap().path();
        let o = sonora(&[
            "eval",
            "data",
            "--suite",
            f.to_str().unwrap(),
            "--set",
            "suite.clips=0",
            "--out",
            "/nonexistent",
        ]);
        assert!(
            text(&o).contains("suite.clips must be at least 1"),
            "{}: {}",
            f.display(),
            text(&o)
        );
    }
}

#[test]
fn eval_scores_reach_an_mlflow_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = mlflow_server::Server::start(tmp.path());
    let (data, run) = trained(tmp.path());
    let suite = tmp.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[suite]\nname = \"phys\"\ndata = \"{}\"\nsplit = \"test\"\nclips = 2\n[sampler]\nsteps = 2\n",
            data.display()
        ),
    )
    .unwrap();
    let o = cli::sonora()
        .args(["eval", "run", "--checkpoint"])
        .arg(run.join("checkpoints/step-000004"))
        .arg("--suite")
        .arg(&suite)
        .env("MLFLOW_TRACKING_URI", &server.uri)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    let id = t
        .split("MLflow run: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MLflow run id in:\n{t}"));
    let got = mlflow_server::check(&server.uri, id, "score");
    assert_eq!(got["status"], "FINISHED", "{got}");
    assert_eq!(got["experiment"], "sonora-eval");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("eval/phys/step-000004/report.json")).unwrap(),
    )
    .unwrap();
    let h = got["history"].as_array().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0][0], 4, "logged at the checkpoint's step");
    assert!((h[0][1].as_f64().unwrap() - report["score"].as_f64().unwrap()).abs() < 1e-9);
    assert!(
        got["metrics"].get("physics.permanence_violation").is_some(),
        "{got}"
    );
    assert!(
        got["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "report.json"),
        "{got}"
    );
}
