//! The training loop on a small synthetic dataset: the validation loss falls, checkpoints
//! rotate and load, TensorBoard events and sample MP4s appear; bad recipes are refused.

use std::path::Path;

use sonora_recipes::Recipe;
use sonora_recipes::TrainOptions;
use sonora_recipes::config::ModelSection;

mod common;

/// Tags and steps of a TensorBoard log directory, read by TensorBoard's `EventAccumulator`:
/// `{"scalars": {tag: [step…]}, "images": {tag: n}, "audio": {tag: n}, "text": "…"}`.
fn tensorboard_tags(dir: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'images': 0, 'audio': 0, 'tensors': 0})
ea.Reload()
t = ea.Tags()
text = ''
for tag in t['tensors']:
    for ev in ea.Tensors(tag):
        v = tensor_util.make_ndarray(ev.tensor_proto)
        text += ' '.join(x.decode() if isinstance(x, bytes) else str(x) for x in v.flatten())
print(json.dumps({
    'scalars': {k: [e.step for e in ea.Scalars(k)] for k in t['scalars']},
    'images': {k: len(ea.Images(k)) for k in t['images']},
    'audio': {k: len(ea.Audio(k)) for k in t['audio']},
    'text': text,
}))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("python3 with tensorboard (scripts/setup.sh --test installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Training runs in this process one at a time: several tests here compare runs bit for
/// bit, and runs that overlap in one process do not reproduce bit for bit (two identical
/// configs gave different step-2 losses in 2 of 8 parallel runs of this file, in 0 of 16
/// serial ones; not the loader, which restores plan order, and not rayon's splitting alone,
/// as `RAYON_NUM_THREADS=1` still differed). Separate processes are unaffected.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn recipe(data: &Path, out: &Path) -> Recipe {
    common::recipe(data, out, 2)
}

#[test]
fn training_learns_checkpoints_and_logs() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 16, 0.15);
    let r = recipe(&data, &tmp.path().join("runs"));
    let mut steps = Vec::new();
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |s| {
        steps.push((s.step, s.loss))
    })
    .unwrap();
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
    // plus the best by validation loss, named in best.json
    let best: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.run_dir.join("checkpoints/best.json")).unwrap(),
    )
    .unwrap();
    let best_name = best["path"].as_str().unwrap().to_string();
    assert!(names.contains(&best_name), "{names:?} {best}");
    assert!(best["val_loss"].as_f64().unwrap() <= v0);
    let mut expect = vec!["step-000100".to_string(), "step-000150".to_string()];
    if !expect.contains(&best_name) {
        expect.insert(0, best_name.clone());
    }
    assert_eq!(names, expect);
    assert_eq!(
        out.run_dir.join("checkpoints/step-000050").exists(),
        best_name == "step-000050"
    );
    let (_, _, manifest) = sonora_framework::checkpoint::load(
        &out.checkpoints[1],
        r.model.inline.as_ref(),
        &burn::prelude::Device::flex(),
    )
    .unwrap();
    assert_eq!(manifest.step, 150);
    assert!(manifest.files.contains_key("optimizer.bpk"));
    assert!(manifest.extra["loader"]["epoch"].as_u64().unwrap() >= 1);
    // TensorBoard events, as TensorBoard's own EventAccumulator reads them
    assert!(std::fs::read_dir(out.run_dir.join("tb")).unwrap().count() == 1);
    let tb = tensorboard_tags(&out.run_dir.join("tb"));
    for tag in [
        "loss/total",
        "loss/video",
        "loss/audio",
        "loss/val",
        "lr",
        "grad_norm",
        "step_time_s",
        "tokens_per_s",
        "skipped_steps",
    ] {
        assert!(
            tb["scalars"].get(tag).is_some(),
            "scalar {tag} missing: {tb}"
        );
    }
    let total: Vec<u64> = tb["scalars"]["loss/total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(total, (1..=30).map(|i| i * 5).collect::<Vec<_>>());
    assert!(tb["images"].get("samples/prompt-0").is_some(), "{tb}");
    assert!(tb["audio"].get("samples/prompt-0").is_some(), "{tb}");
    assert!(
        tb["text"].as_str().unwrap().contains("d_model = 32"),
        "the config as text: {tb}"
    );
    let cfg = std::fs::read_to_string(out.run_dir.join("config.toml")).unwrap();
    assert!(
        cfg.contains("[model.inline]") && cfg.contains("d_model = 32"),
        "{cfg}"
    );
    let mp4 = std::fs::read(&out.samples[0]).unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");

    // a second run into the same directory is refused
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already exists") && e.contains("--overwrite"),
        "{e}"
    );
}

