//! The training loop shared by every recipe: data → tokens → flow-matching loss → AdamW
//! with global-norm clipping and a warm-up/cosine schedule; non-finite losses skipped and
//! counted; checkpoints every N steps (newest K kept); TensorBoard scalars; samples to MP4.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sonora_datasets::Dataset;
use sonora_datasets::loader::{Batch, Loader, LoaderConfig};
use sonora_framework::checkpoint;
use sonora_framework::diffusion::{
    Example, FlowConfig, Mode, SampleRequest, SamplerConfig, flow_loss, make_batch, sample,
};
use sonora_framework::media::{Mp4Options, encode_mp4};
use sonora_framework::model::{Autoencoder, CaptionTokenizer, ModelConfig, PatchCodec, SonoraDit};
use sonora_framework::tracking::EventWriter;
use sonora_framework::{Clip, ClipMetadata};

use crate::config::Recipe;

/// Why training stopped early or could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrainError(pub String);

fn err(e: impl std::fmt::Display) -> TrainError {
    TrainError(e.to_string())
}

/// One logged step.
#[derive(Clone, Debug)]
pub struct StepLog {
    /// Step number (1-based, after the update).
    pub step: u64,
    /// Of this many.
    pub total: u64,
    /// Weighted loss.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Seconds this step took.
    pub step_s: f64,
}

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Validation loss (fixed noise and timesteps) before training.
    pub val_loss_initial: Option<f64>,
    /// The same after training.
    pub val_loss_final: Option<f64>,
    /// Steps skipped for a non-finite loss.
    pub skipped_steps: u64,
    /// Checkpoint directories kept.
    pub checkpoints: Vec<PathBuf>,
    /// Sample MP4s written at the end.
    pub samples: Vec<PathBuf>,
}

/// Parameter ids and ranks, for global-norm clipping.
struct ParamIds(Vec<(ParamId, usize)>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.push((p.id, D));
    }
}

/// Scales `grads` so their global L2 norm is at most `max` (0 = no clipping); returns the
/// norm before clipping. burn's own clipping is per tensor, which changes the direction.
fn clip_global_norm(model: &SonoraDit, grads: &mut GradientsParams, max: f64) -> f64 {
    let mut ids = ParamIds(Vec::new());
    model.visit(&mut ids);
    fn sq<const D: usize>(g: &GradientsParams, id: ParamId) -> f64 {
        g.get::<D>(id)
            .map_or(0.0, |t| t.powi_scalar(2).sum().into_scalar::<f64>())
    }
    fn scale<const D: usize>(g: &mut GradientsParams, id: ParamId, k: f64) {
        if let Some(t) = g.remove::<D>(id) {
            g.register(id, t.mul_scalar(k));
        }
    }
    let total: f64 = ids
        .0
        .iter()
        .map(|&(id, d)| match d {
            1 => sq::<1>(grads, id),
            2 => sq::<2>(grads, id),
            3 => sq::<3>(grads, id),
            _ => sq::<4>(grads, id),
        })
        .sum();
    let norm = total.sqrt();
    if max > 0.0 && norm > max {
        let k = max / (norm + 1e-6);
        for &(id, d) in &ids.0 {
            match d {
                1 => scale::<1>(grads, id, k),
                2 => scale::<2>(grads, id, k),
                3 => scale::<3>(grads, id, k),
                _ => scale::<4>(grads, id, k),
            }
        }
    }
    norm
}

/// All captions of a dataset split (for training the tokenizer).
fn captions(ds: &Dataset, split: &str) -> Result<Vec<String>, TrainError> {
    let mut out = Vec::new();
    for shard in ds.shards(Some(split)) {
        let r = ds.open_shard(&shard).map_err(err)?;
        for g in 0..r.num_row_groups() {
            for rec in r.read_records(g, None).map_err(err)? {
                out.push(rec.map_err(err)?.caption);
            }
        }
    }
    Ok(out)
}

