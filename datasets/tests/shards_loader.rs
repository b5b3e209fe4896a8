//! Shard writer, reader and streaming loader: round trips, sharding, determinism,
//! resumption and the bad-row policy.

use std::collections::HashSet;
use std::path::Path;

use sonora_datasets::codec::record_from_clip;
use sonora_datasets::loader::{BadRowPolicy, Bucket, Loader, LoaderConfig};
use sonora_datasets::{ClipRecord, Dataset, DatasetError, DatasetWriter, WriterOptions};
use sonora_framework::media::Mp4Options;
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

/// A clip with a square moving right and a click at frame 2; `i` sets its colour.
fn make_clip(i: usize, h: usize, w: usize, t: usize, fps: f64) -> Clip {
    let mut frames = Frames::zeros(t, h, w);
    for k in 0..t {
        let f = frames.frame_mut(k);
        for px in f.chunks_mut(3) {
            px.copy_from_slice(&[40, 40, 40]);
        }
        let x0 = (k * 2) % (w - 8);
        for y in h / 2 - 4..h / 2 + 4 {
            for x in x0..x0 + 8 {
                let p = (y * w + x) * 3;
                f[p..p + 3].copy_from_slice(&[
                    (i * 37 % 200) as u8 + 50,
                    200,
                    (i * 91 % 200) as u8,
                ]);
            }
        }
    }
    let sr = 16_000;
    let n = (t as f64 / fps * sr as f64).round() as usize;
    let mut audio = Audio::silence(n, 1, sr);
    let click = (2.0 / fps * sr as f64) as usize;
    for j in 0..40 {
        audio.samples[click + j] = 0.8 * (1.0 - j as f32 / 40.0);
    }
    Clip {
        frames,
        audio,
        fps,
        caption: format!("clip number {i}"),
        metadata: ClipMetadata {
            clip_id: format!("c{i:03}"),
            tags: vec!["test".into()],
            ..Default::default()
        },
    }
}

fn record(i: usize, split: &str) -> ClipRecord {
    record_from_clip(
        &make_clip(i, 32, 32, 8, 8.0),
        split,
        None,
        &Mp4Options::default(),
    )
    .unwrap()
}

fn write_dataset(dir: &Path, n: usize, rows_per_group: usize, shard_bytes: u64) -> Vec<ClipRecord> {
    let opts = WriterOptions {
        target_shard_bytes: shard_bytes,
        rows_per_group,
        ..Default::default()
    };
    let mut w = DatasetWriter::create(dir, "test", opts).unwrap();
    let recs: Vec<_> = (0..n).map(|i| record(i, "train")).collect();
    for r in &recs {
        w.write(r.clone()).unwrap();
    }
    w.finish().unwrap();
    recs
}

fn cfg() -> LoaderConfig {
    LoaderConfig {
        frames: 4,
        height: 16,
        width: 16,
        fps: 8.0,
        sample_rate: 8_000,
        batch_size: 3,
        workers: 2,
        shuffle_window: 5,
        seed: 11,
        ..Default::default()
    }
}

fn ids(loader: &mut Loader) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(b) = loader.next_batch().unwrap() {
        out.extend(b.samples.into_iter().map(|s| s.clip_id));
    }
    out
}

#[test]
fn writer_shards_and_reader_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let recs = write_dataset(dir.path(), 13, 4, 1);
    let ds = Dataset::open(dir.path()).unwrap();
    // A 1-byte target closes a shard after every row group: 4 shards of ≤4 rows.
    assert_eq!(ds.manifest.shards.len(), 4);
    assert_eq!(ds.manifest.total_clips(), 13);
    let mut back = Vec::new();
    for s in ds.shards(None) {
        assert_eq!(
            sonora_framework::fsutil::sha256_file(&dir.path().join(&s.path)).unwrap(),
            s.sha256
        );
        let r = ds.open_shard(&s).unwrap();
        assert_eq!(r.num_rows() as u64, s.rows);
        for g in 0..r.num_row_groups() {
            back.extend(
                r.read_records(g, None)
                    .unwrap()
                    .into_iter()
                    .map(Result::unwrap),
            );
        }
    }
    assert_eq!(back, recs);
    // No temp files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // Writing again over an existing dataset is refused without overwrite.
    let again = DatasetWriter::create(dir.path(), "test", WriterOptions::default());
    assert!(matches!(again, Err(DatasetError::Manifest { .. })));
}

