//! The training loop shared by every recipe: data → tokens → flow-matching loss → AdamW
//! with gradient accumulation, global-norm clipping and a warm-up/cosine schedule; optional
//! EMA, frozen parts or LoRA adapters; non-finite losses skipped and counted; checkpoints
//! every N steps and on SIGINT/SIGTERM; exact resumption; TensorBoard, MLflow and
//! `metrics.jsonl`; periodic samples to MP4.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Lora, Module};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sonora_datasets::Dataset;
use sonora_datasets::loader::Loader;
use sonora_framework::checkpoint;
use sonora_framework::diffusion::{Example, FlowConfig, make_batch_at, sample_rng};
use sonora_framework::distributed::{self, Collective, ReduceOp};
use sonora_framework::model::{CaptionTokenizer, ModelConfig, PatchCodec, SonoraDit};
use sonora_framework::tracking::EventWriter;
use sonora_framework::tracking::mlflow::{MlflowRun, RunStatus, flatten};

use crate::config::Recipe;
use crate::data::{
    CharacterRefs, captions, examples, kept_positions, loader_config, validation_loss,
};
use crate::ema::Ema;
use crate::params::{ParamList, flatten_params, load_flat_params, part_group, with_stable_ids};
use crate::resume::{
    EMA_FILE, OPTIMIZER_FILE, Resume, TrainState, checkpoint_dir, list_checkpoints, read_state,
};
use crate::samples::write_samples;
use crate::step::{MicroBatch, StepReport, Trainer};

/// Why training stopped early or could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrainError(pub String);

/// A [`TrainError`] from anything printable.
pub fn err(e: impl std::fmt::Display) -> TrainError {
    TrainError(e.to_string())
}

/// How to start.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Replace an existing run directory.
    pub overwrite: bool,
    /// Continue from a checkpoint.
    pub resume: Option<Resume>,
    /// Set (e.g. by a SIGINT/SIGTERM handler) to checkpoint and stop after the current step.
    pub stop: Option<Arc<AtomicBool>>,
}

/// One logged step.
#[derive(Clone, Debug)]
pub struct StepLog {
    /// Step number (1-based, after the update).
    pub step: u64,
    /// Of this many.
    pub total: u64,
    /// Weighted loss (mean over the accumulated micro-batches).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Seconds this step took.
    pub step_s: f64,
}

/// What a finished (or interrupted) run left behind.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Step the run continued from (`None` = started from scratch).
    pub resumed_from: Option<u64>,
    /// Last completed step.
    pub step: u64,
    /// Stopped by a signal (a checkpoint of `step` was written).
    pub interrupted: bool,
    /// Validation loss (fixed noise and timesteps) before training.
    pub val_loss_initial: Option<f64>,
    /// The same after training (EMA weights when EMA is on).
    pub val_loss_final: Option<f64>,
    /// Steps skipped for a non-finite loss.
    pub skipped_steps: u64,
    /// Checkpoint directories kept.
    pub checkpoints: Vec<PathBuf>,
    /// Sample MP4s written at the end.
    pub samples: Vec<PathBuf>,
    /// MLflow run id, when a server was configured.
    pub mlflow_run: Option<String>,
}

/// Everything the loop carries from step to step.
struct Loop {
    /// Model, optimizer, EMA and the step itself.
    trainer: Trainer,
    rng: ChaCha8Rng,
    loader: Loader,
    step: u64,
    skipped: u64,
    val_initial: Option<f64>,
    last_loss: f64,
    kept: Vec<PathBuf>,
    /// Step of the newest checkpoint written (known on every rank, unlike `kept`).
    last_saved: Option<u64>,
    /// Fixed validation batches.
    val: Vec<Vec<Example>>,
    /// Lowest validation loss among saved checkpoints, and where.
    best: Option<(f64, PathBuf)>,
}

impl Loop {
    /// The weights to validate, checkpoint-rank and sample with: the EMA's when EMA is on.
    fn eval_model(&self) -> SonoraDit {
        self.trainer.eval_model()
    }
}

/// The model config of a recipe, taking a fine-tune's checkpoint into account.
fn model_config(recipe: &Recipe) -> Result<ModelConfig, TrainError> {
    let from = match &recipe.finetune.from {
        Some(p) => {
            Some(checkpoint::read_manifest(p).map_err(|e| err(format!("finetune.from: {e}")))?)
        }
        None => None,
    };
    match (
        from,
        recipe.model.file.is_none() && recipe.model.inline.is_none(),
    ) {
        (Some(m), true) => Ok(m.model),
        (Some(m), false) => {
            let cfg = recipe.model.resolve().map_err(TrainError)?;
            let diff = checkpoint::config_diff(&m.model, &cfg);
            if diff.is_empty() {
                Ok(cfg)
            } else {
                Err(err(format!(
                    "finetune.from: the checkpoint's model config differs from [model] in {} (checkpoint's config named `{}`, [model]'s `{}`; drop [model] to use the checkpoint's)",
                    diff.join(", "),
                    m.model.name,
                    cfg.name
                )))
            }
        }
        (None, _) => recipe.model.resolve().map_err(TrainError),
    }
}

