//! Training against a real MLflow tracking server started on 127.0.0.1 by the test: params
//! (the flattened config), metric histories, tags, artifacts and the run status arrive as
//! MLflow's own client reads them; a stop signal ends as KILLED; a server that dies mid-run
//! does not stop the training.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sonora_recipes::{Recipe, TrainOptions};

mod common;

#[path = "../../tests/support/mlflow_server.rs"]
mod mlflow_server;

use mlflow_server::{Server, check};

fn recipe(tmp: &Path, uri: &str) -> Recipe {
    let data = tmp.join("data");
    if !data.exists() {
        common::dataset(&data, 12, 0.15);
    }
    let mut r = common::recipe(&data, &tmp.join("runs"), 1);
    r.schedule.warmup_steps = 2;
    r.train.steps = 10;
    r.train.log_every = 2;
    r.checkpoint.every = 5;
    r.sample.prompts = vec!["a red ball falls".into()];
    r.sample.sampler.steps = 2;
    r.tracking.mlflow_uri = uri.into();
    r.tracking.mlflow_experiment = "sonora-test".into();
    r
}

#[test]
fn mlflow_receives_params_metrics_artifacts_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path());

    // a whole run: FINISHED
    let mut r = recipe(tmp.path(), &server.uri);
    r.run.name = "whole".into();
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {}).unwrap();
    let id = out.mlflow_run.clone().expect("an MLflow run id");
    let got = check(&server.uri, &id, "loss/total");
    assert_eq!(got["status"], "FINISHED", "{got}");
    assert_eq!(got["experiment"], "sonora-test");
    assert_eq!(got["run_name"], "whole");
    assert_eq!(got["params"]["optimizer.lr"], "0.003", "{}", got["params"]);
    assert_eq!(got["params"]["model.inline.d_model"], "32");
    assert_eq!(got["params"]["train.steps"], "10");
    let steps: Vec<u64> = got["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 4, 6, 8, 10], "{}", got["history"]);
    // the logged losses are the ones the loop saw
    let jsonl = std::fs::read_to_string(out.run_dir.join("metrics.jsonl")).unwrap();
    let loss10: f64 = serde_json::from_str::<serde_json::Value>(jsonl.lines().last().unwrap())
        .unwrap()["loss"]
        .as_f64()
        .unwrap();
    let h = got["history"].as_array().unwrap();
    assert!((h[4][1].as_f64().unwrap() - loss10).abs() < 1e-9 * loss10.abs().max(1.0));
    for k in [
        "loss/video",
        "loss/audio",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "loss/val",
    ] {
        assert!(
            got["metrics"].get(k).is_some(),
            "metric {k} missing: {}",
            got["metrics"]
        );
    }
    assert_eq!(
        got["tags"]["sonora.run_dir"],
        out.run_dir.display().to_string()
    );
    let arts: Vec<&str> = got["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for a in [
        "config.toml",
        "checkpoints/step-000010/manifest.json",
        "samples/step-000010/prompt-0.mp4",
    ] {
        assert!(arts.contains(&a), "artifact {a} missing: {arts:?}");
    }

    // a stop signal: checkpoint, then KILLED
    let mut r = recipe(tmp.path(), &server.uri);
    r.run.name = "stopped".into();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let out = sonora_recipes::train(
        &r,
        &TrainOptions {
            stop: Some(stop),
            ..TrainOptions::default()
        },
        &mut |s| {
            if s.step == 3 {
                flag.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    assert!(out.interrupted);
    assert_eq!(out.step, 3);
    let got = check(&server.uri, out.mlflow_run.as_ref().unwrap(), "loss/total");
    assert_eq!(got["status"], "KILLED", "{got}");

    // the server dies at step 4: the run goes on to the end, with its checkpoints
    let mut r = recipe(tmp.path(), &server.uri);
    r.run.name = "orphan".into();
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |s| {
        if s.step == 4 {
            server.kill();
        }
    })
    .unwrap();
    assert_eq!(out.step, 10);
    assert!(
        out.run_dir
            .join("checkpoints/step-000010/manifest.json")
            .exists()
    );
    assert!(out.val_loss_final.unwrap().is_finite());
}

#[test]
fn an_unreachable_server_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut r = recipe(tmp.path(), &format!("http://127.0.0.1:{port}"));
    r.run.name = "nobody".into();
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("MLflow") && e.contains(&port.to_string()), "{e}");
    let mut r = recipe(tmp.path(), "file:///tmp/mlruns");
    r.run.name = "file".into();
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP"), "{e}");
}
