//! The training loop on a small synthetic dataset: the validation loss falls, checkpoints
//! rotate and load, TensorBoard events and sample MP4s appear; bad recipes are refused.

use std::path::Path;

use sonora_datasets::generate::{ShardConfig, SynthFile, synthesize};
use sonora_datasets::synth::SynthConfig;
use sonora_framework::model::ModelConfig;
use sonora_recipes::Recipe;
use sonora_recipes::config::ModelSection;

fn dataset(dir: &Path) {
    let file = SynthFile {
        synth: SynthConfig {
            width: 16,
            height: 16,
            fps: 8.0,
            duration_s: 1.0,
            train: 16,
            val: 4,
            test: 0,
            ..SynthConfig::default()
        },
        shards: ShardConfig::default(),
    };
    synthesize(&file, dir, true, &|_| {}).unwrap();
}

fn recipe(data: &Path, out: &Path) -> Recipe {
    let mut r = Recipe::default();
    r.run.name = "t".into();
    r.run.out_dir = out.to_path_buf();
    r.data.path = data.to_path_buf();
    r.data.loader.batch_size = 4;
    r.data.loader.workers = 1;
    r.model = ModelSection {
        file: None,
        inline: Some(ModelConfig {
            name: "test".into(),
            frames: 8,
            height: 16,
            width: 16,
            fps: 8.0,
            sample_rate: 16000,
            patch_t: 4,
            patch_h: 8,
            patch_w: 8,
            audio_patch: 2000,
            ref_size: 16,
            d_model: 32,
            depth: 2,
            heads: 2,
            mlp_ratio: 2,
            text_dim: 32,
            text_depth: 1,
            text_heads: 2,
            text_max_len: 16,
            vocab_size: 128,
        }),
    };
    r.optimizer.lr = 3e-3;
    r.schedule.warmup_steps = 5;
    r.train.steps = 150;
    r.train.log_every = 5;
    r.checkpoint.every = 50;
    r.checkpoint.keep_last = 2;
    r.sample.steps = 3;
    r
}

#[test]
fn training_learns_checkpoints_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let r = recipe(&data, &tmp.path().join("runs"));
    let mut steps = Vec::new();
    let out = sonora_recipes::train(&r, false, &mut |s| steps.push((s.step, s.loss))).unwrap();
    assert_eq!(steps.len(), 150);
    eprintln!(
        "train losses {:?}",
        steps.iter().step_by(10).collect::<Vec<_>>()
    );
    let (v0, v1) = (out.val_loss_initial.unwrap(), out.val_loss_final.unwrap());
    assert!(v1 < 0.7 * v0, "validation loss {v0} → {v1}");
    eprintln!("validation loss {v0} → {v1}");
    // newest two checkpoints kept, and they load
    let names: Vec<String> = out
        .checkpoints
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["step-000100", "step-000150"]);
    assert!(!out.run_dir.join("checkpoints/step-000050").exists());
    let (_, _, manifest) = sonora_framework::checkpoint::load(
        &out.checkpoints[1],
        r.model.inline.as_ref(),
        &burn::prelude::Device::flex(),
    )
    .unwrap();
    assert_eq!(manifest.step, 150);
    assert!(manifest.files.contains_key("optimizer.bpk"));
    assert!(manifest.extra["loader"]["epoch"].as_u64().unwrap() >= 1);
    // TensorBoard events, resolved config and a sample MP4
    assert!(std::fs::read_dir(out.run_dir.join("tb")).unwrap().count() == 1);
    let cfg = std::fs::read_to_string(out.run_dir.join("config.toml")).unwrap();
    assert!(
        cfg.contains("[model.inline]") && cfg.contains("d_model = 32"),
        "{cfg}"
    );
    let mp4 = std::fs::read(&out.samples[0]).unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");

    // a second run into the same directory is refused
    let e = sonora_recipes::train(&r, false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already exists") && e.contains("--overwrite"),
        "{e}"
    );
}

#[test]
fn bad_recipes_are_refused_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("r.toml");
    std::fs::write(&f, "[optimizer]\nlr = 0.001\nwieght_decay = 0.1\n").unwrap();
    let e = Recipe::load(&f, &[]).unwrap_err();
    assert!(
        e.contains("wieght_decay") && e.contains("did you mean `weight_decay`"),
        "{e}"
    );
    std::fs::write(&f, "[optimizer]\nlr = \"fast\"\n").unwrap();
    let e = Recipe::load(&f, &[]).unwrap_err();
    assert!(e.contains("lr"), "{e}");
    std::fs::write(&f, "[optimizer]\nlr = -1.0\n").unwrap();
    let e = Recipe::load(&f, &["train.steps=5".into()]).unwrap_err();
    assert!(e.contains("optimizer.lr must be positive"), "{e}");
    // no shards at the data path
    let mut r = recipe(&tmp.path().join("nothing"), &tmp.path().join("runs"));
    r.run.name = "empty".into();
    let e = sonora_recipes::train(&r, false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.path"), "{e}");
}