/// The resolved recipe as TOML (the model inline).
fn resolved_toml(recipe: &Recipe, mcfg: &ModelConfig) -> Result<String, TrainError> {
    toml::to_string_pretty(&Recipe {
        model: crate::config::ModelSection {
            file: None,
            inline: Some(mcfg.clone()),
        },
        ..recipe.clone()
    })
    .map_err(err)
}

/// Prepares the run directory; returns the checkpoint to resume from, if any.
fn prepare_run_dir(
    run_dir: &Path,
    opts: &TrainOptions,
    resolved: &str,
) -> Result<Option<PathBuf>, TrainError> {
    let from = match &opts.resume {
        Some(Resume::Path(p)) => {
            if !p.join("manifest.json").is_file() {
                return Err(TrainError(format!(
                    "--resume {}: not a checkpoint directory (no manifest.json there); --resume takes `auto` (the newest checkpoint of the run directory) or a checkpoint directory such as {}",
                    p.display(),
                    run_dir.join("checkpoints").join("step-000100").display()
                )));
            }
            Some(p.clone())
        }
        Some(Resume::Auto) => {
            let found = list_checkpoints(run_dir)?.pop();
            if found.is_none() {
                tracing::info!(
                    "--resume auto: no checkpoint under {}; starting from scratch",
                    run_dir.display()
                );
            }
            found
        }
        None => None,
    };
    if let Some(p) = &from {
        if let Ok(old) = std::fs::read_to_string(run_dir.join("config.toml"))
            && old != resolved
        {
            let changed: Vec<&str> = resolved
                .lines()
                .filter(|l| !old.lines().any(|o| o == *l))
                .collect();
            tracing::warn!(
                "resuming with a config that differs from the run's config.toml: {}",
                changed.join("; ")
            );
        }
        tracing::info!("resuming from {}", p.display());
    } else if run_dir.exists() && opts.resume.is_none() {
        if never_stepped(run_dir) {
            // an earlier run stopped during setup (a bad data path, a batch too large):
            // nothing of it is worth keeping, and it must not block this one
            tracing::info!(
                "run directory {} holds no step of an earlier run; replacing it",
                run_dir.display()
            );
        } else if !opts.overwrite {
            return Err(TrainError(format!(
                "run directory {} already exists; pass --resume auto to continue it or --overwrite to replace it",
                run_dir.display()
            )));
        }
        std::fs::remove_dir_all(run_dir).map_err(|e| err(format!("{}: {e}", run_dir.display())))?;
    }
    std::fs::create_dir_all(run_dir).map_err(|e| err(format!("{}: {e}", run_dir.display())))?;
    sonora_framework::fsutil::write_atomic(&run_dir.join("config.toml"), resolved.as_bytes())
        .map_err(err)?;
    Ok(from)
}

/// Whether a run directory holds nothing an earlier run made past its setup: no
/// checkpoint and no logged step.
fn never_stepped(run_dir: &Path) -> bool {
    let no_ckpt = list_checkpoints(run_dir).is_ok_and(|c| c.is_empty());
    let no_step = std::fs::metadata(run_dir.join("metrics.jsonl")).map_or(true, |m| m.len() == 0);
    no_ckpt && no_step
}

/// AdamW as the recipe asks.
fn optimizer(recipe: &Recipe) -> ModuleOptimizer {
    let o = &recipe.optimizer;
    AdamWConfig::new()
        .with_beta_1(o.beta1)
        .with_beta_2(o.beta2)
        .with_epsilon(o.eps)
        .with_weight_decay(o.weight_decay)
        .init()
}

/// Freezes the recipe's parts and attaches LoRA adapters.
fn apply_finetune(recipe: &Recipe, model: SonoraDit) -> Result<SonoraDit, TrainError> {
    let f = &recipe.finetune;
    let mut model = model;
    if !f.freeze.is_empty() {
        let group = part_group(&ParamList::of(&model), &f.freeze)
            .map_err(|e| err(format!("finetune.freeze: {e}")))?;
        model = model.freeze_group(group);
    }
    if f.lora_rank > 0 {
        let blocks = part_group(&ParamList::of(&model), &["blocks".to_string()]).map_err(err)?;
        model = model.apply_lora(Lora::new(f.lora_rank, f.lora_alpha).set_param_group(blocks));
    }
    Ok(model)
}

/// Appends one JSON line to `metrics.jsonl`.
fn append_metrics(path: &Path, v: &serde_json::Value) -> Result<(), TrainError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    writeln!(f, "{v}").map_err(|e| err(format!("{}: {e}", path.display())))
}

