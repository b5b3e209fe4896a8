//! `sonora data import`: a dataset made by Hugging Face `datasets` (video bytes in the
//! `Video` convention, `to_parquet` and `save_to_disk`), one written by polars with media
//! paths; the same clips as `data ingest` of the same files; then training on the import.
#![cfg(feature = "ffmpeg")]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dataset.rs"]
mod dataset;
#[path = "support/media_folder.rs"]
mod media_folder;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use std::collections::BTreeMap;
use std::path::Path;

use sonora_datasets::ClipRecord;

/// The clip shape of the tiny test model (8 frames of 16×16 at 8 fps, 16 kHz).
const SHAPE: &[&str] = &[
    "--set",
    "ingest.width=16",
    "--set",
    "ingest.height=16",
    "--set",
    "ingest.fps=8",
    "--set",
    "ingest.clip_seconds=1",
    "--set",
    "ingest.sample_rate=16000",
];

fn report(ds: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ds.join("import_report.json")).unwrap()).unwrap()
}

/// Every clip of a dataset, by clip id.
fn clips(ds: &Path) -> BTreeMap<String, ClipRecord> {
    dataset::records(ds)
        .into_iter()
        .map(|c| (c.clip_id.clone(), c))
        .collect()
}

fn ingest_args(mut v: Vec<&str>) -> Vec<&str> {
    v.extend_from_slice(SHAPE);
    v
}

