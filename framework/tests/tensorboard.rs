//! TensorBoard's own `EventAccumulator` loads what `EventWriter` writes: scalars, images,
//! audio and text, with their steps and values.

use sonora_framework::Audio;
use sonora_framework::tracking::EventWriter;

#[test]
fn tensorboard_event_accumulator_reads_every_kind() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import tensorboard"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with `tensorboard` is required (scripts/setup.sh --test installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    for step in 0..5u64 {
        w.scalar("loss/total", step, 1.0 / (step as f64 + 1.0))
            .unwrap();
        w.scalar("lr", step, 1e-3 * step as f64).unwrap();
    }
    let (h, wd) = (6, 10);
    let rgb: Vec<u8> = (0..h * wd * 3).map(|i| (i * 5 % 256) as u8).collect();
    w.image("samples/frame0", 4, &rgb, h, wd).unwrap();
    let audio = Audio {
        samples: (0..800).map(|i| (i as f32 * 0.05).sin() * 0.5).collect(),
        channels: 1,
        sample_rate: 8000,
    };
    w.audio("samples/sound", 4, &audio).unwrap();
    w.text("config", 0, "run = \"quickstart\"\nlr = 0.001")
        .unwrap();
    drop(w);

    let script = r#"
import sys, json
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'images': 0, 'audio': 0, 'tensors': 0})
ea.Reload()
t = ea.Tags()
out = {
  'scalars': {k: [[e.step, e.value] for e in ea.Scalars(k)] for k in t['scalars']},
  'images': {k: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in ea.Images(k)] for k in t['images']},
  'audio': {k: [[e.step, e.sample_rate, e.length_frames, e.content_type] for e in ea.Audio(k)] for k in t['audio']},
  'tensors': {k: [[e.step, e.tensor_proto.string_val[0].decode()] for e in ea.Tensors(k)] for k in t['tensors']},
}
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = v["scalars"]["loss/total"].as_array().unwrap();
    assert_eq!(loss.len(), 5);
    assert_eq!(loss[3][0], 3);
    assert!((loss[3][1].as_f64().unwrap() - 0.25).abs() < 1e-6, "{v}");
    assert_eq!(v["scalars"]["lr"].as_array().unwrap().len(), 5);
    let img = &v["images"]["samples/frame0"][0];
    assert_eq!(
        (img[0].as_i64(), img[1].as_i64(), img[2].as_i64()),
        (Some(4), Some(wd as i64), Some(h as i64)),
        "{v}"
    );
    let snd = &v["audio"]["samples/sound"][0];
    assert_eq!(
        (snd[1].as_f64(), snd[2].as_i64(), snd[3].as_str()),
        (Some(8000.0), Some(800), Some("audio/wav")),
        "{v}"
    );
    let txt = v["tensors"]["config"][0][1].as_str().unwrap();
    assert!(txt.contains("quickstart"), "{v}");
}
