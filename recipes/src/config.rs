//! The recipe schema: one section per component (run, model, data, optimizer, schedule,
//! train, checkpoint, tracking, sample, distributed). Loaded with
//! [`sonora_framework::config::load_layered`]: file, then `SONORA_SECTION__KEY`, then
//! `--set section.key=value`; unknown keys are errors with a suggestion.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sonora_datasets::loader::LoaderConfig;
use sonora_framework::diffusion::SamplerConfig;
use sonora_framework::model::ModelConfig;

/// A whole recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// Run name and output location.
    pub run: RunSection,
    /// The model: a file under `configs/model/` or inline values.
    pub model: ModelSection,
    /// Training data.
    pub data: DataSection,
    /// AdamW.
    pub optimizer: OptimizerSection,
    /// Learning-rate schedule.
    pub schedule: ScheduleSection,
    /// The loop.
    pub train: TrainSection,
    /// Checkpointing.
    pub checkpoint: CheckpointSection,
    /// Dashboards (TensorBoard, MLflow).
    pub tracking: TrackingSection,
    /// Periodic samples.
    pub sample: SampleSection,
    /// Multi-process training.
    pub distributed: DistributedSection,
    /// Start from a checkpoint: freeze parts, or train low-rank adapters.
    pub finetune: FinetuneSection,
    /// Character fine-tuning: bind a character's reference images to its clips.
    pub character: CharacterSection,
}

/// `[finetune]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneSection {
    /// Checkpoint directory to start from (its weights and tokenizer); `[model]` may then be
    /// omitted, and if given must match the checkpoint's.
    pub from: Option<PathBuf>,
    /// Model parts to freeze: `text`, `audio`, `video`, `references`, `blocks`, `time`.
    pub freeze: Vec<String>,
    /// Rank of LoRA adapters on every 2-D weight of the joint blocks (0 = full fine-tune);
    /// everything else is frozen. Adapters are merged into the weights in checkpoints.
    pub lora_rank: usize,
    /// LoRA scale numerator (the update is scaled by `alpha / rank`).
    pub lora_alpha: f64,
}

impl Default for FinetuneSection {
    fn default() -> Self {
        Self {
            from: None,
            freeze: Vec::new(),
            lora_rank: 0,
            lora_alpha: 16.0,
        }
    }
}

/// `[character]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CharacterSection {
    /// Character id (as in the dataset's `character_ids` and `characters/<id>/`); empty =
    /// off; `"*"` = every character of `data.path/characters/`, each clip cast with the
    /// references of the character it shows (a model that learns to draw whoever is cast).
    pub id: String,
    /// Reference images cast per clip (the first N of `characters/<id>/ref-*.png`).
    pub references: usize,
    /// Fraction of clips trained with their references ignored, so the model also learns
    /// the uncast velocity that reference guidance (`ref_scale`) contrasts with; in [0, 1).
    pub ref_dropout: f64,
}

impl Default for CharacterSection {
    fn default() -> Self {
        Self {
            id: String::new(),
            references: 1,
            ref_dropout: 0.0,
        }
    }
}

/// `[run]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Run name; the run directory is `out_dir/name`.
    pub name: String,
    /// Parent of run directories.
    pub out_dir: PathBuf,
    /// Seed of the model init, noise and timestep draws.
    pub seed: u64,
    /// `flex` (CPU), or `cuda`/`libtorch`/`vulkan` in builds with those features.
    pub device: String,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            name: "run".into(),
            out_dir: "runs".into(),
            seed: 0,
            device: "flex".into(),
        }
    }
}

/// `[model]`: `file = "configs/model/tiny.toml"` or `[model.inline]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// A model config file (relative to the working directory).
    pub file: Option<PathBuf>,
    /// Inline model config.
    pub inline: Option<ModelConfig>,
}