#[test]
fn a_hugging_face_dataset_imports_from_parquet_and_from_save_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let names = ["h264_aac.mp4", "vp9_opus.webm", "hevc_mp3.mov", "short.mp4"];
    media_folder::make_named(&media, &names);
    cli::python(&format!(
        r#"
from datasets import Dataset, Features, Video, Value
names = {names:?}
rows = [{{"bytes": open("{m}/" + n, "rb").read(), "path": n}} for n in names] + [None]
ds = Dataset.from_dict(
    {{"video": rows,
      "text": ["clip " + n for n in names] + ["no video"],
      "split": ["train", "validation", "test", "train", "train"],
      "label": [1, 2, 3, 4, 5]}},
    features=Features({{"video": Video(), "text": Value("string"), "split": Value("string"),
                        "label": Value("int64")}}))
ds.to_parquet("{d}/hf.parquet")
ds.save_to_disk("{d}/saved")
"#,
        m = media.display(),
        d = dir.path().display()
    ));
    let from_parquet = dir.path().join("ds-parquet");
    let text = cli::ok(&ingest_args(vec![
        "data",
        "import",
        dir.path().join("hf.parquet").to_str().unwrap(),
        "--out",
        from_parquet.to_str().unwrap(),
        "--split-by",
        "split",
    ]));
    let rep = report(&from_parquet);
    assert_eq!(rep["rows_seen"], 5, "{text}");
    assert_eq!(rep["rows_imported"], 3, "{text}");
    assert_eq!(rep["columns"]["caption"], "text");
    assert_eq!(rep["columns_not_imported"], serde_json::json!(["label"]));
    assert!(text.contains("label"), "{text}");
    let bad: Vec<(u64, String)> = rep["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["row"].as_u64().unwrap(),
                b["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].0, 3);
    assert!(bad[0].1.contains("shorter than"), "{bad:?}");
    assert_eq!(bad[1].0, 4);
    assert!(bad[1].1.contains("null"), "{bad:?}");
    let a = clips(&from_parquet);
    let by_caption: BTreeMap<&str, &str> = a
        .values()
        .map(|c| (c.caption.as_str(), c.split.as_str()))
        .collect();
    assert_eq!(by_caption["clip h264_aac.mp4"], "train");
    assert_eq!(by_caption["clip vp9_opus.webm"], "val");
    assert_eq!(by_caption["clip hevc_mp3.mov"], "test");
    assert!(
        a.values()
            .all(|c| c.num_frames == 8 && c.tags.contains(&"imported".to_string()))
    );
    // 2.5 s → two 1 s clips and a 0.5 s remainder (dropped: min_clip_seconds 1); 1.5 s → one
    assert_eq!(a.len(), 2 + 1 + 1);

    // save_to_disk's Arrow stream: the same clips
    let from_saved = dir.path().join("ds-saved");
    cli::ok(&ingest_args(vec![
        "data",
        "import",
        dir.path().join("saved").to_str().unwrap(),
        "--out",
        from_saved.to_str().unwrap(),
        "--split-by",
        "split",
    ]));
    let b = clips(&from_saved);
    let strip = |m: &BTreeMap<String, ClipRecord>| {
        let mut v: Vec<_> = m
            .values()
            .map(|c| (c.split.clone(), c.caption.clone(), c.video.bytes.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&a), strip(&b));
    cli::ok(&["data", "validate", from_saved.to_str().unwrap()]);
}

#[test]
fn a_polars_table_of_media_paths_imports_as_ingest_does_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let names = [
        "h264_aac.mp4",
        "h264_flac.mkv",
        "av1_vorbis.mkv",
        "portrait.mp4",
        "mpeg4_pcm.avi",
    ];
    media_folder::make_named(&media, &names);
    cli::python(&format!(
        r#"
import polars as pl
names = {names:?}
pl.DataFrame({{
    "clip": names + ["https://example.com/v.mp4", "missing.mp4"],
    "prompt": ["a pattern from " + n for n in names] + ["remote", "gone"],
    "id": ["c%d" % i for i in range(len(names) + 2)],
    "labels": [["pattern", "test"]] * (len(names) + 2),
}}).write_parquet("{m}/table.parquet")
"#,
        m = media.display()
    ));
    let imported = dir.path().join("imported");
    let text = cli::ok(&ingest_args(vec![
        "data",
        "import",
        media.join("table.parquet").to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
        "--map",
        "video=clip,caption=prompt,tags=labels",
        "--split",
        "train",
    ]));
    let rep = report(&imported);
    assert_eq!(rep["rows_imported"], 5, "{text}");
    let reasons: Vec<&str> = rep["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("remote URL"), "{reasons:?}");
    assert!(reasons[1].contains("does not exist"), "{reasons:?}");
    let imp = clips(&imported);
    assert!(
        imp.contains_key("c0-000") && imp.contains_key("c0-001"),
        "{:?}",
        imp.keys()
    );
    assert!(
        imp.values()
            .all(|c| c.split == "train" && c.tags.contains(&"pattern".to_string()))
    );

    // the same files through data ingest: the same clips, byte for byte
    let ingested = dir.path().join("ingested");
    cli::ok(&ingest_args(vec![
        "data",
        "ingest",
        media.to_str().unwrap(),
        "--out",
        ingested.to_str().unwrap(),
        "--set",
        "ingest.val_fraction=0",
        "--set",
        "ingest.test_fraction=0",
    ]));
    let ing = clips(&ingested);
    let by_source = |m: &BTreeMap<String, ClipRecord>| {
        let mut v: Vec<_> = m
            .values()
            .map(|c| (c.source_path.clone(), c.video.bytes.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(by_source(&imp), by_source(&ing));

    // a few training steps on the import
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nname = \"imp\"\nout_dir = \"{}\"\nseed = 1\n\n{}\n[data]\npath = \"{}\"\n\n[data.loader]\nbatch_size = 2\nworkers = 1\n\n[train]\nsteps = 3\nlog_every = 1\n\n[checkpoint]\nevery = 3\n\n[sample]\nprompts = []\n",
            dir.path().join("runs").display(),
            tiny_model::model_toml(32, 1),
            imported.display()
        ),
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let out = cli::ok(&["train", recipe.to_str().unwrap()]);
    let metrics = std::fs::read_to_string(runs.join("imp/metrics.jsonl")).unwrap_or_default();
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"loss\"")).count(),
        3,
        "{out}\n{metrics}"
    );
}

#[test]
fn bad_sources_and_maps_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    cli::python(&format!(
        "import polars as pl\npl.DataFrame({{'name': ['a'], 'n': [1]}}).write_parquet('{}/t.parquet')",
        dir.path().display()
    ));
    let t = dir.path().join("t.parquet");
    let out = dir.path().join("o");
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["t.parquet", "no video column", "name, n"]),
        (
            &["--map", "video=nope"],
            &["--map video=nope", "no column `nope`"],
        ),
        (
            &["--map", "video=n"],
            &["column `n`", "struct<bytes, path>"],
        ),
        (
            &["--map", "colour=name"],
            &["unknown field `colour`", "caption"],
        ),
        (
            &["--map", "video=name,split=n"],
            &["split=n", "--split-by n"],
        ),
        (
            &["--split", "holdout"],
            &["--split holdout", "train, val or test"],
        ),
        (
            &["--map", "video=name", "--split-by", "nope"],
            &["--split-by nope", "no column"],
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec![
            "data",
            "import",
            t.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = cli::run(&args);
        let text = cli::text(&o);
        assert!(
            !o.status.success() && !text.contains("panicked"),
            "{args:?}: {text}"
        );
        for w in *want {
            assert!(text.contains(w), "{args:?}: want {w:?} in {text}");
        }
        assert!(!out.exists(), "{args:?}: nothing written");
    }
}
