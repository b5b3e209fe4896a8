//! `sonora train` through the binary: a run killed with SIGKILL and resumed with
//! `--resume auto` is bit-for-bit the run that never stopped (same per-step losses, same
//! final weights and EMA weights); SIGTERM checkpoints and exits 143; bad runs are
//! refused with errors that say what to do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use cli::{run, sonora, text};
use std::time::{Duration, Instant};

/// A 16-clip synthetic dataset of 1 s, 16×16 clips.
fn dataset(dir: &Path) {
    cli::tiny_dataset(dir, 16, 4, 0, &[]);
}

/// A recipe with a tiny inline model: gradient accumulation, EMA, a checkpoint every 3 steps.
fn recipe(dir: &Path, data: &Path, d_model: usize) -> PathBuf {
    let p = dir.join(format!("recipe-{d_model}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"
[run]
name = "r"
seed = 3

{model}
[data]
path = "{}"

[data.loader]
batch_size = 4
workers = 1

[optimizer]
lr = 0.003

[schedule]
warmup_steps = 4

[train]
steps = 45
grad_accum = 2
ema_decay = 0.9
log_every = 5

[checkpoint]
every = 3
keep_last = 30

[sample]
prompts = []
"#,
            data.display(),
            model = tiny_model::model_toml(d_model, 2)
        ),
    )
    .unwrap();
    p
}

/// Per-step (loss, lr, grad norm) from `metrics.jsonl`.
fn losses(run_dir: &Path) -> Vec<(u64, f64, f64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["lr"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Starts `sonora train` in the background.
fn spawn(recipe: &Path, out: &Path) -> Child {
    sonora()
        .args([
            "train",
            recipe.to_str().unwrap(),
            "--set",
            &format!("run.out_dir={}", out.display()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sonora starts")
}

/// Waits until `path` exists (panics after 5 minutes or if `child` exits first).
fn wait_for(path: &Path, child: &mut Child) {
    let t0 = Instant::now();
    while !path.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("training exited ({st}) before {} appeared", path.display());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Resumes `out/r` and checks it ends exactly where the uninterrupted run `full` ended.
fn resume_and_compare(recipe: &Path, out: &Path, full: &Path, killed_after: u64) {
    let o = run(&[
        "train",
        recipe.to_str().unwrap(),
        "--set",
        &format!("run.out_dir={}", out.display()),
        "--resume",
        "auto",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    let from: u64 = t
        .split("resumed from step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no `resumed from step` in:\n{t}"));
    assert!(
        from >= killed_after && from < 45,
        "resumed from {from}\n{t}"
    );
    let run_dir = out.join("r");
    assert_eq!(
        losses(&run_dir),
        losses(full),
        "per-step loss, lr, grad norm"
    );
    // (optimizer.bpk is not compared byte for byte: burn writes its tensors in hash order;
    // equal losses at every step after the resume show the AdamW moments came back exactly)
    for f in ["model.safetensors", "ema.safetensors"] {
        let a = std::fs::read(full.join("checkpoints/step-000045").join(f)).unwrap();
        let b = std::fs::read(run_dir.join("checkpoints/step-000045").join(f)).unwrap();
        assert!(a == b, "{f} differs after resuming from step {from}");
    }
}

#[test]
fn killed_runs_resume_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let r = recipe(tmp.path(), &data, 32);

    // the run that never stops
    let full_out = tmp.path().join("full");
    let a = spawn(&r, &full_out);
    let oa = a.wait_with_output().unwrap();
    assert!(oa.status.success(), "{}", text(&oa));
    let full = full_out.join("r");
    let l = losses(&full);
    assert_eq!(
        l.iter().map(|x| x.0).collect::<Vec<_>>(),
        (1..=45).collect::<Vec<_>>()
    );

    // SIGKILL once step 6 is on disk: no chance to write anything more
    let killed = tmp.path().join("killed");
    let mut b = spawn(&r, &killed);
    wait_for(
        &killed.join("r/checkpoints/step-000006/manifest.json"),
        &mut b,
    );
    b.kill().unwrap();
    b.wait().unwrap();
    assert!(
        !killed.join("r/checkpoints/step-000045").exists(),
        "the run finished before it could be killed; the test proves nothing"
    );
    resume_and_compare(&r, &killed, &full, 6);

    // SIGTERM: a checkpoint of the current step, exit status 143
    let termed = tmp.path().join("termed");
    let mut c = spawn(&r, &termed);
    wait_for(
        &termed.join("r/checkpoints/step-000009/manifest.json"),
        &mut c,
    );
    let k = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let oc = c.wait_with_output().unwrap();
    assert_eq!(oc.status.code(), Some(143), "{}", text(&oc));
    let t = text(&oc);
    let at: u64 = t
        .split("interrupted at step ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no `interrupted at step` in:\n{t}"));
    assert!(
        termed
            .join(format!("r/checkpoints/step-{at:06}/manifest.json"))
            .exists(),
        "no checkpoint of the interrupted step {at}"
    );
    resume_and_compare(&r, &termed, &full, at);

    // a finished run is not silently overwritten
    let again = run(&[
        "train",
        r.to_str().unwrap(),
        "--set",
        &format!("run.out_dir={}", full_out.display()),
    ]);
    assert!(!again.status.success());
    let t = text(&again);
    assert!(
        t.contains("already exists") && t.contains("--resume auto") && t.contains("--overwrite"),
        "{t}"
    );

    // a checkpoint of another model config is refused, naming the key that differs
    let other = recipe(tmp.path(), &data, 48);
    let o = run(&[
        "train",
        other.to_str().unwrap(),
        "--set",
        &format!("run.out_dir={}", tmp.path().join("other").display()),
        "--resume",
        full.join("checkpoints/step-000045").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("d_model"), "{}", text(&o));

    // resuming from a path that is not a checkpoint
    let o = run(&[
        "train",
        r.to_str().unwrap(),
        "--set",
        &format!("run.out_dir={}", tmp.path().join("x").display()),
        "--resume",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nope"), "{}", text(&o));
}

#[test]
fn train_and_quickstart_explain_themselves() {
    for sub in ["train", "quickstart"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success(), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains(&format!("Usage: sonora {sub}")), "{t}");
    }
    let o = run(&["train", "--help"]);
    assert!(text(&o).contains("--resume"), "{}", text(&o));
}

#[test]
fn bad_recipes_fail_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("r.toml");
    std::fs::write(&r, "[train]\nstepz = 5\n").unwrap();
    let o = run(&["train", r.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("stepz") && text(&o).contains("steps"),
        "{}",
        text(&o)
    );
    // an environment override of the wrong type names the key
    let o = sonora()
        .args(["train", "configs/recipes/quickstart.toml"])
        .env("SONORA_TRAIN__STEPS", "many")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("steps"), "{}", text(&o));
    // a data path with no shards
    let o = run(&[
        "train",
        "configs/recipes/quickstart.toml",
        "--set",
        &format!("data.path={}", tmp.path().join("empty").display()),
        "--set",
        &format!("run.out_dir={}", tmp.path().join("runs").display()),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("data.path"), "{}", text(&o));
    // every shipped recipe parses (the fine-tune ones name a checkpoint made by the quickstart)
    for f in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/recipes")).unwrap()
    {
        let f = f.unwrap().path();
        let o = sonora()
            .args(["train", f.to_str().unwrap(), "--set", "train.steps=0"])
            .output()
            .unwrap();
        // steps = 0 is refused by the range check, which runs after parsing every key
        assert!(
            text(&o).contains("train.steps must be at least 1"),
            "{}: {}",
            f.display(),
            text(&o)
        );
    }
}
