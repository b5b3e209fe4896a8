//! Ingest tests: real MP4s made with `media::encode_mp4`, a corrupt file, an audio-only file.

use super::*;
use crate::generate::ShardConfig;
use crate::reader::Dataset;

fn test_video(t: usize, fps: f64, with_audio: bool) -> Vec<u8> {
    let (h, w) = (32, 48);
    let mut frames = Frames::zeros(t, h, w);
    for k in 0..t {
        for (i, px) in frames.frame_mut(k).chunks_mut(3).enumerate() {
            px.copy_from_slice(&[(k * 9) as u8, (i % w * 5) as u8, (i / w * 7) as u8]);
        }
    }
    let sr = 16_000u32;
    let n = (t as f64 / fps * sr as f64).round() as usize;
    let samples = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let clip = Clip {
        frames,
        audio: Audio {
            samples,
            channels: 1,
            sample_rate: sr,
        },
        fps,
        caption: String::new(),
        metadata: ClipMetadata::default(),
    };
    let opts = media::Mp4Options {
        audio: with_audio,
        ..media::Mp4Options::default()
    };
    media::encode_mp4(&clip, &opts).expect("encode test video")
}

fn small_config() -> IngestFile {
    IngestFile {
        ingest: IngestConfig {
            clip_seconds: 1.0,
            fps: 8.0,
            width: 16,
            height: 16,
            sample_rate: 8_000,
            min_clip_seconds: 0.3,
            val_fraction: 0.0,
            test_fraction: 0.0,
            ..IngestConfig::default()
        },
        shards: ShardConfig {
            rows_per_group: 4,
            ..ShardConfig::default()
        },
    }
}