/// Trains `recipe`. `on_step` sees every step (for progress bars).
pub fn train(
    recipe: &Recipe,
    opts: &TrainOptions,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<TrainOutcome, TrainError> {
    // a recipe built in code is checked like one loaded from a file
    recipe.check().map_err(err)?;
    let comm = distributed::init(&recipe.distributed.backend, recipe.distributed.world_size)
        .map_err(err)?;
    let out = train_ranked(recipe, opts, on_step, comm.as_ref());
    if let (Err(e), true) = (&out, comm.world() > 1) {
        // the other ranks may be waiting in a collective that this one will never enter
        eprintln!("error: rank {} of {}: {e}", comm.rank(), comm.world());
        comm.abort(1);
    }
    out
}

/// Checks what data parallelism cannot do yet, naming the key.
fn check_data_parallel(recipe: &Recipe, world: usize) -> Result<(), TrainError> {
    if world == 1 {
        return Ok(());
    }
    let refuse = |what: &str| {
        Err(TrainError(format!(
            "{what} is not supported with {world} ranks yet (every rank must read the same number of batches in step)"
        )))
    };
    if !recipe.data.loader.buckets.is_empty() {
        return refuse("data.loader.buckets");
    }
    Ok(())
}

/// [`train`] on one rank of `comm`: rank 0 prepares the run directory and tells the others
/// what it found, so every rank resumes from the same checkpoint or stops with the same
/// error.
fn train_ranked(
    recipe: &Recipe,
    opts: &TrainOptions,
    on_step: &mut dyn FnMut(&StepLog),
    comm: &dyn Collective,
) -> Result<TrainOutcome, TrainError> {
    check_data_parallel(recipe, comm.world())?;
    let mcfg = model_config(recipe)?;
    crate::data::check_loader_keys(&recipe.data.loader, &mcfg, recipe.run.seed).map_err(err)?;
    let run_dir = recipe.run.out_dir.join(&recipe.run.name);
    let resolved = resolved_toml(recipe, &mcfg)?;
    let fresh = !run_dir.exists();
    let prepared = if comm.rank() == 0 {
        prepare_run_dir(&run_dir, opts, &resolved).map_err(|e| e.0)
    } else {
        Err(String::new())
    };
    let prepared = share(comm, prepared)?;
    let resume_from = prepared.map(PathBuf::from);
    let out = train_in(
        recipe,
        opts,
        on_step,
        mcfg,
        &run_dir,
        &resolved,
        resume_from,
        comm,
    );
    // a run that failed before its first step leaves no directory behind to block the next
    if out.is_err() && fresh && comm.rank() == 0 && never_stepped(&run_dir) {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    out
}

/// Rank 0's result of preparing the run (the checkpoint to resume, or the error), given to
/// every rank.
fn share(
    comm: &dyn Collective,
    mine: Result<Option<PathBuf>, String>,
) -> Result<Option<String>, TrainError> {
    let mut bytes = if comm.rank() == 0 {
        let v: Result<Option<String>, String> = mine.map(|p| p.map(|p| p.display().to_string()));
        serde_json::to_vec(&v).expect("serialises")
    } else {
        Vec::new()
    };
    comm.broadcast_bytes(&mut bytes, 0);
    let v: Result<Option<String>, String> =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("rank 0's answer: {e}")))?;
    v.map_err(TrainError)
}

