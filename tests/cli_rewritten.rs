//! A dataset whose shards were rewritten in place by pyarrow, polars or DuckDB: `data
//! validate` flags the altered files and names `data reindex`; after reindexing it
//! validates, reads the same records as the original, trains to the same losses and
//! scores the same in the eval.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dataset.rs"]
mod dataset;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use std::path::Path;
use std::process::Command;

use dataset::records;

/// Python that rewrites the shard at `p` in place with one tool.
fn rewrite(tool: &str, p: &str) -> String {
    match tool {
        "pyarrow" => {
            format!("import pyarrow.parquet as pq\npq.write_table(pq.read_table({p:?}), {p:?})\n")
        }
        "polars" => {
            format!("import polars\ndf = polars.read_parquet({p:?})\ndf.write_parquet({p:?})\n")
        }
        "duckdb" => format!(
            "import duckdb, os\nduckdb.sql(\"COPY (SELECT * FROM read_parquet('{p}')) TO '{p}.tmp' (FORMAT parquet)\")\nos.replace({p:?} + '.tmp', {p:?})\n"
        ),
        _ => unreachable!(),
    }
}

#[test]
fn shards_rewritten_in_place_validate_after_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    cli::tiny_dataset(&ds, 8, 4, 0, &[]);
    let original = records(&ds);
    let ds_s = ds.to_str().unwrap();
    let m = sonora_datasets::Manifest::load(&ds).unwrap();
    // each shard by a different tool
    for (shard, tool) in m
        .shards
        .iter()
        .zip(["pyarrow", "polars", "duckdb"].iter().cycle())
    {
        let p = ds.join(&shard.path).display().to_string();
        cli::python(&rewrite(tool, &p));
    }
    let o = cli::run(&["data", "validate", ds_s]);
    let text = cli::text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("sha256 mismatch") && text.contains("sonora data reindex"),
        "{text}"
    );

    let out = cli::ok(&["data", "reindex", ds_s]);
    assert!(out.contains("sha256"), "{out}");
    cli::ok(&["data", "validate", ds_s]);
    assert_eq!(
        records(&ds),
        original,
        "the rewritten shards read as the originals"
    );
    // a second reindex finds nothing to change
    assert!(cli::ok(&["data", "reindex", ds_s]).contains("already matches"));

    // a shard that really differs is refused, and the manifest is left alone
    let first = ds.join(&m.shards[0].path).display().to_string();
    let py = format!(
        "import pyarrow.parquet as pq\nt = pq.read_table({first:?})\npq.write_table(t.drop_columns(['caption']), {first:?})\n"
    );
    cli::python(&py);
    let before = std::fs::read(ds.join("manifest.json")).unwrap();
    let o = cli::run(&["data", "reindex", ds_s]);
    let text = cli::text(&o);
    assert!(
        !o.status.success() && text.contains("caption") && text.contains(&m.shards[0].path),
        "{text}"
    );
    assert_eq!(std::fs::read(ds.join("manifest.json")).unwrap(), before);
}

#[test]
fn a_reindexed_rewrite_trains_and_scores_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    cli::tiny_dataset(&a, 8, 2, 3, &[]);
    let b = dir.path().join("b");
    let o = Command::new("cp")
        .args(["-r", a.to_str().unwrap(), b.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(o.success());
    for s in sonora_datasets::Manifest::load(&b).unwrap().shards {
        let p = b.join(&s.path).display().to_string();
        cli::python(&rewrite("polars", &p));
    }
    cli::ok(&["data", "reindex", b.to_str().unwrap()]);
    let loss = |data: &Path, name: &str| -> String {
        let recipe = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &recipe,
            format!(
                "[run]\nname = \"{name}\"\nout_dir = \"{}\"\nseed = 1\n\n{}\n[data]\npath = \"{}\"\n\n[data.loader]\nbatch_size = 2\nworkers = 1\n\n[train]\nsteps = 3\nlog_every = 1\n\n[checkpoint]\nevery = 3\n\n[sample]\nprompts = []\n",
                dir.path().join("runs").display(),
                tiny_model::model_toml(32, 1),
                data.display()
            ),
        )
        .unwrap();
        cli::ok(&["train", recipe.to_str().unwrap()]);
        let m = std::fs::read_to_string(dir.path().join("runs").join(name).join("metrics.jsonl"))
            .unwrap();
        // the losses, without the wall-clock fields
        m.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {}", v["step"], v["loss"])
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // the eval scores the data's own test clips the same
    let score = |data: &Path, name: &str| -> serde_json::Value {
        let suite = dir.path().join(format!("suite-{name}.toml"));
        std::fs::write(
            &suite,
            format!(
                "[suite]\nname = \"phys\"\ndata = \"{}\"\nsplit = \"test\"\nclips = 3\nmodes = [\"text\", \"sound\"]\nbatch = 4\n[sampler]\nsteps = 3\n",
                data.display()
            ),
        )
        .unwrap();
        let out = dir.path().join(format!("eval-{name}"));
        cli::ok(&[
            "eval",
            "data",
            "--suite",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        serde_json::json!({"score": r["score"], "metrics": r["metrics"]})
    };
    let sa = score(&a, "orig");
    assert!(sa["score"].as_f64().is_some_and(|x| x > 0.0), "{sa}");
    assert_eq!(sa, score(&b, "rewritten"), "the same eval report");
    let la = loss(&a, "orig");
    assert!(la.lines().count() >= 3 && !la.contains("null"), "{la}");
    assert_eq!(la, loss(&b, "rewritten"), "the same losses step for step");
}