#[test]
fn csv_captions_handle_quotes_commas_and_errors() {
    let p = Path::new("caps.csv");
    let c = Captions::parse_csv(
        "file,caption\n\"a.mp4\",\"a cat, a dog\"\nsub/b.mp4,\"say \"\"hi\"\"\"\r\n\nc.mp4,\"two\nlines\"\n",
        p,
    )
    .unwrap();
    assert_eq!(c.lookup("x/a.mp4").unwrap().1, "a cat, a dog");
    assert_eq!(c.lookup("sub/b.mp4").unwrap().1, "say \"hi\"");
    assert_eq!(c.lookup("c.mp4").unwrap().1, "two\nlines");
    assert!(c.lookup("b.mp4").is_none());
    let e = Captions::parse_csv("file,caption\na.mp4,ok\nb.mp4,\"open\n", p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("caps.csv") && e.contains("line 3") && e.contains("unterminated"),
        "{e}"
    );
    let e = Captions::parse_csv("file,caption\na.mp4,ok,extra\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    let e = Captions::parse_csv("name,text\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1") && e.contains("`file`"), "{e}");
}

#[test]
fn jsonl_captions_and_errors() {
    let p = Path::new("caps.jsonl");
    let c = Captions::parse_jsonl("{\"file\":\"./v/a.mp4\",\"caption\":\"hello\"}\n\n", p).unwrap();
    assert_eq!(c.lookup("v/a.mp4").unwrap().1, "hello");
    let e = Captions::parse_jsonl("{\"file\":\"a\",\"caption\":\"x\"}\n{oops\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("caps.jsonl") && e.contains("line 2"), "{e}");
}

#[test]
fn pieces_drop_short_tail_and_respect_max() {
    let mut c = IngestConfig {
        clip_seconds: 2.0,
        min_clip_seconds: 1.0,
        ..IngestConfig::default()
    };
    assert_eq!(c.plan_pieces(5.5), vec![(0.0, 2.0), (2.0, 2.0), (4.0, 1.5)]);
    assert_eq!(c.plan_pieces(4.5), vec![(0.0, 2.0), (2.0, 2.0)]);
    c.max_clips_per_file = 1;
    assert_eq!(c.plan_pieces(5.5), vec![(0.0, 2.0)]);
    let s = IngestConfig {
        val_fraction: 0.3,
        test_fraction: 0.3,
        ..IngestConfig::default()
    };
    assert_eq!(s.split_for("a/b.mp4"), s.split_for("a/b.mp4"));
    assert!(
        IngestConfig {
            width: 15,
            ..IngestConfig::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn ingests_folder_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // 2.5 s → clips at 0, 1, 2 (trailing 0.5 s ≥ 0.3 s kept).
    std::fs::write(src.join("sub/long.mp4"), test_video(25, 10.0, true)).unwrap();
    // 1.2 s without audio → one clip, the 0.2 s tail dropped.
    std::fs::write(src.join("short.mp4"), test_video(12, 10.0, false)).unwrap();
    std::fs::write(
        src.join("bad.mp4"),
        (0..4000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let wav = media::encode_wav(&Audio::silence(800, 1, 8000)).unwrap();
    std::fs::write(src.join("song.wav"), wav).unwrap();
    std::fs::write(src.join("notes.txt"), "hello").unwrap();
    let caps = dir.path().join("caps.csv");
    std::fs::write(
        &caps,
        "file,caption\nsub/long.mp4,\"a gradient, moving\"\nnothere.mp4,x\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let rep = ingest(&src, &out, &small_config(), Some(&caps), false, &|_, _| {}).unwrap();

    assert_eq!(rep.files_seen, 5);
    assert_eq!(rep.files_ignored, 1);
    assert_eq!(rep.files_ingested, 2);
    assert_eq!(rep.clips_total, 4);
    assert_eq!(rep.clips_written.get("train"), Some(&4));
    let reasons: BTreeMap<_, _> = rep
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(!reasons["bad.mp4"].is_empty());
    assert_eq!(reasons["song.wav"], "audio-only file");
    assert_eq!(rep.unmatched_captions, vec!["nothere.mp4".to_string()]);

    let on_disk: IngestReport =
        serde_json::from_str(&std::fs::read_to_string(out.join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(on_disk, rep);

    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.manifest.total_clips(), 4);
    assert_eq!(ds.manifest.skipped, 2);
    let mut recs = Vec::new();
    for s in ds.shards(None) {
        let r = ds.open_shard(&s).unwrap();
        for g in 0..r.num_row_groups() {
            recs.extend(
                r.read_records(g, None)
                    .unwrap()
                    .into_iter()
                    .map(|x| x.unwrap()),
            );
        }
    }
    recs.sort_by(|a, b| a.clip_id.cmp(&b.clip_id));
    let ids: Vec<_> = recs.iter().map(|r| r.clip_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "short_mp4-000",
            "sub_long_mp4-000",
            "sub_long_mp4-001",
            "sub_long_mp4-002"
        ]
    );
    let long: Vec<_> = recs
        .iter()
        .filter(|r| r.source_path.as_deref() == Some("sub/long.mp4"))
        .collect();
    let starts: Vec<f64> = long.iter().map(|r| r.source_start_s.unwrap()).collect();
    for (s, want) in starts.iter().zip([0.0, 1.0, 2.0]) {
        assert!((s - want).abs() < 1e-3, "{starts:?}");
    }
    assert_eq!(long[0].caption, "a gradient, moving");
    assert_eq!(long[0].tags, vec!["ingested"]);
    assert_eq!(long[0].num_frames, 8);
    assert_eq!(long[2].num_frames, 4);
    let short = &recs[0];
    assert_eq!(short.caption, "");
    assert_eq!(short.tags, vec!["ingested", "uncaptioned", "no-audio"]);
    for r in &recs {
        let clip = crate::codec::decode_record(r).unwrap();
        assert_eq!((clip.frames.h, clip.frames.w), (16, 16));
        assert_eq!(clip.audio.sample_rate, 8000);
    }
}

#[test]
fn nothing_ingestible_is_an_error_with_report() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("bad.mp4"), b"not an mp4").unwrap();
    let out = dir.path().join("out");
    let e = ingest(&src, &out, &small_config(), None, false, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no clips"), "{e}");
    assert!(out.join(REPORT_FILE).is_file());
}
