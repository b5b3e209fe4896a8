//! Media as people have it: `sonora data ingest` on a folder made with Debian's ffmpeg
//! (MP4/MOV/MKV/WebM/AVI; H.264 4:2:0 and 4:4:4, HEVC, VP9, AV1, MPEG-4; AAC, Opus,
//! FLAC, MP3, Vorbis, PCM), and sonora's FFmpeg decode checked frame by frame against
//! ffmpeg's own. Built with the `ffmpeg` feature (a default).
#![cfg(feature = "ffmpeg")]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/media_folder.rs"]
mod media_folder;

use media_folder::CASES;
use sonora_framework::media::{self, DecodeOptions, MediaInput};

/// Mean |Δ| over a frame's RGB values that sonora's decode may differ from ffmpeg's by.
/// Both go through the same libavcodec and libswscale, and at the file's own size they
/// agree exactly (0.000 measured on every case); the margin covers an FFmpeg whose
/// default conversion flags differ from the ones sonora asks for.
const MEAN_ABS_TOLERANCE: f64 = 0.5;

#[test]
fn decoded_frames_match_ffmpegs_own_decode() {
    let dir = tempfile::tempdir().unwrap();
    for case in CASES.iter().filter(|c| c.name != "hd60_stereo.mp4") {
        let path = media_folder::make(dir.path(), case);
        let ours = media::decode_media(MediaInput::Path(path.clone()), &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let (theirs, w, h) = media_folder::ffmpeg_rgb(&path);
        assert_eq!((ours.frames.w, ours.frames.h), (w, h), "{}", case.name);
        let n = theirs.len() / (w * h * 3);
        assert_eq!(ours.frames.t, n, "{}: frame count", case.name);
        let mut worst = 0.0f64;
        for (a, b) in ours
            .frames
            .data
            .chunks(w * h * 3)
            .zip(theirs.chunks(w * h * 3))
        {
            let mad = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (x as f64 - y as f64).abs())
                .sum::<f64>()
                / a.len() as f64;
            worst = worst.max(mad);
        }
        println!(
            "{}: {n} frames, worst frame mean abs diff {worst:.3}",
            case.name
        );
        assert!(
            worst <= MEAN_ABS_TOLERANCE,
            "{}: worst frame mean |Δ| {worst:.2}",
            case.name
        );
        assert_eq!(
            ours.audio.is_some(),
            case.audio(),
            "{}: audio track",
            case.name
        );
        if let Some(a) = &ours.audio {
            // the sine's level survives every codec: RMS of a full-scale-ish tone, not silence
            let rms =
                (a.samples.iter().map(|s| s * s).sum::<f32>() / a.samples.len() as f32).sqrt();
            assert!(rms > 0.05, "{}: audio RMS {rms}", case.name);
            let secs = a.num_frames() as f64 / a.sample_rate as f64;
            let video_secs = ours.frames.t as f64 / ours.fps;
            assert!(
                (secs - video_secs).abs() < 0.1,
                "{}: audio {secs:.2} s vs video {video_secs:.2} s",
                case.name
            );
        }
    }
}

#[test]
fn the_same_bytes_decode_from_memory_as_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let case = media_folder::case("vp9_opus.webm");
    let path = media_folder::make(dir.path(), case);
    let opts = DecodeOptions {
        cover: Some((32, 32)),
        max_frame_bytes: None,
    };
    let a = media::decode_media(MediaInput::Path(path.clone()), &opts).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let b = media::decode_media(MediaInput::Bytes { bytes, name: None }, &opts).unwrap();
    assert_eq!(a.frames.data, b.frames.data);
    // cover: 160x120 shrunk to the smallest size covering 32x32 with the same aspect
    assert_eq!((a.frames.w, a.frames.h), (43, 32));
    let limit = DecodeOptions {
        cover: None,
        max_frame_bytes: Some(1 << 20),
    };
    let e = media::decode_media(MediaInput::Path(path), &limit)
        .unwrap_err()
        .to_string();
    assert!(e.contains("MiB") && e.contains("160x120"), "{e}");
}

#[test]
fn ingest_reads_every_format_and_names_what_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("media");
    media_folder::make_folder(&src);
    let out = dir.path().join("ds");
    let text = cli::ok(&[
        "data",
        "ingest",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--captions",
        src.join("captions.csv").to_str().unwrap(),
        "--set",
        "ingest.width=32",
        "--set",
        "ingest.height=32",
        "--set",
        "ingest.fps=8",
        "--set",
        "ingest.clip_seconds=1",
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ingest_report.json")).unwrap()).unwrap();
    let ingested: Vec<&str> = report["ingested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for c in CASES {
        assert_eq!(
            ingested.contains(&c.name),
            c.long_enough(),
            "{}: {text}",
            c.name
        );
    }
    for f in report["ingested"].as_array().unwrap() {
        let case = media_folder::case(f["path"].as_str().unwrap());
        assert_eq!(f["has_audio"], case.audio(), "{}", case.name);
        assert_eq!(f["captioned"], true, "{}", case.name);
    }
    let reason = |name: &str| -> String {
        report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == name)
            .unwrap_or_else(|| panic!("{name} listed as skipped: {text}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("short.mp4").contains("shorter than ingest.min_clip_seconds"));
    assert!(reason("tone.wav").contains("audio-only"));
    let broken = reason("broken.mp4");
    assert!(
        broken.contains("FFmpeg") && !broken.contains("Native"),
        "{broken}"
    );
    assert_eq!(report["ignored"], serde_json::json!(["notes.txt"]));
    assert!(
        text.contains("notes.txt") && text.contains("broken.mp4"),
        "{text}"
    );
    // the container parsers' chatter stays off the console
    assert!(
        !text.contains("stream is seekable") && !text.contains("stss"),
        "{text}"
    );
    assert_eq!(
        report["unmatched_captions"],
        serde_json::json!(["short.mp4"])
    );
    cli::ok(&["data", "validate", out.to_str().unwrap()]);
}
