//! Data-parallel training under `mpirun` (OpenMPI, installed by scripts/setup.sh): two
//! ranks train as one rank with twice the batch, resume exactly, stop together on SIGTERM,
//! end the job when a rank dies, and refuse launches that disagree with the recipe.
#![cfg(feature = "mpi")]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Per-step loss and final weights of 2 ranks × batch b against 1 rank × batch 2b may
/// differ by float rounding only: the ranks' gradients are summed by MPI in another order
/// than one backward pass sums them, and the batch-size-dependent blocking of the matrix
/// products rounds differently (measured: 1.5e-7 relative on the losses, 3.7e-7 on the
/// weights after 6 AdamW steps). Anything from a wrong sample, a wrong normalisation or a
/// missing all-reduce is orders of magnitude larger (a different clip changes the loss by
/// 1e-2 and more).
const TOLERANCE: f64 = 1e-5;

/// `mpirun -np N sonora …` with the clean environment of [`cli::sonora`].
fn mpirun(np: usize) -> Command {
    let mut m = Command::new("mpirun");
    m.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &np.to_string(),
    ])
    .arg(env!("CARGO_BIN_EXE_sonora"))
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("SONORA_") || k == "MLFLOW_TRACKING_URI" {
            m.env_remove(k);
        }
    }
    m
}

fn text(o: &Output) -> String {
    cli::text(o)
}

/// A tiny recipe: batch `batch` per rank, grad accumulation 2, EMA, a checkpoint every
/// `every` steps.
fn recipe(
    dir: &Path,
    name: &str,
    data: &Path,
    batch: usize,
    backend: &str,
    steps: u64,
    every: u64,
) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[run]\nname = \"{name}\"\nout_dir = \"{runs}\"\nseed = 5\n\n{model}\n[data]\npath = \"{data}\"\n\n\
             [data.loader]\nbatch_size = {batch}\nworkers = 1\n\n[optimizer]\nlr = 0.003\n\n\
             [train]\nsteps = {steps}\ngrad_accum = 2\nema_decay = 0.9\nlog_every = 1\n\n\
             [checkpoint]\nevery = {every}\nkeep_last = 100\n\n[sample]\nprompts = []\n\n\
             [distributed]\nbackend = \"{backend}\"\n",
            runs = dir.join("runs").display(),
            model = tiny_model::model_toml(32, 2),
            data = data.display(),
        ),
    )
    .unwrap();
    p
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

fn weights(ckpt: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = t
                .data()
                .chunks(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (n, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, x), (nb, y))| {
            assert_eq!(na, nb);
            x.iter().zip(y).map(|(p, q)| (p - q).abs() as f64)
        })
        .fold(0.0, f64::max)
}

fn dataset(dir: &Path) -> PathBuf {
    let ds = dir.join("ds");
    cli::tiny_dataset(&ds, 16, 4, 0, &[]);
    ds
}