#[test]
fn ranks_are_disjoint_and_complete_and_order_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 17, 4, 1 << 20);
    let ds = Dataset::open(dir.path()).unwrap();
    let mut all = Vec::new();
    for rank in 0..3 {
        let mut l = Loader::new(&ds, cfg(), rank, 3).unwrap();
        all.extend(ids(&mut l));
    }
    assert_eq!(all.len(), 17);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 17);

    let mut one = Loader::new(
        &ds,
        LoaderConfig {
            workers: 1,
            ..cfg()
        },
        0,
        1,
    )
    .unwrap();
    let mut four = Loader::new(
        &ds,
        LoaderConfig {
            workers: 4,
            ..cfg()
        },
        0,
        1,
    )
    .unwrap();
    let (a, b) = (ids(&mut one), ids(&mut four));
    assert_eq!(a, b, "worker count must not change the order");
    let next_epoch = ids(&mut one);
    assert_eq!(next_epoch.len(), 17);
    assert_ne!(a, next_epoch, "each epoch reshuffles");
    let mut other_seed = Loader::new(&ds, LoaderConfig { seed: 12, ..cfg() }, 0, 1).unwrap();
    assert_ne!(a, ids(&mut other_seed));
}

#[test]
fn samples_have_the_target_shape_and_batches_stack() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 5, 4, 1 << 20);
    let ds = Dataset::open(dir.path()).unwrap();
    let mut l = Loader::new(
        &ds,
        LoaderConfig {
            shuffle: false,
            ..cfg()
        },
        0,
        1,
    )
    .unwrap();
    let b = l.next_batch().unwrap().unwrap();
    assert_eq!(b.len(), 3);
    let s = &b.samples[0];
    assert_eq!((s.frames.t, s.frames.h, s.frames.w), (4, 16, 16));
    // 4 frames at 8 fps = 0.5 s, centred in a 1 s clip, at 8 kHz.
    assert_eq!(s.audio.num_frames(), 4000);
    assert!((s.start_s - 0.25).abs() < 1e-9);
    assert_eq!(b.video_u8().len(), 3 * 4 * 16 * 16 * 3);
    assert_eq!(b.audio_f32().len(), 3 * 4000);
    // The click at 0.25 s in the source sits at the start of the cut audio.
    let peak = s
        .audio
        .samples
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0;
    assert!(
        peak < 40,
        "click should start the cut, found at sample {peak}"
    );
}

#[test]
fn resumed_loader_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 23, 4, 1 << 20);
    let ds = Dataset::open(dir.path()).unwrap();
    // Two buckets (square and wide) so partly filled buckets must survive the resume.
    let c = LoaderConfig {
        buckets: vec![Bucket {
            frames: 4,
            height: 8,
            width: 16,
        }],
        ..cfg()
    };
    let mut full = Loader::new(&ds, c.clone(), 0, 1).unwrap();
    let mut reference = Vec::new();
    for _ in 0..2 {
        reference.extend(ids(&mut full));
    }
    let mut first = Loader::new(&ds, c.clone(), 0, 1).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(
            first
                .next_batch()
                .unwrap()
                .unwrap()
                .samples
                .into_iter()
                .map(|s| s.clip_id),
        );
    }
    let state = first.state();
    let json = serde_json::to_string(&state).unwrap();
    drop(first);
    let mut resumed = Loader::new(&ds, c, 0, 1).unwrap();
    resumed.restore(serde_json::from_str(&json).unwrap());
    for _ in 0..2 {
        got.extend(ids(&mut resumed));
    }
    assert_eq!(got, reference);
}

#[test]
fn bad_rows_error_names_the_row_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        rows_per_group: 3,
        ..Default::default()
    };
    let mut w = DatasetWriter::create(dir.path(), "test", opts).unwrap();
    for i in 0..7 {
        let mut r = record(i, "train");
        if i == 4 {
            r.video.bytes = b"this is not an mp4 file at all".to_vec();
        }
        w.write(r).unwrap();
    }
    w.finish().unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let c = LoaderConfig {
        shuffle: false,
        ..cfg()
    };
    let mut strict = Loader::new(&ds, c.clone(), 0, 1).unwrap();
    let err = loop {
        match strict.next_batch() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("bad row was not reported"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("train-00000.parquet"), "{err}");
    assert!(err.contains("row group 1, row 1"), "{err}");
    assert!(err.contains("c004"), "{err}");
    assert!(err.contains("video"), "{err}");

    let mut lenient = Loader::new(
        &ds,
        LoaderConfig {
            bad_rows: BadRowPolicy::Skip,
            ..c
        },
        0,
        1,
    )
    .unwrap();
    let got = ids(&mut lenient);
    assert_eq!(got.len(), 6);
    assert!(!got.contains(&"c004".to_string()));
    assert_eq!(lenient.skip_report().rows.len(), 1);
    assert_eq!(lenient.state().skipped, 1);
}