/// [`train`] once the run directory is prepared.
#[allow(clippy::too_many_arguments)]
fn train_in(
    recipe: &Recipe,
    opts: &TrainOptions,
    on_step: &mut dyn FnMut(&StepLog),
    mcfg: ModelConfig,
    run_dir: &Path,
    resolved: &str,
    resume_from: Option<PathBuf>,
    comm: &dyn Collective,
) -> Result<TrainOutcome, TrainError> {
    let run_dir = run_dir.to_path_buf();
    let rank0 = comm.rank() == 0;
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
    // under NCCL each rank drives the GPU of its local rank
    let device_name = if comm.backend() == "nccl" {
        format!("cuda:{}", comm.local_rank())
    } else {
        recipe.run.device.clone()
    };
    let mut device = sonora_framework::device::parse_device(&device_name)
        .map_err(TrainError)?
        .autodiff();
    if recipe.train.grad_checkpointing {
        device = device.gradient_checkpointing();
    }
    device.seed(recipe.run.seed);

    // what the model and a batch will take, before any of it is allocated
    sonora_framework::model::memory::check_memory(&mcfg, recipe.data.loader.batch_size, true)
        .map_err(err)?;
    // model + tokenizer: a resumed checkpoint, a fine-tune's start, or fresh
    let (model, tok, resumed) = match (&resume_from, &recipe.finetune.from) {
        (Some(dir), _) => {
            let (m, t, man) = checkpoint::load(dir, Some(&mcfg), &device).map_err(err)?;
            (m, t, Some((dir.clone(), man)))
        }
        (None, Some(dir)) => {
            let (m, t, _) = checkpoint::load(dir, Some(&mcfg), &device)
                .map_err(|e| err(format!("finetune.from: {e}")))?;
            (m, t, None)
        }
        (None, None) => {
            // rank 0 trains the caption tokenizer; every rank uses its vocabulary
            let mut json = if rank0 {
                CaptionTokenizer::train(
                    captions(&ds, &split)?.iter().map(String::as_str),
                    mcfg.vocab_size,
                    mcfg.text_max_len,
                )
                .and_then(|t| t.to_json())
                .map_err(err)?
                .into_bytes()
            } else {
                Vec::new()
            };
            comm.broadcast_bytes(&mut json, 0);
            let tok =
                CaptionTokenizer::from_json(&String::from_utf8_lossy(&json), mcfg.text_max_len)
                    .map_err(err)?;
            (SonoraDit::new(&mcfg, &device), tok, None)
        }
    };
    let mut model = apply_finetune(recipe, with_stable_ids(model))?;
    if comm.world() > 1 {
        // every rank starts from rank 0's weights
        let mut flat = flatten_params(&model);
        comm.broadcast_f32(&mut flat, 0);
        model = load_flat_params(model, &flat);
    }
    let lora = recipe.finetune.lora_rank > 0;
    let codec = PatchCodec::new(&mcfg);
    let character = if recipe.character.id.is_empty() {
        None
    } else {
        Some(CharacterRefs::load(
            &recipe.data.path,
            &recipe.character.id,
            recipe.character.references,
            &mcfg,
        )?)
    };

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
            Some(b) => val.push(examples(&b, &codec, &tok, character.as_ref())?),
            None => break,
        }
    }

    let mut train_cfg = loader_config(
        &recipe.data.loader,
        &mcfg,
        &split,
        recipe.run.seed,
        recipe.data.loader.shuffle,
    );
    // ranks read in lockstep: the same number of whole batches each epoch
    train_cfg.even_ranks |= comm.world() > 1;
    let loader =
        Loader::new(&ds, train_cfg, comm.rank() as u32, comm.world() as u32).map_err(err)?;
    if loader.epoch_len() == 0 {
        return Err(TrainError(format!(
            "data.path {}: split `{split}` has fewer clips than one global batch ({} ranks × data.loader.batch_size {}); lower the batch size or use fewer ranks",
            recipe.data.path.display(),
            comm.world(),
            recipe.data.loader.batch_size
        )));
    }
    let mut st = Loop {
        trainer: Trainer::new(
            model.clone(),
            optimizer(recipe),
            (recipe.train.ema_decay > 0.0).then(|| Ema::new(&model, recipe.train.ema_decay)),
            flow_config(recipe),
            recipe.train.grad_accum,
            recipe.optimizer.grad_clip,
            &device,
        ),
        rng: ChaCha8Rng::seed_from_u64(recipe.run.seed ^ 0x5eed),
        loader,
        step: 0,
        skipped: 0,
        val_initial: None,
        last_loss: f64::NAN,
        kept: list_checkpoints(&run_dir)?,
        last_saved: None,
        val,
        best: None,
    };
    // rank 0 alone keeps the logs and the validation losses
    if let Some((dir, man)) = &resumed {
        restore(&mut st, dir, man, &mcfg, &device, comm)?;
        if rank0 {
            truncate_metrics(&run_dir, man.step)?;
        }
    } else if rank0 {
        st.val_initial = validation_loss(&st.trainer.model, &st.val, &mcfg, &device)?;
    }

    let mut tb = if recipe.tracking.tensorboard && rank0 {
        Some(EventWriter::create(&run_dir.join("tb")).map_err(err)?)
    } else {
        None
    };
    if let Some(tb) = tb.as_mut() {
        tb.text("config", st.step, &format!("```toml\n{resolved}\n```"))
            .map_err(err)?;
        if let (Some(v), None) = (st.val_initial, &resumed) {
            tb.scalar("loss/val", 0, v).map_err(err)?;
        }
    }
    let mut mlflow = if rank0 {
        start_mlflow(recipe, resolved, &run_dir)?
    } else {
        None
    };
    let mut sinks = Sinks {
        metrics: run_dir.join("metrics.jsonl"),
        tb: tb.as_mut(),
        mlflow: mlflow.as_mut(),
        log_every: recipe.train.log_every,
    };
    let result = run_loop(
        recipe,
        &mcfg,
        &mut st,
        &codec,
        &tok,
        character.as_ref(),
        &device,
        &run_dir,
        &mut sinks,
        opts.stop.as_deref(),
        lora,
        on_step,
        comm,
    );
    let interrupted = match result {
        Ok(i) => i,
        Err(e) => {
            if let Some(m) = mlflow {
                m.finish(RunStatus::Failed);
            }
            return Err(e);
        }
    };

    let eval_model = st.eval_model();
    let inner = device.clone().without_autodiff();
    let val_final = if rank0 {
        validation_loss(&eval_model, &st.val, &mcfg, &inner)?
    } else {
        None
    };
    if let (Some(tb), Some(v)) = (tb.as_mut(), val_final) {
        tb.scalar("loss/val", st.step, v).map_err(err)?;
    }
    if let (Some(m), Some(v)) = (mlflow.as_mut(), val_final) {
        m.log_metric("loss/val", v, st.step);
    }
    let samples = if interrupted || !rank0 {
        Vec::new()
    } else {
        write_samples(
            recipe,
            &eval_model,
            &tok,
            &st.val,
            &run_dir,
            st.step,
            &device,
            tb.as_mut(),
        )?
    };
    let mlflow_run = mlflow.as_ref().map(|m| m.run_id.clone());
    if let Some(mut m) = mlflow {
        upload_artifacts(&mut m, &run_dir, st.kept.last(), &samples);
        m.finish(if interrupted {
            RunStatus::Killed
        } else {
            RunStatus::Finished
        });
    }
    Ok(TrainOutcome {
        run_dir,
        resumed_from: resumed.map(|(_, m)| m.step),
        step: st.step,
        interrupted,
        val_loss_initial: st.val_initial,
        val_loss_final: val_final,
        skipped_steps: st.skipped,
        checkpoints: st.kept,
        samples,
        mlflow_run,
    })
}

