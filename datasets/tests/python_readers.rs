//! The shards are plain Parquet: pyarrow, polars, DuckDB and Hugging Face `datasets`
//! read them as they are (installed by `scripts/setup.sh --test`).

use std::path::Path;
use std::process::Command;

use sonora_datasets::codec::record_from_clip;
use sonora_datasets::labels::PhysicsLabels;
use sonora_datasets::{DatasetWriter, WriterOptions};
use sonora_framework::media::Mp4Options;
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

fn clip(i: usize) -> Clip {
    let mut frames = Frames::zeros(6, 16, 16);
    frames
        .data
        .iter_mut()
        .enumerate()
        .for_each(|(k, v)| *v = ((k + i * 7) % 251) as u8);
    Clip {
        frames,
        audio: Audio::silence(6000, 1, 8000),
        fps: 8.0,
        caption: format!("caption {i}"),
        metadata: ClipMetadata {
            clip_id: format!("p{i:02}"),
            tags: vec!["interop".into(), format!("n{i}")],
            ..Default::default()
        },
    }
}

fn labels() -> PhysicsLabels {
    PhysicsLabels {
        gravity: 123.5,
        floor_material: "wood".into(),
        floor_restitution: 0.6,
        wall_material: "stone".into(),
        wall_restitution: 0.5,
        floor_y: 14.0,
        occluder: None,
        objects: vec![],
        contacts: vec![],
    }
}

#[test]
fn pyarrow_polars_duckdb_and_datasets_read_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        target_shard_bytes: 8_000,
        rows_per_group: 2,
        ..Default::default()
    };
    let mut w = DatasetWriter::create(dir.path(), "test", opts).unwrap();
    let mut frames = 0;
    let mut video_bytes = 0;
    for i in 0..7 {
        let r =
            record_from_clip(&clip(i), "train", Some(labels()), &Mp4Options::default()).unwrap();
        frames += r.num_frames as i64;
        video_bytes += r.video.bytes.len() as i64;
        w.write(r).unwrap();
    }
    let m = w.finish().unwrap();
    assert!(m.shards.len() > 1, "the test wants several shards");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/read_shards.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", dir.path().join("hf"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python readers failed (run `bash scripts/setup.sh --test`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["files"].as_u64().unwrap() as usize, m.shards.len());
    let pa = &j["pyarrow"];
    assert_eq!(pa["rows"], 7);
    assert_eq!(pa["schema_version"], "1");
    assert_eq!(pa["video_type"], "struct<bytes: binary, path: string>");
    assert_eq!(pa["first_video_head"], "ftyp", "video bytes are an MP4");
    assert_eq!(pa["gravity"], 123.5);
    let ids: Vec<String> = (0..7).map(|i| format!("p{i:02}")).collect();
    assert_eq!(pa["clip_ids"], serde_json::json!(ids));
    assert_eq!(j["polars"]["rows"], 7);
    assert_eq!(j["polars"]["frames_sum"], frames);
    assert_eq!(j["polars"]["tags_first"][0], "interop");
    assert_eq!(j["duckdb"]["rows"], 7);
    assert_eq!(j["duckdb"]["video_bytes"], video_bytes);
    assert_eq!(j["datasets"]["rows"], 7);
    assert_eq!(
        j["datasets"]["video_keys"],
        serde_json::json!(["bytes", "path"])
    );
    assert_eq!(
        j["datasets"]["first_audio_head"], "RIFF",
        "audio bytes are a WAV"
    );
}

/// Runs `python3 -c SCRIPT`, which must succeed; its stdout.
fn python(script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every record of a shard, in order.
fn records_of(root: &Path, name: &str) -> Vec<sonora_datasets::schema::ClipRecord> {
    let r = sonora_datasets::reader::ShardReader::open(root, name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (0..r.num_row_groups())
        .flat_map(|g| r.read_records(g, None).unwrap())
        .map(|x| x.unwrap())
        .collect()
}

/// A shard read and written back by pyarrow with its defaults (lists in the Parquet
/// specification's layout, element field `element`) or the legacy layout reads exactly
/// as the original: same records, one layout for every reader after it.
#[test]
fn shards_rewritten_by_pyarrow_read_as_the_originals() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(dir.path(), "test", WriterOptions::default()).unwrap();
    for i in 0..3 {
        w.write(
            record_from_clip(&clip(i), "train", Some(labels()), &Mp4Options::default()).unwrap(),
        )
        .unwrap();
    }
    let m = w.finish().unwrap();
    let shard = m.shards[0].path.clone();
    let original = records_of(dir.path(), &shard);
    assert_eq!(original.len(), 3);
    for (name, compliant, element) in [
        ("pyarrow.parquet", "True", "element"),
        ("legacy.parquet", "False", "item"),
    ] {
        let py = format!(
            "import pyarrow.parquet as pq\n\
             t = pq.read_table({src:?})\n\
             pq.write_table(t, {dst:?}, use_compliant_nested_type={compliant})\n\
             print(pq.read_schema({dst:?}).field('tags').type.value_field.name)\n",
            src = dir.path().join(&shard).display().to_string(),
            dst = dir.path().join(name).display().to_string(),
        );
        assert_eq!(python(&py).trim(), element, "{name}'s list layout");
        assert_eq!(
            records_of(dir.path(), name),
            original,
            "{name} reads as the original"
        );
    }
    // polars and DuckDB rewrite it without the file's key-value metadata (and DuckDB with
    // its own list layout and snappy pages): the columns make it a v1 shard
    let src = dir.path().join(&shard).display().to_string();
    let pl = dir.path().join("polars.parquet").display().to_string();
    let dk = dir.path().join("duckdb.parquet").display().to_string();
    let py = format!(
        "import polars, duckdb\n\
         polars.read_parquet({src:?}).write_parquet({pl:?})\n\
         duckdb.sql(\"COPY (SELECT * FROM read_parquet('{src}')) TO '{dk}' (FORMAT parquet)\")\n"
    );
    python(&py);
    for name in ["polars.parquet", "duckdb.parquet"] {
        assert_eq!(
            records_of(dir.path(), name),
            original,
            "{name} reads as the original"
        );
    }
    // a Parquet file that is not a clip shard still says so
    let other = dir.path().join("other.parquet").display().to_string();
    let py = format!("import polars\npolars.DataFrame({{'a': [1]}}).write_parquet({other:?})\n");
    python(&py);
    let e = sonora_datasets::reader::ShardReader::open(dir.path(), "other.parquet")
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a sonora clip shard"), "{e}");
}