impl ModelSection {
    /// The model config, from the file or inline (exactly one must be given).
    pub fn resolve(&self) -> Result<ModelConfig, String> {
        match (&self.file, &self.inline) {
            (Some(f), None) => ModelConfig::from_file(f).map_err(|e| format!("model.file: {e}")),
            (None, Some(m)) => m
                .validate()
                .map(|_| m.clone())
                .map_err(|e| format!("model.inline: {e}")),
            (Some(_), Some(_)) => {
                Err("model: give either `file` or `[model.inline]`, not both".into())
            }
            (None, None) => Err(
                "model: missing; give `file = \"configs/model/tiny.toml\"` or `[model.inline]`"
                    .into(),
            ),
        }
    }
}

/// `[data]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Dataset directory (shards + manifest).
    pub path: PathBuf,
    /// Loader settings; frames, size, fps and sample rate are taken from the model.
    pub loader: LoaderConfig,
}

/// `[optimizer]`: AdamW with decoupled weight decay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSection {
    /// Peak learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
}

impl Default for OptimizerSection {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            grad_clip: 1.0,
        }
    }
}

/// Learning-rate shape after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Decay {
    /// Cosine down to `min_lr_ratio · lr` at the last step.
    Cosine,
    /// Constant.
    Constant,
}

/// `[schedule]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// After warm-up.
    pub decay: Decay,
    /// Final learning rate as a fraction of the peak (cosine).
    pub min_lr_ratio: f64,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            warmup_steps: 50,
            decay: Decay::Cosine,
            min_lr_ratio: 0.1,
        }
    }
}

impl ScheduleSection {
    /// Learning rate at `step` (0-based) of `total` for peak `lr`.
    pub fn lr_at(&self, lr: f64, step: u64, total: u64) -> f64 {
        if step < self.warmup_steps {
            return lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.decay {
            Decay::Constant => lr,
            Decay::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let min = lr * self.min_lr_ratio;
                min + 0.5 * (lr - min) * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// `[train]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Optimizer steps.
    pub steps: u64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Probability of training on the null caption (for CFG).
    pub caption_dropout: f64,
    /// Weight of the video loss.
    pub video_weight: f64,
    /// Weight of the audio loss.
    pub audio_weight: f64,
    /// Stop after this many non-finite losses in a row.
    pub max_bad_steps: u64,
    /// Log scalars every N steps.
    pub log_every: u64,
    /// Decay of the exponential moving average of the weights (0 = no EMA).
    pub ema_decay: f64,
    /// Compute precision: `f32`. (`bf16` is not built yet and is refused.)
    pub precision: String,
    /// Gradient checkpointing: the backward pass recomputes memory-bound activations
    /// (burn's balanced strategy) instead of keeping them, trading time for memory; the
    /// losses and weights are the same.
    pub grad_checkpointing: bool,
    /// The task mix (`[train.modes]`); character runs always train with their references.
    pub modes: crate::modes::ModeMix,
    /// Mean of the logit-normal training timestep distribution (before the shift).
    pub timestep_logit_mean: f64,
    /// Standard deviation of the logit-normal training timesteps; wider puts more
    /// training near pure noise and near clean data.
    pub timestep_logit_std: f64,
    /// Shift of the training timesteps toward noise; unset = the model's `shift` (the one
    /// its sampler uses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_shift: Option<f64>,
    /// Motion-weighted loss: tokens that change over the clip (the moving object, impact
    /// sounds) weigh up to `1 + motion_weight` against the static room's 1; 0 = plain MSE.
    pub motion_weight: f64,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            steps: 1000,
            grad_accum: 1,
            caption_dropout: 0.1,
            video_weight: 1.0,
            audio_weight: 1.0,
            max_bad_steps: 5,
            log_every: 10,
            ema_decay: 0.0,
            precision: "f32".into(),
            grad_checkpointing: false,
            modes: crate::modes::ModeMix::default(),
            timestep_logit_mean: 0.0,
            timestep_logit_std: 1.0,
            timestep_shift: None,
            motion_weight: 0.0,
        }
    }
}

/// `[checkpoint]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Save every N steps (and at the end).
    pub every: u64,
    /// Keep the newest K checkpoints.
    pub keep_last: usize,
    /// Also keep the checkpoint with the lowest validation loss (computed at every save;
    /// named in `checkpoints/best.json`).
    pub keep_best: bool,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every: 200,
            keep_last: 3,
            keep_best: true,
        }
    }
}

