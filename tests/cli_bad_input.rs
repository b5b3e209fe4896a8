//! Bad input across the CLI, table-driven: each row is a command a user might type with
//! one thing wrong. Every row must exit non-zero, without a panic, with a message naming
//! the key, flag or file at fault (and saying what is accepted where that is the point).
//! Then the leftovers: a run that failed during setup does not block the corrected rerun.

use std::path::Path;

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use cli::{run as sonora, text};

/// A 1 s, 16×16 dataset with 4 train and 2 test clips.
fn dataset(dir: &Path) {
    cli::tiny_dataset(dir, 4, 1, 2, &[]);
}

/// A recipe training the tiny model on `data` into `runs` (`extra` appended).
fn recipe(dir: &Path, data: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join(format!("r{}.toml", extra.len()));
    std::fs::write(
        &p,
        format!(
            "[run]\nname = \"r\"\nout_dir = \"{}\"\n{}[data]\npath = \"{}\"\n[data.loader]\nbatch_size = 2\nworkers = 1\n[train]\nsteps = 1\n[checkpoint]\nevery = 1\n[sample]\nprompts = []\n{extra}",
            dir.join("runs").display(),
            tiny_model::model_toml(32, 1),
            data.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn every_bad_input_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    dataset(&data);
    let cfg = |name: &str, body: &str| {
        let p = t.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let model = std::fs::read_to_string("configs/model/quickstart.toml").unwrap();
    let with = |key: &str, value: &str| {
        model
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let huge_clip = cfg(
        "huge.toml",
        &with("frames", "17179869184")
            .replace("height = 32", "height = 1048576")
            .replace("width = 32", "width = 1048576"),
    );
    let wide = cfg(
        "wide.toml",
        &with("d_model", "4294967296").replace("depth = 4", "depth = 4294967296"),
    );
    let long_clip = cfg("long.toml", &with("frames", "1048576"));
    // a dataset whose manifest points outside it
    let escaped = t.join("escaped");
    std::fs::create_dir_all(&escaped).unwrap();
    let man = std::fs::read_to_string(data.join("manifest.json")).unwrap();
    let first = serde_json::from_str::<serde_json::Value>(&man).unwrap()["shards"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        escaped.join("manifest.json"),
        man.replace(&format!("\"{first}\""), &format!("\"../data/{first}\"")),
    )
    .unwrap();
    // a dataset with one damaged shard
    let damaged = t.join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, damaged.join(p.file_name().unwrap())).unwrap();
        }
    }
    let shard = damaged.join(&first);
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::write(&shard, &std::fs::read(&shard).unwrap()[..len as usize / 2]).unwrap();
    let out_file = cfg("taken.mp4", "not a directory");
    let r = recipe(t, &data, "");
    let r = r.to_str().unwrap();
    let nothing = t.join("no-such-dir");
    let nothing = nothing.to_str().unwrap();
    let (esc, dmg) = (escaped.to_str().unwrap(), damaged.to_str().unwrap());

    // (command line, what the message must name)
    let rows: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // sizes: overflow and runaway allocation, each named by key
        (
            vec!["model", "info", &huge_clip],
            vec!["`frames`", "at most"],
        ),
        (vec!["model", "info", &wide], vec!["`d_model`", "at most"]),
        (
            vec!["model", "info", &long_clip],
            vec!["`frames`", "3600 s"],
        ),
        (
            vec![
                "data",
                "synth",
                "--config",
                "configs/data/quickstart.toml",
                "--out",
                nothing,
                "--set",
                "synth.width=4096",
                "--set",
                "synth.height=4096",
                "--set",
                "synth.duration_s=600",
                "--set",
                "synth.fps=240",
            ],
            vec![
                "would need about",
                "GiB",
                "synth.width",
                "SONORA_MEMORY_LIMIT_GB",
            ],
        ),
        (
            vec![
                "sample",
                "--checkpoint",
                nothing,
                "--prompt",
                "a ball",
                "--steps",
                "4000000000",
            ],
            vec!["--steps", "at most 10000"],
        ),
        // silent before: an empty prompt, a negative guidance scale, a bad log filter
        (
            vec!["sample", "--checkpoint", nothing, "--prompt", ""],
            vec!["--prompt #1", "empty"],
        ),
        (
            vec![
                "sample",
                "--checkpoint",
                nothing,
                "--prompt",
                "a ball",
                "--cfg=-50",
            ],
            vec!["--cfg", "[0, 100]"],
        ),
        (
            vec!["--log", "loud", "model", "info", "configs/model/tiny.toml"],
            vec!["--log", "`loud` is not a log level"],
        ),
        // outputs checked before the work
        (
            vec![
                "sample",
                "--checkpoint",
                nothing,
                "--prompt",
                "a ball",
                "--out",
                &out_file,
            ],
            vec!["--out", "not a directory"],
        ),
        // paths that leave their root
        (
            vec!["data", "validate", esc],
            vec!["manifest.json", "leaves its directory"],
        ),
        (
            vec!["data", "stats", esc],
            vec!["manifest.json", "leaves its directory"],
        ),
        // errors that name their source
        (
            vec![
                "data",
                "synth",
                "--config",
                "configs/data/quickstart.toml",
                "--out",
                nothing,
                "--set",
                "synth.bogus=3",
            ],
            vec!["--set synth.bogus=3", "bogus"],
        ),
        (
            vec!["train", r, "--set", "data.loader.temporal_crop=sideways"],
            vec![
                "--set data.loader.temporal_crop=sideways",
                "`sideways` is not one of `start`, `center`, `random`",
            ],
        ),
        (
            vec!["train", r, "--resume", "latest"],
            vec!["--resume latest", "`auto`", "checkpoint directory"],
        ),
        (
            vec!["train", r, "--set", "data.loader.batch_size=0"],
            vec!["data.loader.batch_size"],
        ),
        // [data.loader] keys that training takes from elsewhere are refused, not ignored
        (
            vec!["train", r, "--set", "data.loader.frames=32"],
            vec!["data.loader.frames = 32", "model config (frames = 8)"],
        ),
        (
            vec!["train", r, "--set", "data.loader.seed=5"],
            vec!["data.loader.seed = 5", "run.seed"],
        ),
        (vec!["data", "stats", dmg], vec![first.as_str()]),
        (vec!["data", "stats", nothing], vec!["no-such-dir"]),
    ];
    let mut failures = Vec::new();
    for (args, want) in &rows {
        let o = sonora(args);
        let msg = text(&o);
        let ok = !o.status.success()
            && !msg.contains("panicked")
            && want.iter().all(|w| msg.contains(w))
            // an OS error's text appears once, not once per layer of context
            && msg.matches("(os error").count() <= 1;
        if !ok {
            failures.push(format!(
                "sonora {}\n  exit {:?}, wanted {want:?}\n  {msg}",
                args.join(" "),
                o.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn counting_a_huge_model_allocates_nothing() {
    // 2^16 wide and 2^10 deep: billions of parameters, counted from the config alone
    let tmp = tempfile::tempdir().unwrap();
    let model = std::fs::read_to_string("configs/model/quickstart.toml")
        .unwrap()
        .replace("d_model = 128", "d_model = 65536")
        .replace("depth = 4", "depth = 1024");
    let p = tmp.path().join("big.toml");
    std::fs::write(&p, model).unwrap();
    let o = sonora(&["model", "info", p.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total = v["params"]["total"].as_u64().unwrap();
    // 12·d² per joint block (attention, cross-attention, MLP at ratio 4 and AdaLN) × 1024
    assert!(total > 1024 * 12 * 65536u64 * 65536, "{total}");
    assert!(
        v["memory_gib_sampling_one_clip"].as_f64().unwrap() > 1000.0,
        "{v}"
    );
}

#[test]
fn a_run_that_failed_during_setup_does_not_block_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    dataset(&data);
    // a bad data path: the run fails before its first step
    let bad = recipe(t, &t.join("missing"), "");
    let o = sonora(&["train", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("data.path"), "{}", text(&o));
    assert!(
        !t.join("runs/r").exists(),
        "the failed run left its directory"
    );
    // a batch too large for memory: refused before anything is allocated
    let o = sonora(&[
        "train",
        bad.to_str().unwrap(),
        "--set",
        &format!("data.path={}", data.display()),
        "--set",
        "data.loader.batch_size=100000000",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("would need about"), "{}", text(&o));
    assert!(
        !t.join("runs/r").exists(),
        "the failed run left its directory"
    );
    // a directory left by an older sonora that never reached a step is replaced, not a blocker
    std::fs::create_dir_all(t.join("runs/r")).unwrap();
    std::fs::write(t.join("runs/r/config.toml"), "").unwrap();
    let good = recipe(t, &data, "# fixed\n");
    let o = sonora(&["train", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        t.join("runs/r/checkpoints/step-000001/manifest.json")
            .is_file()
    );
    // a run that did step is still protected
    let o = sonora(&["train", good.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));
}