#[test]
fn corrupt_and_foreign_shards_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 4, 4, 1 << 20);
    let shard = dir.path().join("train-00000.parquet");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let err = ds
        .open_shard(&ds.manifest.shards[0])
        .err()
        .expect("truncated shard must fail")
        .to_string();
    assert!(
        err.contains("train-00000.parquet") && err.contains("not a readable Parquet"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = Dataset::open(empty.path()).unwrap_err().to_string();
    assert!(err.contains("manifest"), "{err}");
}

/// Rewrites `shard` with pyarrow, setting (or dropping) the schema-version metadata.
fn rewrite_version(shard: &Path, version: Option<&str>) {
    let code = format!(
        "import pyarrow.parquet as pq, sys\n\
         t = pq.read_table(sys.argv[1])\n\
         md = {{k: v for k, v in (t.schema.metadata or {{}}).items() if k != b'sonora.schema_version'}}\n\
         v = {version:?}\n\
         if v != 'None': md[b'sonora.schema_version'] = v.encode()\n\
         pq.write_table(t.replace_schema_metadata(md), sys.argv[1])\n",
        version = version.unwrap_or("None")
    );
    let st = std::process::Command::new("python3")
        .args(["-c", &code])
        .arg(shard)
        .status()
        .expect("python3 runs (bash scripts/setup.sh --test)");
    assert!(st.success());
}

#[test]
fn a_wrong_schema_version_is_refused_and_a_missing_one_is_decided_by_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 3, 4, 1 << 20);
    let shard = dir.path().join("train-00000.parquet");
    rewrite_version(&shard, Some("2"));
    let ds = Dataset::open(dir.path()).unwrap();
    let err = ds
        .open_shard(&ds.manifest.shards[0])
        .err()
        .expect("a future schema version must be refused")
        .to_string();
    assert!(
        err.contains("clip schema version 2 is not supported")
            && err.contains("train-00000.parquet"),
        "{err}"
    );
    // without the key (polars and DuckDB drop it when they rewrite a shard), the v1
    // columns make it a clip shard: it reads as before
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 3, 4, 1 << 20);
    let shard = dir.path().join("train-00000.parquet");
    let ds = Dataset::open(dir.path()).unwrap();
    let before = ds
        .open_shard(&ds.manifest.shards[0])
        .unwrap()
        .read_records(0, None)
        .unwrap();
    rewrite_version(&shard, None);
    let after = ds
        .open_shard(&ds.manifest.shards[0])
        .unwrap()
        .read_records(0, None)
        .unwrap();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.as_ref().unwrap(), a.as_ref().unwrap());
    }
}

#[test]
fn short_audio_and_zero_frame_rows_are_named_problems() {
    use sonora_datasets::codec::decode_record;
    let mut short = record(1, "train");
    let clip = make_clip(1, 32, 32, 8, 8.0);
    let half = Audio {
        samples: clip.audio.samples[..clip.audio.samples.len() / 2].to_vec(),
        ..clip.audio.clone()
    };
    short.audio.bytes = sonora_framework::media::encode_wav(&half).unwrap();
    let e = decode_record(&short).unwrap_err();
    assert!(e.contains("shorter than its video"), "{e}");

    let mut zero = record(2, "train");
    zero.num_frames = 0;
    let e = decode_record(&zero).unwrap_err();
    assert!(e.contains("zero-frame"), "{e}");
    let mut empty = make_clip(3, 32, 32, 8, 8.0);
    empty.frames = Frames::zeros(0, 32, 32);
    let e = record_from_clip(&empty, "train", None, &Mp4Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("zero frames") && e.contains("c003"), "{e}");

    let mut garbage = record(4, "train");
    garbage.video.bytes = vec![0u8; 64];
    let e = decode_record(&garbage).unwrap_err();
    assert!(e.contains("video") && e.contains("MP4"), "{e}");
}