/// `[tracking]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSection {
    /// Write TensorBoard events under `<run>/tb`.
    pub tensorboard: bool,
    /// MLflow tracking server (`http://host:port`); `MLFLOW_TRACKING_URI` is used when this
    /// is empty; neither = no MLflow.
    pub mlflow_uri: String,
    /// MLflow experiment (created if missing).
    pub mlflow_experiment: String,
}

impl Default for TrackingSection {
    fn default() -> Self {
        Self {
            tensorboard: true,
            mlflow_uri: String::new(),
            mlflow_experiment: "sonora".into(),
        }
    }
}

/// `[sample]`: what to sample during training; `[sample.sampler]` how (the sampler
/// settings type the eval suites, the CLI and the server use).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleSection {
    /// Sample every N steps (0 = only at the end).
    pub every: u64,
    /// Fixed prompts.
    pub prompts: Vec<String>,
    /// Also sample the first N validation clips from their first frame (`image-K.mp4`) and
    /// with their video given (`v2a-K.mp4`, the generated sound under the real frames).
    pub given: usize,
    /// The sampler (prompt `k` draws its noise from the stream `seed + k`).
    pub sampler: SamplerConfig,
}

impl Default for SampleSection {
    fn default() -> Self {
        Self {
            every: 0,
            prompts: vec!["a red ball falls onto a wooden floor".into()],
            given: 0,
            sampler: SamplerConfig {
                steps: 16,
                ..SamplerConfig::default()
            },
        }
    }
}

/// `[distributed]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedSection {
    /// `single` (one process), `mpi` (data parallel over the processes `mpirun`/`srun`
    /// started, gradients all-reduced by MPI) or `nccl` (the same on GPUs: gradients
    /// all-reduced on the devices by NCCL; needs the `nccl` build and `run.device = "cuda"`).
    pub backend: String,
    /// Ranks the run must have (0 = as many as were launched); a launch with another
    /// count stops on every rank with a message.
    pub world_size: usize,
}

impl Default for DistributedSection {
    fn default() -> Self {
        Self {
            backend: "single".into(),
            world_size: 0,
        }
    }
}

impl Recipe {
    /// Loads a recipe file with environment and `--set` overrides.
    pub fn load(file: &Path, overrides: &[String]) -> Result<Self, String> {
        let r: Self = sonora_framework::config::load_layered(Some(file), overrides)
            .map_err(|e| e.to_string())?;
        r.check()?;
        Ok(r)
    }