#[test]
fn bad_recipes_are_refused_by_key() {
    let _serial = serial();
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
    // options that are not built yet are refused, not ignored
    let e = Recipe::load(
        &f,
        &["optimizer.lr=0.001".into(), "train.precision=bf16".into()],
    )
    .unwrap_err();
    assert!(
        e.contains("train.precision") && e.contains("not built yet"),
        "{e}"
    );
    let e = Recipe::load(
        &f,
        &[
            "optimizer.lr=0.001".into(),
            "distributed.backend=nccl".into(),
        ],
    )
    .unwrap_err();
    assert!(
        e.contains("distributed.backend") && e.contains("nccl") && e.contains("run.device"),
        "{e}"
    );
    // on GPUs it is a valid recipe; a build without NCCL refuses it when training starts
    let gpu = Recipe::load(
        &f,
        &[
            "optimizer.lr=0.001".into(),
            "distributed.backend=nccl".into(),
            "run.device=cuda".into(),
        ],
    )
    .unwrap();
    let e = sonora_recipes::train(&gpu, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no NCCL") && e.contains("--features nccl"),
        "{e}"
    );
    // no shards at the data path
    let mut r = recipe(&tmp.path().join("nothing"), &tmp.path().join("runs"));
    r.run.name = "empty".into();
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.path"), "{e}");
}

/// Tensors of a checkpoint's `model.safetensors`, by name.
fn weights(ckpt: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect()
}

/// Names of tensors that differ between two weight sets (which must hold the same names).
fn changed(
    a: &std::collections::BTreeMap<String, Vec<u8>>,
    b: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same tensors"
    );
    a.iter()
        .filter(|(k, v)| b[*k] != **v)
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn finetune_freezes_parts_and_lora_saves_merged_weights() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 16, 0.15);
    let runs = tmp.path().join("runs");
    let mut base = recipe(&data, &runs);
    base.run.name = "base".into();
    base.train.steps = 6;
    base.checkpoint.every = 6;
    base.sample.prompts.clear();
    let out = sonora_recipes::train(&base, &TrainOptions::default(), &mut |_| {}).unwrap();
    let start = out.checkpoints.last().unwrap().clone();
    let w0 = weights(&start);

    // full fine-tune with the text encoder frozen; [model] omitted → the checkpoint's config
    let mut ft = base.clone();
    ft.run.name = "ft".into();
    ft.model = ModelSection::default();
    ft.finetune.from = Some(start.clone());
    ft.finetune.freeze = vec!["text".into()];
    let out = sonora_recipes::train(&ft, &TrainOptions::default(), &mut |_| {}).unwrap();
    let w1 = weights(out.checkpoints.last().unwrap());
    let moved = changed(&w0, &w1);
    assert!(
        moved.iter().all(|k| !k.starts_with("text")),
        "frozen text weights moved: {moved:?}"
    );
    assert!(moved.iter().any(|k| k.starts_with("blocks.")), "{moved:?}");
    assert!(
        moved.iter().any(|k| k.starts_with("audio_in.")),
        "{moved:?}"
    );

    // LoRA: only the joint blocks' matrices move (merged), everything else is untouched
    let mut lora = ft.clone();
    lora.run.name = "lora".into();
    lora.finetune.freeze.clear();
    lora.finetune.lora_rank = 4;
    lora.optimizer.lr = 1e-2;
    let out = sonora_recipes::train(&lora, &TrainOptions::default(), &mut |_| {}).unwrap();
    let last = out.checkpoints.last().unwrap().clone();
    let w2 = weights(&last);
    let moved = changed(&w0, &w2);
    assert!(!moved.is_empty());
    assert!(
        moved
            .iter()
            .all(|k| k.starts_with("blocks.") && k.ends_with("weight")),
        "LoRA moved weights outside the blocks' matrices: {moved:?}"
    );
    // the merged checkpoint loads as a plain model of the same config…
    sonora_framework::checkpoint::load(&last, None, &burn::prelude::Device::flex()).unwrap();
    // …but cannot be resumed as a LoRA run
    let e = sonora_recipes::train(
        &lora,
        &TrainOptions {
            resume: Some(sonora_recipes::Resume::Path(last)),
            ..TrainOptions::default()
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("LoRA") && e.contains("cannot be resumed"), "{e}");

    // a [model] that differs from the checkpoint's is refused, naming the key
    let mut bad = ft.clone();
    bad.run.name = "bad".into();
    let mut m = base.model.inline.clone().unwrap();
    m.depth = 3;
    bad.model = ModelSection {
        file: None,
        inline: Some(m),
    };
    let e = sonora_recipes::train(&bad, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("finetune.from") && e.contains("depth"), "{e}");
}