/// Restores optimizer, EMA, RNG, loader and counters from a checkpoint.
fn restore(
    st: &mut Loop,
    dir: &Path,
    man: &checkpoint::Manifest,
    mcfg: &ModelConfig,
    device: &Device,
    comm: &dyn Collective,
) -> Result<(), TrainError> {
    let state = read_state(dir, man)?;
    if state.world != comm.world() {
        return Err(TrainError(format!(
            "{} was written by {} rank(s) and this run has {}: each rank's data position would not carry over (the epoch's order is dealt to ranks by batch); resume with {} rank(s), or start a new run from it with finetune.from",
            dir.display(),
            state.world,
            comm.world(),
            state.world
        )));
    }
    let opt_path = dir.join(OPTIMIZER_FILE);
    let bytes =
        std::fs::read(&opt_path).map_err(|e| err(format!("{}: {e}", opt_path.display())))?;
    let optim = std::mem::replace(&mut st.trainer.optim, AdamWConfig::new().init());
    st.trainer.optim = optim
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| err(format!("{}: {e:?}", opt_path.display())))?;
    match (&mut st.trainer.ema, state.ema) {
        (Some(ema), true) => {
            let mut m = SonoraDit::new(mcfg, &device.clone().without_autodiff());
            checkpoint::apply_weights_file(&mut m, &dir.join(EMA_FILE)).map_err(err)?;
            ema.model = m;
        }
        (Some(_), false) => tracing::warn!(
            "{} has no EMA weights; the EMA restarts from the current weights",
            dir.display()
        ),
        (None, _) => {}
    }
    st.rng.set_word_pos(state.word_pos()?);
    let mine = match state.loader_ranks.get(comm.rank()) {
        Some(l) => l.clone(),
        None if comm.world() == 1 => state.loader,
        None => {
            return Err(TrainError(format!(
                "{}: no data position for rank {} (the checkpoint holds {})",
                dir.display(),
                comm.rank(),
                state.loader_ranks.len()
            )));
        }
    };
    st.loader.restore(mine);
    st.step = man.step;
    st.last_saved = Some(man.step);
    st.skipped = state.skipped_steps;
    st.val_initial = state.val_loss_initial;
    st.last_loss = state.loss;
    // one read (and checksum pass) per checkpoint: keep the readable ones up to this step,
    // and find the best among them
    let mut kept = Vec::new();
    let mut best: Option<(f64, PathBuf)> = None;
    for k in std::mem::take(&mut st.kept) {
        let Ok(m) = checkpoint::read_manifest(&k) else {
            continue;
        };
        if m.step > man.step {
            continue;
        }
        if let Some(v) = m.extra.get("val_loss").and_then(|v| v.as_f64())
            && best.as_ref().is_none_or(|(b, _)| v.total_cmp(b).is_lt())
        {
            best = Some((v, k.clone()));
        }
        kept.push(k);
    }
    st.kept = kept;
    st.best = best;
    Ok(())
}

/// Drops `metrics.jsonl` lines of steps after `step` (written before a crash, redone now).
fn truncate_metrics(run_dir: &Path, step: u64) -> Result<(), TrainError> {
    let path = run_dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    sonora_framework::fsutil::write_atomic(&path, kept.as_bytes()).map_err(err)
}

/// Opens the MLflow run when `tracking.mlflow_uri` or `MLFLOW_TRACKING_URI` names a server.
fn start_mlflow(
    recipe: &Recipe,
    resolved: &str,
    run_dir: &Path,
) -> Result<Option<MlflowRun>, TrainError> {
    let uri = if recipe.tracking.mlflow_uri.is_empty() {
        std::env::var("MLFLOW_TRACKING_URI").unwrap_or_default()
    } else {
        recipe.tracking.mlflow_uri.clone()
    };
    if uri.is_empty() {
        return Ok(None);
    }
    if !uri.starts_with("http://") && !uri.starts_with("https://") {
        return Err(err(format!(
            "MLflow tracking URI `{uri}`: sonora talks to a tracking server over HTTP(S) (start one with `mlflow server`)"
        )));
    }
    let mut run = MlflowRun::start(
        &uri,
        &recipe.tracking.mlflow_experiment,
        &recipe.run.name,
        &[
            ("mlflow.source.name", "sonora train".to_string()),
            ("sonora.run_dir", run_dir.display().to_string()),
            ("sonora.version", env!("CARGO_PKG_VERSION").to_string()),
        ],
    )
    .map_err(|e| err(format!("MLflow: {e}")))?;
    let table: toml::Value = toml::from_str(resolved).map_err(err)?;
    let mut params = Vec::new();
    flatten("", &serde_json::to_value(table).map_err(err)?, &mut params);
    run.log_params(&params);
    tracing::info!("MLflow run {} at {uri}", run.run_id);
    Ok(Some(run))
}