/// Loader settings with the model's clip geometry.
fn loader_config(
    base: &LoaderConfig,
    m: &ModelConfig,
    split: &str,
    seed: u64,
    shuffle: bool,
) -> LoaderConfig {
    LoaderConfig {
        split: split.into(),
        frames: m.frames,
        height: m.height,
        width: m.width,
        fps: m.fps,
        sample_rate: m.sample_rate,
        channels: 1,
        buckets: Vec::new(),
        seed,
        shuffle,
        ..base.clone()
    }
}

/// Loader batch → training examples (text to video + audio).
fn examples(
    batch: &Batch,
    codec: &PatchCodec,
    tok: &CaptionTokenizer,
) -> Result<Vec<Example>, TrainError> {
    batch
        .samples
        .iter()
        .map(|s| {
            let clip = Clip {
                frames: s.frames.clone(),
                audio: s.audio.clone(),
                fps: batch.target.fps,
                caption: s.caption.clone(),
                metadata: ClipMetadata {
                    clip_id: s.clip_id.clone(),
                    ..ClipMetadata::default()
                },
            };
            Ok(Example {
                tokens: codec.encode(&clip).map_err(err)?,
                refs: Vec::new(),
                text: tok.encode(&s.caption).map_err(err)?,
                mode: Mode::TextToAv,
            })
        })
        .collect()
}