    /// Range checks that serde cannot express; errors name `section.key`.
    pub fn check(&self) -> Result<(), String> {
        let o = &self.optimizer;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(format!("optimizer.lr must be positive, got {}", o.lr));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(format!(
                "optimizer.beta1/beta2 must be in [0, 1), got {}/{}",
                o.beta1, o.beta2
            ));
        }
        if o.grad_clip < 0.0 {
            return Err(format!(
                "optimizer.grad_clip must be ≥ 0, got {}",
                o.grad_clip
            ));
        }
        if self.train.steps == 0 {
            return Err("train.steps must be at least 1".into());
        }
        if self.train.grad_accum == 0 {
            return Err("train.grad_accum must be at least 1".into());
        }
        if !self.train.timestep_logit_mean.is_finite() {
            return Err(format!(
                "train.timestep_logit_mean must be a finite number, got {}",
                self.train.timestep_logit_mean
            ));
        }
        if !(self.train.timestep_logit_std.is_finite() && self.train.timestep_logit_std > 0.0) {
            return Err(format!(
                "train.timestep_logit_std must be > 0, got {}",
                self.train.timestep_logit_std
            ));
        }
        if let Some(s) = self.train.timestep_shift
            && !(s.is_finite() && s > 0.0)
        {
            return Err(format!("train.timestep_shift must be > 0, got {s}"));
        }
        if !(self.train.motion_weight.is_finite()
            && (0.0..=100.0).contains(&self.train.motion_weight))
        {
            return Err(format!(
                "train.motion_weight must be in [0, 100] (0 = plain MSE), got {}",
                self.train.motion_weight
            ));
        }
        if !(0.0..1.0).contains(&self.train.ema_decay) {
            return Err(format!(
                "train.ema_decay must be in [0, 1) (0 = off), got {}",
                self.train.ema_decay
            ));
        }
        if self.finetune.lora_rank > 0 && self.train.ema_decay > 0.0 {
            return Err(
                "train.ema_decay: EMA of LoRA adapters is not supported; set train.ema_decay = 0 with finetune.lora_rank"
                    .into(),
            );
        }
        if self.finetune.lora_rank > 0 && self.finetune.from.is_none() {
            return Err("finetune.lora_rank needs finetune.from (a checkpoint to adapt)".into());
        }
        if !self.character.id.is_empty() && self.character.references == 0 {
            return Err("character.references must be at least 1".into());
        }
        let d = self.character.ref_dropout;
        if !(0.0..1.0).contains(&d) {
            return Err(format!("character.ref_dropout must be in [0, 1), got {d}"));
        }
        if d > 0.0 && self.character.id.is_empty() {
            return Err(
                "character.ref_dropout needs character.id (only cast clips carry references)"
                    .into(),
            );
        }
        self.sample
            .sampler
            .validate()
            .map_err(|e| format!("sample.sampler.{e}"))?;
        if let Some(k) = self.sample.prompts.iter().position(|p| p.trim().is_empty()) {
            return Err(format!(
                "sample.prompts[{k}] is empty: describe the clip (the empty caption is the null prompt guidance contrasts with)"
            ));
        }
        self.train.modes.validate()?;
        if !(0.0..=1.0).contains(&self.train.caption_dropout) {
            return Err(format!(
                "train.caption_dropout must be in [0, 1], got {}",
                self.train.caption_dropout
            ));
        }
        if self.checkpoint.every == 0 || self.checkpoint.keep_last == 0 {
            return Err("checkpoint.every and checkpoint.keep_last must be at least 1".into());
        }
        match self.train.precision.as_str() {
            "f32" => {}
            "bf16" => {
                return Err("train.precision = \"bf16\": mixed-precision training is not built yet; use \"f32\"".into());
            }
            p => {
                return Err(format!(
                    "train.precision = `{p}`: expected \"f32\" (or, later, \"bf16\")"
                ));
            }
        }
        match self.distributed.backend.as_str() {
            "single" | "mpi" => {}
            "nccl" if self.run.device != "cuda" => {
                return Err(format!(
                    "distributed.backend = \"nccl\" reduces gradients on GPUs: run.device must be \"cuda\" (each rank takes cuda:<its local rank>), got `{}`",
                    self.run.device
                ));
            }
            "nccl" => {}
            b => {
                return Err(format!(
                    "distributed.backend = `{b}`: expected \"single\", \"mpi\" or \"nccl\""
                ));
            }
        }
        if !(self.schedule.min_lr_ratio >= 0.0 && self.schedule.min_lr_ratio <= 1.0) {
            return Err(format!(
                "schedule.min_lr_ratio must be in [0, 1], got {}",
                self.schedule.min_lr_ratio
            ));
        }
        Ok(())
    }
}

sonora_framework::config_enum!(Decay {
    "cosine" => Decay::Cosine,
    "constant" => Decay::Constant,
});