#[test]
fn character_recipe_trains_on_the_characters_clips() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 24, 0.6);
    let mut r = recipe(&data, &tmp.path().join("runs"));
    r.run.name = "pip".into();
    r.train.steps = 4;
    r.checkpoint.every = 4;
    r.character.id = "pip".into();
    r.character.references = 2;
    r.sample.prompts.clear();
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(out.step, 4);
    assert!(out.val_loss_initial.unwrap().is_finite());

    // an unknown character is refused, naming it
    r.run.name = "nobody".into();
    r.character.id = "nobody".into();
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("nobody"), "{e}");

    // every character at once, some clips with their references dropped
    r.run.name = "all".into();
    r.character.id = "*".into();
    r.character.ref_dropout = 0.3;
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(out.step, 4);
    // a dropout that would never cast is refused, naming the key
    r.character.ref_dropout = 1.0;
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("character.ref_dropout"), "{e}");
}

#[test]
fn every_character_is_cast_with_its_own_references() {
    use sonora_recipes::data::CharacterRefs;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 4, 0.6);
    let r = recipe(&data, &tmp.path().join("runs"));
    let cfg = r.model.inline.clone().unwrap();
    let all = CharacterRefs::load(&data, "*", 2, &cfg).unwrap();
    let mut folders: Vec<String> = std::fs::read_dir(data.join("characters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let ids: Vec<&str> = all.cast.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, folders, "every character folder, sorted");
    assert!(ids.len() >= 2, "{ids:?}");
    for (id, tokens) in &all.cast {
        // the same references a single-character run casts
        let one = CharacterRefs::load(&data, id, 2, &cfg).unwrap();
        assert_eq!(one.cast[0].1, *tokens, "{id}");
        assert_eq!(
            all.for_clip(std::slice::from_ref(id)),
            Some(tokens.as_slice())
        );
    }
    assert_ne!(all.cast[0].1, all.cast[1].1, "characters look different");
    // a clip is cast with its first character the run knows
    let clip = ["nobody".to_string(), ids[1].to_string(), ids[0].to_string()];
    assert_eq!(all.for_clip(&clip), Some(all.cast[1].1.as_slice()));
    assert_eq!(all.for_clip(&[]), None);
    // a dataset without character folders is refused, naming the folder
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(bare.join("characters")).unwrap();
    let e = CharacterRefs::load(&bare, "*", 2, &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("characters") && e.contains("no character folders"),
        "{e}"
    );
}

#[test]
fn non_finite_losses_stop_the_run_with_its_checkpoint_intact() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 16, 0.15);
    let mut r = recipe(&data, &tmp.path().join("runs"));
    r.sample.prompts.clear();
    r.train.steps = 40;
    r.train.max_bad_steps = 3;
    r.checkpoint.every = 1;
    r.checkpoint.keep_last = 1;
    r.checkpoint.keep_best = false;
    // an absurd learning rate after warm-up blows the weights up
    r.optimizer.lr = 1e30;
    r.optimizer.grad_clip = 0.0;
    r.schedule.warmup_steps = 0;
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 non-finite losses in a row"), "{e}");
    let ckpts: Vec<_> = std::fs::read_dir(tmp.path().join("runs/t/checkpoints"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step-")
        })
        .collect();
    assert_eq!(ckpts.len(), 1, "{ckpts:?}");
    assert!(e.contains(&*ckpts[0].to_string_lossy()), "{e}");
    sonora_framework::checkpoint::read_manifest(&ckpts[0]).unwrap();
}

