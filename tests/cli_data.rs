//! `sonora data …` end to end through the binary: help, synth → stats → validate →
//! filter, and clear errors for bad configs and broken datasets.

use std::path::Path;
use std::process::{Command, Output};

fn sonora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonora"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("sonora runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_data_subcommand_explains_itself() {
    let top = sonora(&["--help"]);
    assert!(top.status.success());
    assert!(text(&top).contains("data"), "{}", text(&top));
    for sub in [
        "synth", "ingest", "import", "stats", "filter", "validate", "reindex",
    ] {
        let o = sonora(&["data", sub, "--help"]);
        assert!(o.status.success(), "data {sub} --help: {}", text(&o));
        assert!(text(&o).contains("Usage: sonora data"), "{}", text(&o));
    }
}

#[test]
fn synth_stats_validate_filter_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let ds_s = ds.to_str().unwrap();
    let o = sonora(&[
        "data",
        "synth",
        "--config",
        "configs/data/quickstart.toml",
        "--out",
        ds_s,
        "--set",
        "synth.train=6",
        "--set",
        "synth.val=3",
        "--set",
        "synth.test=2",
        "--set",
        "synth.width=32",
        "--set",
        "synth.height=32",
        "--set",
        "synth.duration_s=1.5",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ds.join("manifest.json").is_file());
    assert!(ds.join("characters/roster.json").is_file());

    // a second synth into the same place is refused without --overwrite
    let again = sonora(&[
        "data",
        "synth",
        "--config",
        "configs/data/quickstart.toml",
        "--out",
        ds_s,
    ]);
    assert!(!again.status.success());

    let v = sonora(&["data", "validate", ds_s]);
    assert!(v.status.success(), "{}", text(&v));

    let s = sonora(&["data", "stats", ds_s, "--json"]);
    assert!(s.status.success(), "{}", text(&s));
    let j: serde_json::Value = serde_json::from_slice(&s.stdout).expect("stats JSON");
    assert!(j.to_string().contains("\"train\""), "{j}");
    let human = sonora(&["data", "stats", ds_s]);
    assert!(
        human.status.success() && text(&human).contains("duration"),
        "{}",
        text(&human)
    );

    let out = dir.path().join("val");
    let f = sonora(&[
        "data",
        "filter",
        ds_s,
        "--where",
        "split = 'val'",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(f.status.success(), "{}", text(&f));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let total: u64 = m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3);
    let bad = sonora(&[
        "data",
        "filter",
        ds_s,
        "--where",
        "no_such_column > 1",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("no_such_column"), "{}", text(&bad));

    // corrupt one shard: validate must fail naming it
    let shard = first_shard(&ds);
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();
    let v = sonora(&["data", "validate", ds_s]);
    assert!(!v.status.success());
    let name = shard.file_name().unwrap().to_str().unwrap();
    assert!(text(&v).contains(name), "{}", text(&v));
}

fn first_shard(ds: &Path) -> std::path::PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(ds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v.remove(0)
}

#[test]
fn unknown_config_key_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, "[synth]\nseed = 1\nwidht = 64\n").unwrap();
    let o = sonora(&[
        "data",
        "synth",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("widht") && t.contains("typo.toml") && t.contains("did you mean `width`"),
        "{t}"
    );
    assert!(
        !dir.path().join("o").exists(),
        "nothing is written for a bad config"
    );
}
