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

use cli::{ok, run as sonora, text};

/// A 1 s, 16×16 dataset whose test split has 3 clips; a tiny model trained 4 steps on it.
fn trained(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = tmp.join("data");
    let d = data.to_str().unwrap();
    cli::tiny_dataset(&data, 8, 2, 3, &["synth.character_prob=0.5"]);
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
            "[suite]\nname = \"phys\"\ndata = \"{}\"\nsplit = \"test\"\nclips = 3\nmodes = [\"text\", \"image\", \"extension\", \"remix\", \"character\"]\nbatch = 4\n[sampler]\nsteps = 3\n",
            data.display()
        ),
    )
    .unwrap();
    let s = suite.to_str().unwrap();
    for (i, step) in ["step-000002", "step-000004"].into_iter().enumerate() {
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
        // the floor and ceiling are computed once for the run's model and reused after
        let how = if i == 0 { "computed" } else { "reused" };
        for what in ["untrained floor", "data ceiling"] {
            assert!(
                t.contains(&format!("{what}: {how} ")),
                "{what} not {how}:\n{t}"
            );
        }
        assert!(t.contains("normalised "), "{t}");
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
        // the normalised score, recomputed here from the cached floor and ceiling
        let n = &r["normalised"];
        assert!(
            n["floor"].as_str().unwrap().starts_with("untrained:"),
            "{n}"
        );
        assert!(n["ceiling"].as_str().unwrap().starts_with("data:"), "{n}");
        let read = |kind: &str| -> serde_json::Value {
            let d = std::fs::read_dir(run.join("eval/phys/baselines"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(kind))
                .unwrap_or_else(|| panic!("no {kind} under baselines/"));
            serde_json::from_slice(&std::fs::read(d.join("report.json")).unwrap()).unwrap()
        };
        let (floor, ceiling) = (read("floor-"), read("ceiling-"));
        assert_eq!(ceiling["source"].as_str().unwrap(), n["ceiling"]);
        let mut scaled = Vec::new();
        for (k, m) in r["metrics"].as_object().unwrap() {
            let g = m["goodness"].as_f64().unwrap();
            // the floor's level when it measured the metric on at least half as many cases
            // as the checkpoint; the ceiling's when on at least half of its own cases
            let n_of = |x: &serde_json::Value| x["n"].as_u64().unwrap();
            let f = floor["metrics"]
                .get(k)
                .filter(|x| 2 * n_of(x) >= n_of(m).max(1))
                .map(|x| x["goodness"].as_f64().unwrap());
            let c = ceiling["metrics"]
                .get(k)
                .filter(|x| 2 * n_of(x) >= ceiling["cases"].as_u64().unwrap())
                .map(|x| x["goodness"].as_f64().unwrap());
            let got = n["metrics"][k]["value"].as_f64();
            match (f, c) {
                (Some(f), Some(c)) if c - f >= 0.05 => {
                    let want = (g - f) / (c - f);
                    assert!((got.unwrap() - want).abs() < 1e-9, "{k}: {got:?} vs {want}");
                    scaled.push(want.clamp(-1.0, 2.0));
                }
                _ => assert!(got.is_none(), "{k} should be unscaled: {}", n["metrics"][k]),
            }
        }
        assert!(!scaled.is_empty(), "no metric scaled: {n}");
        let want = scaled.iter().sum::<f64>() / scaled.len() as f64;
        assert!((n["score"].as_f64().unwrap() - want).abs() < 1e-9, "{n}");
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
    // the untrained model is its own floor: it sits at 0 on every metric it scales
    let u: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("eval/phys/untrained-step-000004/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        u["normalised"]["score"].as_f64(),
        Some(0.0),
        "{}",
        u["normalised"]
    );
    // and it scored the same cases as the cached floor, with the same weights
    let cached_floor = std::fs::read_dir(run.join("eval/phys/baselines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("floor-")
        })
        .unwrap();
    let f: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cached_floor.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        u["score"], f["score"],
        "the floor is the untrained model's report"
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

    // compare ranks checkpoints by the normalised score and names the best
    let t = ok(&["eval", "compare", "--run", run.to_str().unwrap()]);
    for l in [
        "r/step-000002",
        "r/step-000004",
        "untrained (r/step-000004)",
        "data (data)",
    ] {
        assert!(t.lines().any(|x| x.starts_with(l)), "{l} missing:\n{t}");
    }
    let norm_of = |step: &str| -> f64 {
        let r: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join("eval/phys").join(step).join("report.json")).unwrap(),
        )
        .unwrap();
        r["normalised"]["score"].as_f64().unwrap()
    };
    let best = if norm_of("step-000004") >= norm_of("step-000002") {
        "step-000004"
    } else {
        "step-000002"
    };
    let named = t
        .lines()
        .find_map(|l| l.strip_prefix("best checkpoint: "))
        .unwrap_or_else(|| panic!("no best checkpoint in:\n{t}"));
    assert!(
        named.starts_with(run.join("checkpoints").join(best).to_str().unwrap())
            && named.contains("normalised"),
        "best should be {best}: {named}"
    );
    // the references come after the checkpoints
    let lines: Vec<&str> = t.lines().collect();
    let first_ref = lines
        .iter()
        .position(|l| l.starts_with("untrained") || l.starts_with("data"))
        .unwrap();
    let last_ckpt = lines
        .iter()
        .rposition(|l| l.starts_with("r/step-"))
        .unwrap();
    assert!(last_ckpt < first_ref, "{t}");

    // the eval scalars are in the run's TensorBoard at the checkpoints' steps
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, json\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
             ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0}); ea.Reload()\n\
             print(json.dumps([[e.step for e in ea.Scalars(t)] for t in ('eval/phys/score', 'eval/phys/normalised_score')]))",
        ])
        .arg(run.join("tb"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tags: Vec<Vec<u64>> = serde_json::from_slice(&o.stdout).unwrap();
    for mut steps in tags {
        steps.sort();
        assert_eq!(steps, [2, 4]);
    }

    // the dashboard, in headless Chromium with the network blocked
    let t = ok(&["eval", "dashboard", run.to_str().unwrap()]);
    let page = run.join("eval/dashboard.html");
    assert!(t.contains(page.to_str().unwrap()), "{t}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let look = |width: u32| -> serde_json::Value {
        let shot = tmp.path().join(format!("dashboard-{width}.png"));
        let o = Command::new("node")
            .arg(&script)
            .arg(&page)
            .arg(&shot)
            .arg(width.to_string())
            .output()
            .expect("node runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            &std::fs::read(&shot).unwrap()[1..4],
            b"PNG",
            "a screenshot at {width} px"
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // laid out at a laptop's width and a narrow window: nothing overlaps, nothing spills
    // out of its clip card, the page is no wider than the window
    for width in [1400, 1024] {
        let d = look(width);
        assert!(d["boxes"].as_u64().unwrap() > 10, "{d}");
        assert_eq!(
            d["overlaps"].as_array().unwrap().len(),
            0,
            "at {width} px: {}",
            d["overlaps"]
        );
        assert_eq!(
            d["spills"].as_array().unwrap().len(),
            0,
            "at {width} px: {}",
            d["spills"]
        );
        assert!(
            d["pageWidth"].as_u64() <= d["viewport"].as_u64(),
            "at {width} px: {d}"
        );
    }
    let d = look(1400);
    assert!(
        d["headline"].as_str().unwrap().contains("normalised score"),
        "{}",
        d["headline"]
    );
    assert_eq!(
        d["requests"].as_array().unwrap().len(),
        0,
        "fetched from the network: {d}"
    );
    assert_eq!(d["errors"].as_array().unwrap().len(), 0, "{}", d["errors"]);
    assert!(d["charts"].as_u64().unwrap() >= 5, "{}", d["charts"]);
    assert!(d["polylines"].as_u64().unwrap() >= 5);
    // header + 2 checkpoints + the untrained run + the data + the cached floor and ceiling
    assert_eq!(d["tableRows"].as_u64().unwrap(), 1 + 6, "{d}");
    // the scale table: a row per metric of the best checkpoint, each saying yes/no/-
    assert!(d["scaleRows"].as_u64().unwrap() >= 6, "{d}");
    assert!(d["text"].as_str().unwrap().contains("beats untrained?"));
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
        (got["metrics"]["normalised_score"].as_f64().unwrap()
            - report["normalised"]["score"].as_f64().unwrap())
        .abs()
            < 1e-9,
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
