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