#[test]
fn two_ranks_train_as_one_rank_with_twice_the_batch_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let one = recipe(dir.path(), "one", &ds, 4, "single", 6, 3);
    let two = recipe(dir.path(), "two", &ds, 2, "mpi", 6, 3);
    cli::ok(&["train", one.to_str().unwrap()]);
    let o = mpirun(2)
        .args(["train", two.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let runs = dir.path().join("runs");
    let (l1, l2) = (losses(&runs.join("one")), losses(&runs.join("two")));
    // rank 0 alone logs: one line a step
    assert_eq!(l2.len(), 6, "{l2:?}");
    for ((s1, a), (s2, b)) in l1.iter().zip(&l2) {
        assert_eq!(s1, s2);
        assert!(
            (a - b).abs() <= TOLERANCE * a.abs().max(1.0),
            "step {s1}: {a} vs {b}"
        );
    }
    let final_two = weights(&runs.join("two/checkpoints/step-000006"));
    let d = max_diff(
        &weights(&runs.join("one/checkpoints/step-000006")),
        &final_two,
    );
    assert!(d <= TOLERANCE, "weights differ by {d}");

    // resumed from step 3 under the same world: the same weights, bit for bit
    let o = mpirun(2)
        .args(["train", two.to_str().unwrap(), "--resume"])
        .arg(runs.join("two/checkpoints/step-000003"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        weights(&runs.join("two/checkpoints/step-000006")),
        final_two
    );
    assert_eq!(losses(&runs.join("two")).len(), 6);

    // one process cannot take over two ranks' data positions
    let single = recipe(dir.path(), "two", &ds, 2, "single", 6, 3);
    let o = cli::run(&["train", single.to_str().unwrap(), "--resume", "auto"]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("2 rank(s)") && t.contains("finetune.from"),
        "{t}"
    );
}

#[test]
fn a_character_recipe_trains_on_two_ranks_as_on_one() {
    // every clip shows one of six characters, so most ranks' shares of a batch hold no
    // clip of `pip`: those ranks join the step with nothing to add
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    cli::tiny_dataset(&ds, 24, 4, 0, &["synth.character_prob=1.0"]);
    let character = "\n[character]\nid = \"pip\"\nreferences = 2\n";
    let one = recipe(dir.path(), "c1", &ds, 4, "single", 6, 3);
    let two = recipe(dir.path(), "c2", &ds, 2, "mpi", 6, 3);
    for r in [&one, &two] {
        let mut text = std::fs::read_to_string(r).unwrap();
        text.push_str(character);
        std::fs::write(r, text).unwrap();
    }
    cli::ok(&["train", one.to_str().unwrap()]);
    let o = mpirun(2)
        .args(["train", two.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let runs = dir.path().join("runs");
    let (l1, l2) = (losses(&runs.join("c1")), losses(&runs.join("c2")));
    assert_eq!(l1.len(), 6);
    for ((s1, a), (_, b)) in l1.iter().zip(&l2) {
        assert!(
            (a - b).abs() <= TOLERANCE * a.abs().max(1.0),
            "step {s1}: {a} vs {b}"
        );
    }
    let d = max_diff(
        &weights(&runs.join("c1/checkpoints/step-000006")),
        &weights(&runs.join("c2/checkpoints/step-000006")),
    );
    assert!(d <= TOLERANCE, "weights differ by {d}");
}

#[test]
fn skipped_bad_rows_shorten_one_ranks_epoch_without_stalling_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    // two training clips whose video is not an MP4 any more (recorded by reindex: the rows
    // are well-formed, the media is not)
    let m = sonora_datasets::Manifest::load(&ds).unwrap();
    let shard = m.shards.iter().find(|s| s.split == "train").unwrap();
    let p = ds.join(&shard.path).display().to_string();
    let py = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         t = pq.read_table({p:?})\n\
         v = t.column('video').to_pylist()\n\
         for i in (1, 6): v[i]['bytes'] = b'not a video'\n\
         t = t.set_column(t.schema.get_field_index('video'), 'video', pa.array(v, type=t.schema.field('video').type))\n\
         pq.write_table(t, {p:?})\n"
    );
    cli::python(&py);
    cli::ok(&["data", "reindex", ds.to_str().unwrap()]);
    let r = recipe(dir.path(), "bad", &ds, 2, "mpi", 8, 4);
    let o = mpirun(2)
        .args([
            "train",
            r.to_str().unwrap(),
            "--set",
            "data.loader.bad_rows=skip",
        ])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let l = losses(&dir.path().join("runs/bad"));
    assert_eq!(l.len(), 8, "{t}");
    assert!(l.iter().all(|(_, x)| x.is_finite()), "{l:?}");
    // a second run stops on the first bad row, as the policy says
    let o = mpirun(2)
        .args([
            "train",
            r.to_str().unwrap(),
            "--overwrite",
            "--set",
            "run.name=bad-error",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn a_launch_that_disagrees_with_the_recipe_stops_every_rank_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    // `mpirun -np 2 sonora train RECIPE SETS…`, which must fail without a panic
    let refused = |recipe: &Path, sets: &[&str]| -> String {
        let mut args = vec!["train", recipe.to_str().unwrap()];
        for s in sets {
            args.extend(["--set", s]);
        }
        let o = mpirun(2).args(&args).output().unwrap();
        let t = text(&o);
        assert!(
            !o.status.success() && !t.contains("panicked"),
            "{args:?}: {t}"
        );
        t
    };
    let t = refused(&recipe(dir.path(), "s", &ds, 2, "single", 2, 2), &[]);
    assert_eq!(
        t.matches("distributed.backend = \"mpi\"").count(),
        2,
        "both ranks say why: {t}"
    );
    let sized = recipe(dir.path(), "w", &ds, 2, "mpi", 2, 2);
    let t = refused(&sized, &["distributed.world_size=3"]);
    assert!(t.contains("distributed.world_size = 3"), "{t}");
    // 16 training clips cannot fill one global batch of 2 × 16
    let t = refused(&sized, &["data.loader.batch_size=16"]);
    assert!(t.contains("fewer clips than one global batch"), "{t}");
}

/// The rank processes of a running `mpirun` (found by the rank its launcher gave them).
fn rank_pids(recipe: &Path) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(recipe.to_str().unwrap()) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        for var in env.split(|&b| b == 0) {
            if let Some(r) = var.strip_prefix(b"OMPI_COMM_WORLD_RANK=") {
                out.push((String::from_utf8_lossy(r).parse().unwrap(), pid));
            }
        }
    }
    out.sort();
    out
}

/// Starts `mpirun -np 2 sonora train RECIPE` and waits until it has written a checkpoint.
fn start_and_wait_for_a_checkpoint(recipe: &Path, ckpts: &Path) -> Child {
    let mut child = mpirun(2)
        .args(["train", recipe.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !std::fs::read_dir(ckpts).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
    }) {
        assert!(child.try_wait().unwrap().is_none(), "mpirun ended early");
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn wait_bounded(child: Child, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if t0.elapsed() > limit {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mpirun still running {limit:?} after the fault: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (waiter.join().unwrap(), t0.elapsed())
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let r = recipe(dir.path(), "k", &ds, 2, "mpi", 500, 10);
    let ckpts = dir.path().join("runs/k/checkpoints");
    let child = start_and_wait_for_a_checkpoint(&r, &ckpts);
    let ranks = rank_pids(&r);
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    let (_, victim) = ranks[1];
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (o, took) = wait_bounded(child, Duration::from_secs(60));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("rank 1") && t.contains("signal 9"),
        "names the lost rank: {t}"
    );
    eprintln!("the job ended {took:?} after rank 1 was killed");
    // the newest checkpoint is whole: the run resumes from it and finishes
    let o = mpirun(2)
        .args(["train", r.to_str().unwrap(), "--resume", "auto"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success() && t.contains("resuming from"), "{t}");
    assert_eq!(losses(&dir.path().join("runs/k")).last().unwrap().0, 500);
}

#[test]
fn sigterm_checkpoints_once_from_rank_0_and_stops_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    // a checkpoint every step: the stop is always seen right after one, which every rank
    // must agree needs no second save
    let r = recipe(dir.path(), "t", &ds, 2, "mpi", 100_000, 1);
    let ckpts = dir.path().join("runs/t/checkpoints");
    let child = start_and_wait_for_a_checkpoint(&r, &ckpts);
    // what SLURM does at a time limit: SIGTERM to every task
    for (_, pid) in rank_pids(&r) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let (o, _) = wait_bounded(child, Duration::from_secs(60));
    let t = text(&o);
    assert_eq!(t.matches("stopped by a signal at step").count(), 2, "{t}");
    let at: u64 = t
        .split("stopped by a signal at step ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let newest = std::fs::read_dir(&ckpts)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("step-")
                .and_then(|s| s.parse::<u64>().ok())
        })
        .max()
        .unwrap();
    assert_eq!(
        newest, at,
        "the checkpoint of the step both ranks stopped at: {t}"
    );
    assert_eq!(losses(&dir.path().join("runs/t")).last().unwrap().0, at);
}

#[test]
fn the_allreduce_bench_checks_the_layer_against_mpi_allreduce() {
    // the bench fails when the layer's sums differ from MPI_Allreduce's
    let o = mpirun(2)
        .args(["bench", "allreduce", "--sizes-mb", "1", "3", "--iters", "1"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rows: Vec<&str> = t
        .lines()
        .filter(|l| l.trim_end().ends_with(|c: char| c.is_ascii_digit()) && l.contains('×'))
        .collect();
    assert_eq!(rows.len(), 2, "{t}");
    let o = cli::run(&["bench", "allreduce"]);
    assert!(
        !o.status.success() && text(&o).contains("mpirun -np 2"),
        "{}",
        text(&o)
    );
}