#[test]
fn full_disk_during_a_checkpoint_keeps_the_previous_one() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 16, 0.15);
    // measure one checkpoint
    let mut r = recipe(&data, &tmp.path().join("runs"));
    r.sample.prompts.clear();
    r.tracking.tensorboard = false;
    r.checkpoint.keep_best = false;
    r.train.steps = 1;
    r.checkpoint.every = 1;
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {}).unwrap();
    let size: u64 = std::fs::read_dir(&out.checkpoints[0])
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();

    // a tmpfs with room for one checkpoint and a half
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let kib = (size * 3 / 2).div_ceil(1024) + 64;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a small tmpfs here (needs root); full-disk behaviour untested"
        );
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&disk);
    r.run.out_dir = disk.clone();
    r.train.steps = 4;
    r.checkpoint.every = 2;
    r.checkpoint.keep_last = 1;
    let e = sonora_recipes::train(&r, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checkpoint at step 4") && e.contains("earlier checkpoints are intact"),
        "{e}"
    );
    let ckpts = disk.join("t/checkpoints");
    let names: Vec<String> = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // the step-2 checkpoint survives whole and the half-written one is gone
    assert_eq!(names, ["step-000002"], "{names:?}");
    let (_, _, m) = sonora_framework::checkpoint::load(
        &ckpts.join("step-000002"),
        None,
        &burn::prelude::Device::flex(),
    )
    .unwrap();
    assert_eq!(m.step, 2);
}

/// Mean absolute difference of two RGB frames, in 8-bit levels.
fn frame_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn a_task_mix_trains_and_given_clips_are_sampled_from_their_frames() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 8, 0.0);
    let mut r = recipe(&data, &tmp.path().join("runs"));
    r.train.steps = 12;
    r.checkpoint.every = 12;
    r.train.modes.text = 1.0;
    r.train.modes.image = 1.0;
    r.train.modes.extension = 1.0;
    r.train.modes.video_to_audio = 1.0;
    r.sample.given = 1;
    let out = sonora_recipes::train(&r, &TrainOptions::default(), &mut |s| {
        assert!(s.loss.is_finite(), "step {}: {}", s.step, s.loss)
    })
    .unwrap();
    let names: Vec<String> = out
        .samples
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["prompt-0.mp4", "image-0.mp4", "v2a-0.mp4"]);
    let decode = |name: &str| {
        let p = out.samples.iter().find(|p| p.ends_with(name)).unwrap();
        sonora_framework::media::decode_mp4(&std::fs::read(p).unwrap()).unwrap()
    };
    let (text, image, v2a) = (
        decode("prompt-0.mp4"),
        decode("image-0.mp4"),
        decode("v2a-0.mp4"),
    );
    // the same validation clip's first frame is given to both image → clip and video →
    // audio, so their first frames agree (up to H.264); a text sample's does not
    let (fi, fv, ft) = (
        image.frames.frame(0),
        v2a.frames.frame(0),
        text.frames.frame(0),
    );
    assert!(frame_diff(fi, fv) < 4.0, "{}", frame_diff(fi, fv));
    assert!(frame_diff(ft, fv) > 4.0 * frame_diff(fi, fv).max(1.0));
    // video → audio keeps every frame of the validation clip (the first of the val split)
    let ds = sonora_datasets::Dataset::open(&data).unwrap();
    let shard = ds.shards(Some("val"))[0].clone();
    let rec = ds
        .open_shard(&shard)
        .unwrap()
        .read_records(0, None)
        .unwrap()[0]
        .clone()
        .unwrap();
    let clip = sonora_framework::media::decode_mp4(&rec.video.bytes).unwrap();
    assert_eq!(clip.frames.t, v2a.frames.t);
    for k in 0..clip.frames.t {
        let d = frame_diff(clip.frames.frame(k), v2a.frames.frame(k));
        assert!(d < 4.0, "frame {k}: {d}");
    }
    assert!(v2a.audio.is_some() && image.audio.is_some());

    // weights are checked by key
    let mut bad = recipe(&data, &tmp.path().join("runs2"));
    bad.train.modes.extension = -0.5;
    let e = sonora_recipes::train(&bad, &TrainOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.modes.extension"), "{e}");
}