/// Mean loss over `batches` with noise and timesteps drawn from a fixed seed.
fn validation_loss(
    model: &SonoraDit,
    batches: &[Vec<Example>],
    cfg: &ModelConfig,
    device: &Device,
) -> Result<Option<f64>, TrainError> {
    if batches.is_empty() {
        return Ok(None);
    }
    let fc = FlowConfig {
        caption_dropout: 0.0,
        ..FlowConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(12345);
    let mut total = 0.0;
    for ex in batches {
        let b = make_batch(cfg, &fc, ex, &mut rng, device).map_err(err)?;
        total += flow_loss(model.forward(b.input.clone(), &b.rope), &b, &fc)
            .total
            .into_scalar::<f64>();
    }
    Ok(Some(total / batches.len() as f64))
}

/// Trains `recipe`; `overwrite` replaces an existing run directory. `on_step` sees every
/// step (for progress bars).
pub fn train(
    recipe: &Recipe,
    overwrite: bool,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<TrainOutcome, TrainError> {
    let mcfg = recipe.model.resolve().map_err(TrainError)?;
    let run_dir = recipe.run.out_dir.join(&recipe.run.name);
    if run_dir.exists() {
        if !overwrite {
            return Err(TrainError(format!(
                "run directory {} already exists; pass --overwrite to replace it (resuming is not implemented yet)",
                run_dir.display()
            )));
        }
        std::fs::remove_dir_all(&run_dir)
            .map_err(|e| err(format!("{}: {e}", run_dir.display())))?;
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| err(format!("{}: {e}", run_dir.display())))?;
    let resolved = toml::to_string_pretty(&Recipe {
        model: crate::config::ModelSection {
            file: None,
            inline: Some(mcfg.clone()),
        },
        ..recipe.clone()
    })
    .map_err(err)?;
    sonora_framework::fsutil::write_atomic(&run_dir.join("config.toml"), resolved.as_bytes())
        .map_err(err)?;
    tracing::info!(
        "run directory {}; resolved config in config.toml",
        run_dir.display()
    );

    let ds = Dataset::open(&recipe.data.path)
        .map_err(|e| err(format!("data.path {}: {e}", recipe.data.path.display())))?;
    let split = recipe.data.loader.split.clone();
    if ds.shards(Some(&split)).is_empty() {
        return Err(TrainError(format!(
            "data.path {} has no `{split}` shards",
            recipe.data.path.display()
        )));
    }
    let tok = CaptionTokenizer::train(
        captions(&ds, &split)?.iter().map(String::as_str),
        mcfg.vocab_size,
        mcfg.text_max_len,
    )
    .map_err(err)?;
    let codec = PatchCodec::new(&mcfg);
    let mut loader = Loader::new(
        &ds,
        loader_config(&recipe.data.loader, &mcfg, &split, recipe.run.seed, true),
        0,
        1,
    )
    .map_err(err)?;
    // a fixed validation set: the first batches of `val` (or of the training split)
    let val_split = if ds.shards(Some("val")).is_empty() {
        split.clone()
    } else {
        "val".into()
    };
    let mut val_loader = Loader::new(
        &ds,
        loader_config(&recipe.data.loader, &mcfg, &val_split, 0, false),
        0,
        1,
    )
    .map_err(err)?;
    let mut val = Vec::new();
    while val.len() < 4 {
        match val_loader.next_batch().map_err(err)? {
            Some(b) => val.push(examples(&b, &codec, &tok)?),
            None => break,
        }
    }

    let device = sonora_framework::device::parse_device(&recipe.run.device)
        .map_err(TrainError)?
        .autodiff();
    device.seed(recipe.run.seed);
    let mut model = SonoraDit::new(&mcfg, &device);
    let o = &recipe.optimizer;
    let mut optim: ModuleOptimizer = AdamWConfig::new()
        .with_beta_1(o.beta1)
        .with_beta_2(o.beta2)
        .with_epsilon(o.eps)
        .with_weight_decay(o.weight_decay)
        .init();
    let fc = FlowConfig {
        video_weight: recipe.train.video_weight,
        audio_weight: recipe.train.audio_weight,
        caption_dropout: recipe.train.caption_dropout,
        ..FlowConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(recipe.run.seed ^ 0x5eed);
    let mut tb = if recipe.tracking.tensorboard {
        Some(EventWriter::create(&run_dir.join("tb")).map_err(err)?)
    } else {
        None
    };
    if let Some(tb) = tb.as_mut() {
        tb.text("config", 0, &format!("```toml\n{resolved}\n```"))
            .map_err(err)?;
    }
    let val_initial = validation_loss(&model, &val, &mcfg, &device)?;
    if let (Some(tb), Some(v)) = (tb.as_mut(), val_initial) {
        tb.scalar("loss/val", 0, v).map_err(err)?;
    }

    let total = recipe.train.steps;
    let (mut step, mut skipped, mut bad_in_row) = (0u64, 0u64, 0u64);
    let mut kept: Vec<PathBuf> = Vec::new();
    let tokens_per_sample = mcfg.video_tokens() + mcfg.audio_tokens();
    while step < total {
        let batch = match loader.next_batch().map_err(err)? {
            Some(b) => b,
            None => continue, // epoch boundary: the next call starts the next epoch
        };
        let t0 = Instant::now();
        let ex = examples(&batch, &codec, &tok)?;
        let b = make_batch(&mcfg, &fc, &ex, &mut rng, &device).map_err(err)?;
        let losses = flow_loss(model.forward(b.input.clone(), &b.rope), &b, &fc);
        let loss = losses.total.clone().into_scalar::<f64>();
        if !loss.is_finite() {
            skipped += 1;
            bad_in_row += 1;
            tracing::warn!(
                "step {}: non-finite loss {loss}; step skipped ({bad_in_row} in a row)",
                step + 1
            );
            if bad_in_row >= recipe.train.max_bad_steps {
                return Err(TrainError(format!(
                    "{bad_in_row} non-finite losses in a row at step {}; stopping (the last checkpoint, if any, is intact: {:?})",
                    step + 1,
                    kept.last()
                )));
            }
            continue;
        }
        bad_in_row = 0;
        let lr = recipe.schedule.lr_at(o.lr, step, total);
        let mut grads = GradientsParams::from_grads(losses.total.backward(), &model);
        let grad_norm = clip_global_norm(&model, &mut grads, o.grad_clip);
        model = optim.step(lr, model, grads);
        step += 1;
        let step_s = t0.elapsed().as_secs_f64();
        on_step(&StepLog {
            step,
            total,
            loss,
            lr,
            grad_norm,
            step_s,
        });
        if let Some(tb) = tb
            .as_mut()
            .filter(|_| step % recipe.train.log_every.max(1) == 0 || step == total)
        {
            let log = |tb: &mut EventWriter, k: &str, v: f64| tb.scalar(k, step, v).map_err(err);
            log(tb, "loss/total", loss)?;
            log(tb, "loss/video", losses.video.into_scalar::<f64>())?;
            log(tb, "loss/audio", losses.audio.into_scalar::<f64>())?;
            log(tb, "lr", lr)?;
            log(tb, "grad_norm", grad_norm)?;
            log(tb, "step_time_s", step_s)?;
            log(
                tb,
                "tokens_per_s",
                (tokens_per_sample * ex.len()) as f64 / step_s,
            )?;
            log(tb, "skipped_steps", skipped as f64)?;
        }
        if step % recipe.checkpoint.every == 0 || step == total {
            let dir = run_dir.join("checkpoints").join(format!("step-{step:06}"));
            let opt_bytes = optim
                .into_bytes()
                .map_err(|e| err(format!("optimizer state: {e:?}")))?;
            let extra = serde_json::json!({ "loader": loader.state(), "skipped_steps": skipped, "loss": loss });
            checkpoint::save(
                &dir,
                &model,
                &tok,
                step,
                &[("optimizer.bpk", opt_bytes.to_vec())],
                extra,
            )
            .map_err(err)?;
            kept.push(dir);
            while kept.len() > recipe.checkpoint.keep_last {
                let old = kept.remove(0);
                std::fs::remove_dir_all(&old)
                    .map_err(|e| err(format!("{}: {e}", old.display())))?;
            }
        }
    }
    let val_final = validation_loss(&model, &val, &mcfg, &device)?;
    if let (Some(tb), Some(v)) = (tb.as_mut(), val_final) {
        tb.scalar("loss/val", step, v).map_err(err)?;
    }
    let samples = write_samples(
        recipe,
        &model,
        &tok,
        &mcfg,
        &run_dir,
        step,
        &device,
        tb.as_mut(),
    )?;
    Ok(TrainOutcome {
        run_dir,
        val_loss_initial: val_initial,
        val_loss_final: val_final,
        skipped_steps: skipped,
        checkpoints: kept,
        samples,
    })
}

/// Samples the recipe's prompts to `samples/step-N/prompt-K.mp4` (and TensorBoard).
#[allow(clippy::too_many_arguments)]
fn write_samples(
    recipe: &Recipe,
    model: &SonoraDit,
    tok: &CaptionTokenizer,
    mcfg: &ModelConfig,
    run_dir: &Path,
    step: u64,
    device: &Device,
    mut tb: Option<&mut EventWriter>,
) -> Result<Vec<PathBuf>, TrainError> {
    let s = &recipe.sample;
    if s.prompts.is_empty() {
        return Ok(Vec::new());
    }
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let reqs: Vec<SampleRequest> = s
        .prompts
        .iter()
        .map(|p| {
            Ok(SampleRequest {
                text: tok.encode(p).map_err(err)?,
                mode: Mode::TextToAv,
                given: None,
                refs: Vec::new(),
            })
        })
        .collect::<Result<_, TrainError>>()?;
    let sc = SamplerConfig {
        steps: s.steps.max(1),
        seed: s.seed,
        text_scale: s.text_scale,
        ..SamplerConfig::default()
    };
    let out = sample(
        &model,
        &sc,
        &reqs,
        &tok.encode("").map_err(err)?,
        &device,
        &mut |_, _| {},
    )
    .map_err(err)?;
    let dir = run_dir.join("samples").join(format!("step-{step:06}"));
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let codec = PatchCodec::new(mcfg);
    let mut paths = Vec::new();
    for (k, tokens) in out.iter().enumerate() {
        let (frames, audio) = codec.decode(tokens);
        let clip = Clip {
            frames,
            audio,
            fps: mcfg.fps,
            caption: s.prompts[k].clone(),
            metadata: ClipMetadata::default(),
        };
        let mp4 = encode_mp4(&clip, &Mp4Options::default()).map_err(err)?;
        let p = dir.join(format!("prompt-{k}.mp4"));
        sonora_framework::fsutil::write_atomic(&p, &mp4).map_err(err)?;
        if let Some(tb) = tb.as_deref_mut() {
            let mid = clip.frames.t / 2;
            tb.image(
                &format!("samples/{k}"),
                step,
                clip.frames.frame(mid),
                clip.frames.h,
                clip.frames.w,
            )
            .map_err(err)?;
            tb.audio(&format!("samples/{k}"), step, &clip.audio)
                .map_err(err)?;
        }
        paths.push(p);
    }
    Ok(paths)
}
