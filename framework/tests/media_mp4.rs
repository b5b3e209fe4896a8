//! MP4 with sound: what sonora writes, ffprobe and ffmpeg read (both streams, the right
//! duration, audio aligned with video), and what sonora reads back.
//!
//! Needs `ffprobe`/`ffmpeg` (installed by `scripts/setup.sh --test`).

use std::process::Command;

use sonora_framework::media::{self, Mp4Options, decode_mp4, encode_mp4, probe_mp4};
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

/// A square moving right over a gradient; a click at `click_s`.
fn clip(t: usize, h: usize, w: usize, fps: f64, sr: u32, click_s: f64) -> Clip {
    let mut frames = Frames::zeros(t, h, w);
    for k in 0..t {
        for (i, px) in frames.frame_mut(k).chunks_mut(3).enumerate() {
            let (y, x) = (i / w, i % w);
            let inside = x >= k * 2 && x < k * 2 + 12 && (10..22).contains(&y);
            px.copy_from_slice(&if inside {
                [230, 40, 40]
            } else {
                [(x * 255 / w) as u8, (y * 255 / h) as u8, 90]
            });
        }
    }
    let n = (t as f64 / fps * sr as f64).round() as usize;
    let mut samples = vec![0.0f32; n];
    let at = (click_s * sr as f64).round() as usize;
    for (k, s) in samples
        .iter_mut()
        .enumerate()
        .skip(at)
        .take(sr as usize / 100)
    {
        let age = (k - at) as f32 / sr as f32;
        *s = 0.9 * (-age * 400.0).exp() * (age * 2000.0 * std::f32::consts::TAU).sin();
    }
    Clip {
        frames,
        audio: Audio {
            samples,
            channels: 1,
            sample_rate: sr,
        },
        fps,
        caption: "a red square".into(),
        metadata: ClipMetadata {
            clip_id: "sq".into(),
            ..Default::default()
        },
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

/// First sample whose magnitude exceeds half the peak.
fn onset(samples: &[f32]) -> usize {
    let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    samples.iter().position(|s| s.abs() > peak * 0.5).unwrap()
}

fn tool(name: &str) -> Command {
    assert!(
        Command::new(name).arg("-version").output().is_ok(),
        "{name} is missing: run `bash scripts/setup.sh --test`"
    );
    Command::new(name)
}

#[test]
fn ffprobe_sees_h264_and_opus_with_the_clip_duration() {
    let c = clip(24, 32, 64, 12.0, 16_000, 0.5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.mp4");
    std::fs::write(&path, encode_mp4(&c, &Mp4Options::default()).unwrap()).unwrap();
    let out = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = j["streams"].as_array().unwrap();
    let v = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video stream");
    let a = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(64), Some(32))
    );
    assert_eq!(v["nb_frames"].as_str(), Some("24"));
    assert_eq!(a["codec_name"], "opus");
    assert_eq!(a["sample_rate"].as_str(), Some("48000"));
    let vd: f64 = v["duration"].as_str().unwrap().parse().unwrap();
    let ad: f64 = a["duration"].as_str().unwrap().parse().unwrap();
    assert!((vd - 2.0).abs() < 1e-3, "video duration {vd}");
    // The audio track holds whole 20 ms Opus packets covering the clip plus the pre-skip.
    assert!((2.0..2.05).contains(&ad), "audio duration {ad}");
}

#[test]
fn ffmpeg_and_sonora_decode_the_click_where_it_was_written() {
    let click_s = 0.75;
    let c = clip(16, 32, 64, 8.0, 16_000, click_s);
    let bytes = encode_mp4(&c, &Mp4Options::default()).unwrap();
    // sonora's own decoder
    let d = decode_mp4(&bytes).unwrap();
    let a = d.audio.expect("audio track");
    assert_eq!(a.sample_rate, 48_000);
    let ours = onset(&a.samples) as f64 / 48_000.0;
    assert!(
        (ours - click_s).abs() < 0.002,
        "sonora decodes the click at {ours} s"
    );
    // ffmpeg (honours the Opus pre-skip like browsers do)
    let dir = tempfile::tempdir().unwrap();
    let (mp4, wav) = (dir.path().join("c.mp4"), dir.path().join("c.wav"));
    std::fs::write(&mp4, &bytes).unwrap();
    let st = tool("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&mp4)
        .args(["-ac", "1"])
        .arg(&wav)
        .status()
        .unwrap();
    assert!(st.success());
    let fa = media::decode_wav(&std::fs::read(&wav).unwrap()).unwrap();
    let theirs = onset(&fa.samples) as f64 / fa.sample_rate as f64;
    assert!(
        (theirs - click_s).abs() < 0.002,
        "ffmpeg decodes the click at {theirs} s"
    );
}

#[test]
fn decoded_frames_match_the_source() {
    let c = clip(12, 48, 64, 12.0, 16_000, 0.2);
    let d = decode_mp4(&encode_mp4(&c, &Mp4Options::default()).unwrap()).unwrap();
    assert_eq!((d.frames.t, d.frames.h, d.frames.w), (12, 48, 64));
    assert!((d.fps - 12.0).abs() < 1e-6, "fps {}", d.fps);
    let p = psnr(&c.frames.data, &d.frames.data);
    assert!(p > 32.0, "PSNR {p:.1} dB");
    let info = probe_mp4(
        &encode_mp4(
            &c,
            &Mp4Options {
                audio: false,
                ..Default::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (info.num_frames, info.width, info.height, info.audio_codec),
        (12, 64, 48, None)
    );
    assert_eq!(info.video_codec, "avc1");
}

#[test]
fn ffmpeg_made_h264_aac_files_decode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x264.mp4");
    let st = tool("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x64:rate=10:duration=2",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=2",
        ])
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    let d = decode_mp4(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!((d.frames.t, d.frames.h, d.frames.w), (20, 64, 96));
    assert!((d.fps - 10.0).abs() < 0.01);
    let a = d.audio.expect("AAC track");
    assert_eq!(a.sample_rate, 44_100);
    assert!(a.duration_s() > 1.9, "audio {} s", a.duration_s());
    let rms = (a.samples.iter().map(|s| s * s).sum::<f32>() / a.samples.len() as f32).sqrt();
    assert!(rms > 0.05, "the sine decoded to near silence (rms {rms})");
}

#[test]
fn bad_input_gets_clear_errors() {
    let e = decode_mp4(b"definitely not an mp4")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a readable MP4"), "{e}");
    let good = encode_mp4(&clip(4, 16, 16, 8.0, 8000, 0.1), &Mp4Options::default()).unwrap();
    assert!(decode_mp4(&good[..good.len() / 2]).is_err());
    let mut odd = clip(4, 16, 16, 8.0, 8000, 0.1);
    odd.frames = Frames::zeros(4, 15, 16);
    let e = encode_mp4(&odd, &Mp4Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("even"), "{e}");
    let mut empty = clip(4, 16, 16, 8.0, 8000, 0.1);
    empty.frames = Frames::zeros(0, 16, 16);
    assert!(
        encode_mp4(&empty, &Mp4Options::default())
            .unwrap_err()
            .to_string()
            .contains("zero frames")
    );
}