/// Asserts that a minimal recipe in `dir` with `--set {set}` is refused with an error
/// naming `key`.
fn refused_by_key(dir: &Path, set: &str, key: &str) {
    let f = dir.join("r.toml");
    std::fs::write(&f, "[optimizer]\nlr = 0.001\n").unwrap();
    let e = Recipe::load(&f, &[set.into()]).unwrap_err();
    assert!(e.contains(key), "{set}: {e}");
}

/// Per-step losses of a 3-step run `name` (checkpoint at step 3, no samples) of the test
/// recipe changed by `tweak`.
fn three_steps(data: &Path, runs: &Path, name: &str, tweak: impl FnOnce(&mut Recipe)) -> Vec<f64> {
    let mut r = recipe(data, runs);
    r.run.name = name.into();
    r.train.steps = 3;
    r.checkpoint.every = 3;
    r.sample.every = 0;
    tweak(&mut r);
    let mut v = Vec::new();
    sonora_recipes::train(&r, &TrainOptions::default(), &mut |s| v.push(s.loss)).unwrap();
    v
}

#[test]
fn the_training_timestep_distribution_is_configurable_and_checked() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 8, 0.0);
    // the same run with its timesteps pushed toward pure noise trains on other inputs
    let losses = |name: &str, shift: Option<f64>| {
        three_steps(&data, &tmp.path().join("runs"), name, |r| {
            r.train.timestep_shift = shift
        })
    };
    let (model_shift, noisy) = (losses("a", None), losses("b", Some(50.0)));
    assert_eq!(model_shift.len(), 3);
    assert_ne!(model_shift, noisy);
    assert_eq!(
        model_shift,
        losses("c", None),
        "a run is a function of its config"
    );
    // bad values are refused by key
    for (set, key) in [
        ("train.timestep_logit_std=0", "train.timestep_logit_std"),
        ("train.timestep_shift=-2", "train.timestep_shift"),
        (
            "sample.sampler.audio_scale=inf",
            "sample.sampler.audio_scale",
        ),
    ] {
        refused_by_key(tmp.path(), set, key);
    }
}

#[test]
fn the_motion_weighted_loss_is_configurable_and_checked() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 8, 0.0);
    let runs = tmp.path().join("runs");
    let losses =
        |name: &str, w: f64| three_steps(&data, &runs, name, |r| r.train.motion_weight = w);
    let (plain, weighted) = (losses("plain", 0.0), losses("weighted", 8.0));
    // the same batches and noise, another weighting of the same errors: the falling
    // objects' tokens weigh more, and the loss moves with them
    assert_eq!(weighted.len(), 3);
    assert_ne!(plain[0], weighted[0]);
    assert!(
        weighted.iter().all(|l| l.is_finite() && *l > 0.0),
        "{weighted:?}"
    );
    for set in ["train.motion_weight=-1", "train.motion_weight=nan"] {
        refused_by_key(tmp.path(), set, "train.motion_weight");
    }
}

#[test]
fn gradient_checkpointing_trains_the_same_run() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::dataset(&data, 8, 0.0);
    // recomputing activations in the backward pass must not change a single bit
    let run = |name: &str, ckpt: bool| {
        let runs = tmp.path().join("runs");
        let v = three_steps(&data, &runs, name, |r| r.train.grad_checkpointing = ckpt);
        (v, weights(&runs.join(name).join("checkpoints/step-000003")))
    };
    let (plain, checkpointed) = (run("plain", false), run("ckpt", true));
    assert_eq!(plain.0.len(), 3);
    assert_eq!(plain.0, checkpointed.0, "per-step losses");
    assert!(
        changed(&plain.1, &checkpointed.1).is_empty(),
        "final weights"
    );
    let resolved = std::fs::read_to_string(tmp.path().join("runs/ckpt/config.toml")).unwrap();
    assert!(resolved.contains("grad_checkpointing = true"), "{resolved}");
}