/// Uploads the newest checkpoint's manifest and the samples; failures are warnings.
fn upload_artifacts(
    m: &mut MlflowRun,
    run_dir: &Path,
    ckpt: Option<&PathBuf>,
    samples: &[PathBuf],
) {
    let mut files: Vec<PathBuf> = samples.to_vec();
    if let Some(c) = ckpt {
        files.push(c.join(checkpoint::MANIFEST_FILE));
    }
    files.push(run_dir.join("config.toml"));
    for f in files {
        let Ok(rel) = f.strip_prefix(run_dir) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let res = std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| m.log_artifact(&rel, &b).map_err(|e| e.to_string()));
        if let Err(e) = res {
            tracing::warn!("MLflow: artifact {rel} not uploaded: {e}");
        }
    }
}

/// Writes a checkpoint of the current state and drops the oldest beyond `keep_last`.
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    recipe: &Recipe,
    st: &mut Loop,
    tok: &CaptionTokenizer,
    run_dir: &Path,
    lora: bool,
    mcfg: &ModelConfig,
    device: &Device,
    comm: &dyn Collective,
) -> Result<(), TrainError> {
    // every rank's data position, gathered on rank 0, which alone writes
    let mut loader_ranks = Vec::new();
    for r in 0..comm.world() {
        let mut bytes = if r == comm.rank() {
            serde_json::to_vec(&st.loader.state()).map_err(err)?
        } else {
            Vec::new()
        };
        comm.broadcast_bytes(&mut bytes, r);
        loader_ranks.push(serde_json::from_slice(&bytes).map_err(err)?);
    }
    st.last_saved = Some(st.step);
    if comm.rank() != 0 {
        return Ok(());
    }
    let dir = checkpoint_dir(run_dir, st.step);
    let val_loss = if recipe.checkpoint.keep_best {
        validation_loss(
            &st.eval_model(),
            &st.val,
            mcfg,
            &device.clone().without_autodiff(),
        )?
    } else {
        None
    };
    let mut files = vec![(
        OPTIMIZER_FILE,
        st.trainer
            .optim
            .into_bytes()
            .map_err(|e| err(format!("optimizer state: {e:?}")))?
            .to_vec(),
    )];
    if let Some(ema) = &st.trainer.ema {
        files.push((
            EMA_FILE,
            checkpoint::weights_bytes(&ema.model).map_err(err)?,
        ));
    }
    let state = TrainState {
        loader: st.loader.state(),
        rng_word_pos: st.rng.get_word_pos().to_string(),
        skipped_steps: st.skipped,
        val_loss_initial: st.val_initial,
        loss: st.last_loss,
        val_loss,
        ema: st.trainer.ema.is_some(),
        lora,
        world: comm.world(),
        loader_ranks: if comm.world() > 1 {
            loader_ranks
        } else {
            Vec::new()
        },
    };
    let weights = if lora {
        st.trainer.model.valid().materialize()
    } else {
        st.trainer.model.clone()
    };
    checkpoint::save(
        &dir,
        &weights,
        tok,
        st.step,
        &files,
        serde_json::to_value(&state).map_err(err)?,
    )
    .map_err(|e| {
        err(format!(
            "checkpoint at step {}: {e} (earlier checkpoints are intact)",
            st.step
        ))
    })?;
    st.kept.retain(|k| k != &dir);
    st.kept.push(dir.clone());
    if let Some(v) = val_loss
        && st.best.as_ref().is_none_or(|(b, _)| v < *b)
    {
        let note = serde_json::json!({"step": st.step, "val_loss": v, "path": dir.file_name().map(|n| n.to_string_lossy().into_owned())});
        sonora_framework::fsutil::write_atomic(
            &run_dir.join("checkpoints").join("best.json"),
            format!("{note:#}\n").as_bytes(),
        )
        .map_err(err)?;
        st.best = Some((v, dir));
    }
    // keep the newest keep_last and the best; drop the rest
    let best = st.best.as_ref().map(|(_, p)| p.clone());
    let newest = st.kept.len().saturating_sub(recipe.checkpoint.keep_last);
    let (old, young) = st.kept.split_at(newest);
    let (drop, keep): (Vec<PathBuf>, Vec<PathBuf>) =
        old.iter().cloned().partition(|k| Some(k) != best.as_ref());
    st.kept = keep.into_iter().chain(young.iter().cloned()).collect();
    for old in drop {
        std::fs::remove_dir_all(&old).map_err(|e| err(format!("{}: {e}", old.display())))?;
    }
    Ok(())
}

/// A collective that counts the seconds spent in it (`comm_s` in `metrics.jsonl`).
struct TimedCollective<'a> {
    inner: &'a dyn Collective,
    spent: std::cell::Cell<f64>,
}

impl<'a> TimedCollective<'a> {
    fn new(inner: &'a dyn Collective) -> Self {
        Self {
            inner,
            spent: std::cell::Cell::new(0.0),
        }
    }

    /// Seconds since the last call.
    fn take(&self) -> f64 {
        self.spent.replace(0.0)
    }

    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        self.spent
            .set(self.spent.get() + t0.elapsed().as_secs_f64());
        out
    }
}

