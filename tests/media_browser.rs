//! Chromium plays sonora's MP4s with sound: headless Chromium (driven by playwright-core)
//! loads an MP4 written by `encode_mp4`, plays it to the end, and reports decoded audio
//! and video bytes.

use std::path::Path;
use std::process::Command;

use sonora_framework::media::{Mp4Options, encode_mp4};
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

fn tone_clip() -> Clip {
    let (t, h, w, fps) = (24, 64, 96, 24.0);
    let mut frames = Frames::zeros(t, h, w);
    for k in 0..t {
        for (i, px) in frames.frame_mut(k).chunks_mut(3).enumerate() {
            let (y, x) = (i / w, i % w);
            px.copy_from_slice(&[(x * 2 + k * 5) as u8, (y * 3) as u8, 120]);
        }
    }
    let sr = 48_000;
    let samples = (0..sr)
        .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / sr as f32).sin())
        .collect();
    Clip {
        frames,
        audio: Audio {
            samples,
            channels: 1,
            sample_rate: sr,
        },
        fps,
        caption: "a tone".into(),
        metadata: ClipMetadata {
            clip_id: "tone".into(),
            ..Default::default()
        },
    }
}

#[test]
fn chromium_plays_encoded_mp4_with_sound() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play_mp4.mjs");
    let modules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    assert!(
        modules.is_dir() && Path::new("/usr/bin/chromium").exists(),
        "Chromium or playwright-core is missing: run `bash scripts/setup.sh --test`"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tone.mp4");
    std::fs::write(
        &file,
        encode_mp4(&tone_clip(), &Mp4Options::default()).unwrap(),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser run failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON from the browser");
    assert_eq!(r["error"], serde_json::Value::Null, "{r}");
    assert_eq!(r["played"], true, "{r}");
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(96), Some(64)),
        "{r}"
    );
    let duration = r["duration"].as_f64().unwrap();
    assert!((duration - 1.0).abs() < 0.1, "duration {duration}: {r}");
    assert_eq!(r["ended"], true, "{r}");
    assert!(
        r["audioBytes"].as_u64().unwrap() > 0,
        "Chromium decoded no audio: {r}"
    );
    assert!(
        r["videoBytes"].as_u64().unwrap() > 0,
        "Chromium decoded no video: {r}"
    );
}