impl Collective for TimedCollective<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn world(&self) -> usize {
        self.inner.world()
    }
    fn local_rank(&self) -> usize {
        self.inner.local_rank()
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp) {
        self.time(|| self.inner.all_reduce_f32(buf, op))
    }
    fn all_reduce_f64(&self, buf: &mut [f64], op: ReduceOp) {
        self.time(|| self.inner.all_reduce_f64(buf, op))
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) {
        self.time(|| self.inner.broadcast_bytes(buf, root))
    }
    fn all_reduce_tensor(&self, t: Tensor<1>, op: ReduceOp) -> Tensor<1> {
        self.time(|| self.inner.all_reduce_tensor(t, op))
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) {
        self.time(|| self.inner.broadcast_f32(buf, root))
    }
    fn barrier(&self) {
        self.time(|| self.inner.barrier())
    }
    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
}

/// The flow-matching settings of a recipe's `[train]`.
fn flow_config(recipe: &Recipe) -> FlowConfig {
    FlowConfig {
        video_weight: recipe.train.video_weight,
        audio_weight: recipe.train.audio_weight,
        caption_dropout: recipe.train.caption_dropout,
        logit_mean: recipe.train.timestep_logit_mean,
        logit_std: recipe.train.timestep_logit_std,
        shift: recipe.train.timestep_shift,
        motion_weight: recipe.train.motion_weight,
        ref_dropout: recipe.character.ref_dropout,
    }
}

/// Where rank 0 records each step: `metrics.jsonl` always, TensorBoard and MLflow every
/// `train.log_every` steps (and at the last).
pub(crate) struct Sinks<'a> {
    metrics: PathBuf,
    tb: Option<&'a mut EventWriter>,
    mlflow: Option<&'a mut MlflowRun>,
    log_every: u64,
}

/// One step as the sinks see it.
struct StepRecord {
    step: u64,
    total: u64,
    report: StepReport,
    lr: f64,
    step_s: f64,
    tokens_per_s: f64,
    skipped: u64,
    /// Seconds in collectives and the world size (runs of more than one rank).
    comm: Option<(f64, usize)>,
}

impl Sinks<'_> {
    fn record(&mut self, r: &StepRecord) -> Result<(), TrainError> {
        let mut line = serde_json::json!({"step": r.step, "loss": r.report.loss, "lr": r.lr,
            "grad_norm": r.report.grad_norm, "step_s": r.step_s, "skipped_steps": r.skipped});
        if let Some((comm_s, world)) = r.comm {
            // seconds in collectives since the previous logged step (all-reduces, the stop
            // and skip votes, a checkpoint's gather of loader positions)
            line["comm_s"] = comm_s.into();
            line["world"] = world.into();
        }
        append_metrics(&self.metrics, &line)?;
        if !(r.step.is_multiple_of(self.log_every.max(1)) || r.step == r.total) {
            return Ok(());
        }
        let scalars = [
            ("loss/total", r.report.loss),
            ("loss/video", r.report.video),
            ("loss/audio", r.report.audio),
            ("lr", r.lr),
            ("grad_norm", r.report.grad_norm),
            ("step_time_s", r.step_s),
            ("tokens_per_s", r.tokens_per_s),
            ("skipped_steps", r.skipped as f64),
        ];
        if let Some(tb) = self.tb.as_deref_mut() {
            for (k, v) in scalars {
                tb.scalar(k, r.step, v).map_err(err)?;
            }
        }
        if let Some(m) = self.mlflow.as_deref_mut() {
            for (k, v) in scalars {
                m.log_metric(k, v, r.step);
            }
            m.flush();
        }
        Ok(())
    }
}

/// What turns loader batches into this rank's micro-batches.
struct MicroBatches<'a> {
    recipe: &'a Recipe,
    mcfg: &'a ModelConfig,
    codec: &'a PatchCodec,
    tok: &'a CaptionTokenizer,
    character: Option<&'a CharacterRefs>,
    device: &'a Device,
    fc: FlowConfig,
    /// Consecutive loader batches without the character.
    empty: u32,
}

impl MicroBatches<'_> {
    /// The next micro-batch of this rank: read, tokenised, given its tasks and noised. One
    /// base seed per micro-batch comes from `rng` (the same stream on every rank), and each
    /// sample's draws are keyed by its index in the global batch, so what a sample draws
    /// does not depend on the world size.
    fn next(
        &mut self,
        loader: &mut Loader,
        rng: &mut ChaCha8Rng,
        comm: &dyn Collective,
    ) -> Result<MicroBatch, TrainError> {
        let (rank, world) = (comm.rank(), comm.world());
        loop {
            let batch = loader.next_batch().map_err(err)?;
            // epoch boundary on every rank: the next call starts the next epoch. Ranks hold
            // equal shares of each epoch and reach its end together, unless skipped bad rows
            // (`bad_rows = "skip"`) shortened a rank's: that rank then joins this
            // micro-batch with nothing and starts its next epoch at the next call.
            let everyone_done = if world > 1 {
                let mut have = [f64::from(u8::from(batch.is_some()))];
                comm.all_reduce_f64(&mut have, ReduceOp::Sum);
                have[0] == 0.0
            } else {
                batch.is_none()
            };
            if everyone_done {
                continue;
            }
            // drawn on every rank, so the ranks' streams stay equal
            let base: u64 = rng.random();
            // each kept sample's index in the global batch keys its draws
            let first = rank as u64 * self.recipe.data.loader.batch_size as u64;
            let (keys, mut ex): (Vec<u64>, Vec<Example>) = match &batch {
                Some(b) => (
                    kept_positions(b, self.character)
                        .into_iter()
                        .map(|i| first + i as u64)
                        .collect(),
                    examples(b, self.codec, self.tok, self.character)?,
                ),
                None => (Vec::new(), Vec::new()),
            };
            if self.character.is_none() {
                for (e, &k) in ex.iter_mut().zip(&keys) {
                    let mut r = sample_rng(base, k, 1);
                    e.mode = self.recipe.train.modes.draw(self.mcfg, &mut r);
                }
            }
            // a micro-batch is skipped only when no rank has a clip for it
            let some = if world > 1 {
                comm.any(!ex.is_empty())
            } else {
                !ex.is_empty()
            };
            if !some {
                // consecutive batches without the character: a rare character leaves many
                // batches empty over a run, a missing one leaves every batch empty
                self.empty += 1;
                if self.empty > 1000 {
                    return Err(err(format!(
                        "character.id = `{}`: no clip of data.path shows this character",
                        self.recipe.character.id
                    )));
                }
                continue;
            }
            self.empty = 0;
            if ex.is_empty() {
                return Ok(MicroBatch {
                    batch: None,
                    samples: 0,
                });
            }
            let samples = ex.len();
            let batch =
                make_batch_at(self.mcfg, &self.fc, &ex, base, &keys, self.device).map_err(err)?;
            return Ok(MicroBatch {
                batch: Some(batch),
                samples,
            });
        }
    }
}

/// The steps themselves; returns whether a stop signal ended them.
#[allow(clippy::too_many_arguments)]
fn run_loop(
    recipe: &Recipe,
    mcfg: &ModelConfig,
    st: &mut Loop,
    codec: &PatchCodec,
    tok: &CaptionTokenizer,
    character: Option<&CharacterRefs>,
    device: &Device,
    run_dir: &Path,
    sinks: &mut Sinks,
    stop: Option<&AtomicBool>,
    lora: bool,
    on_step: &mut dyn FnMut(&StepLog),
    comm: &dyn Collective,
) -> Result<bool, TrainError> {
    let timed = TimedCollective::new(comm);
    let comm: &dyn Collective = &timed;
    let total = recipe.train.steps;
    let tokens_per_sample = mcfg.video_tokens() + mcfg.audio_tokens();
    let mut bad_in_row = 0u64;
    let mut micro = MicroBatches {
        recipe,
        mcfg,
        codec,
        tok,
        character,
        device,
        fc: flow_config(recipe),
        empty: 0,
    };
    while st.step < total {
        // a signal reaches the ranks at different moments: they stop together
        if comm.any(stop.is_some_and(|s| s.load(Ordering::SeqCst))) {
            // every rank knows whether this step is saved already: the save is collective
            if st.last_saved != Some(st.step) {
                save_checkpoint(recipe, st, tok, run_dir, lora, mcfg, device, comm)?;
            }
            tracing::warn!(
                "stopped by a signal at step {}; checkpoint written",
                st.step
            );
            return Ok(true);
        }
        let t0 = Instant::now();
        let lr = recipe.schedule.lr_at(recipe.optimizer.lr, st.step, total);
        let (loader, rng) = (&mut st.loader, &mut st.rng);
        let report = st
            .trainer
            .step(lr, comm, &mut || micro.next(loader, rng, comm))?;
        let Some(report) = report else {
            st.skipped += 1;
            bad_in_row += 1;
            tracing::warn!(
                "step {}: non-finite loss; step skipped ({bad_in_row} in a row)",
                st.step + 1
            );
            if bad_in_row >= recipe.train.max_bad_steps {
                return Err(TrainError(format!(
                    "{bad_in_row} non-finite losses in a row at step {}; stopping (the last checkpoint is intact: {})",
                    st.step + 1,
                    st.kept
                        .last()
                        .map_or("none yet".into(), |k| k.display().to_string())
                )));
            }
            continue;
        };
        bad_in_row = 0;
        st.step += 1;
        let step = st.step;
        st.last_loss = report.loss;
        let step_s = t0.elapsed().as_secs_f64();
        let rank0 = comm.rank() == 0;
        // rank 0 alone logs (before the checkpoint: a run killed between the two redoes the
        // step and logs it again, never leaves it out), checkpoints and samples
        if rank0 {
            on_step(&StepLog {
                step,
                total,
                loss: report.loss,
                lr,
                grad_norm: report.grad_norm,
                step_s,
            });
            sinks.record(&StepRecord {
                step,
                total,
                report,
                lr,
                step_s,
                tokens_per_s: (tokens_per_sample * report.samples) as f64 / step_s,
                skipped: st.skipped,
                comm: (comm.world() > 1).then(|| (timed.take(), comm.world())),
            })?;
        }
        if step.is_multiple_of(recipe.checkpoint.every) || step == total {
            save_checkpoint(recipe, st, tok, run_dir, lora, mcfg, device, comm)?;
        }
        if rank0
            && recipe.sample.every > 0
            && step.is_multiple_of(recipe.sample.every)
            && step < total
        {
            write_samples(
                recipe,
                &st.eval_model(),
                tok,
                &st.val,
                run_dir,
                step,
                device,
                sinks.tb.as_deref_mut(),
            )?;
        }
    }
    Ok(false)
}
