//! What a checkpoint must hold for a resumed run to be the run that never stopped: the
//! loader position, the position of the noise/timestep RNG stream, counters, and (as files)
//! the AdamW moments and the EMA weights. Also finds the checkpoint `--resume auto` means.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sonora_datasets::loader::LoaderState;
use sonora_framework::checkpoint;

use crate::train::{TrainError, err};

/// Optimizer state file inside a checkpoint (burnpack, keyed by stable parameter ids).
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// EMA weights inside a checkpoint.
pub use sonora_framework::checkpoint::EMA_FILE;

/// Where to continue from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// The newest complete checkpoint of the run directory (a fresh start if there is none).
    Auto,
    /// This checkpoint directory.
    Path(PathBuf),
}

impl std::str::FromStr for Resume {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "" => return Err("--resume needs `auto` or a checkpoint directory".into()),
            p => Self::Path(p.into()),
        })
    }
}

/// The loop's state, stored in the checkpoint manifest's `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Data-loader position.
    pub loader: LoaderState,
    /// Word position of the ChaCha stream that draws noise, timesteps and caption dropout
    /// (a decimal string: JSON numbers cannot hold a u128).
    pub rng_word_pos: String,
    /// Steps skipped for a non-finite loss so far.
    pub skipped_steps: u64,
    /// Validation loss before training (kept for the final report).
    pub val_loss_initial: Option<f64>,
    /// Loss of the last step.
    pub loss: f64,
    /// Validation loss of the saved weights (EMA weights when EMA is on), when computed.
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// Whether `ema.safetensors` is present.
    pub ema: bool,
    /// Whether the weights are merged LoRA adapters (such runs cannot be resumed).
    pub lora: bool,
    /// Ranks that trained the run.
    #[serde(default = "one")]
    pub world: usize,
    /// Each rank's data-loader position (runs of more than one rank; `loader` is rank 0's).
    #[serde(default)]
    pub loader_ranks: Vec<LoaderState>,
}

fn one() -> usize {
    1
}

impl TrainState {
    /// The RNG word position.
    pub fn word_pos(&self) -> Result<u128, TrainError> {
        self.rng_word_pos
            .parse()
            .map_err(|e| err(format!("rng_word_pos `{}`: {e}", self.rng_word_pos)))
    }
}

/// The directory of the checkpoint of `step`: `run_dir/checkpoints/step-NNNNNN`.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:06}"))
}

/// The step a checkpoint directory is named for (`None` for other names, such as the
/// temporary directory of an interrupted save).
pub fn checkpoint_step(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("step-")?
        .parse()
        .ok()
}

/// Completed checkpoints under `run_dir/checkpoints`, oldest first (temporary directories of
/// an interrupted save are ignored).
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let dir = run_dir.join("checkpoints");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))? {
        let p = e.map_err(err)?.path();
        let Some(step) = checkpoint_step(&p) else {
            continue;
        };
        if p.join(checkpoint::MANIFEST_FILE).exists() {
            out.push((step, p));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Reads the loop state of a checkpoint, with a clear error for checkpoints written by
/// something other than the training loop.
pub fn read_state(dir: &Path, m: &checkpoint::Manifest) -> Result<TrainState, TrainError> {
    let state: TrainState = serde_json::from_value(m.extra.clone()).map_err(|e| {
        err(format!(
            "{}: no training state in the manifest ({e}); it can start a fine-tune (finetune.from) but not resume a run",
            dir.display()
        ))
    })?;
    if state.lora {
        return Err(err(format!(
            "{}: a LoRA run's checkpoints hold merged weights, so it cannot be resumed; start a new fine-tune from it",
            dir.display()
        )));
    }
    if !m.files.contains_key(OPTIMIZER_FILE) {
        return Err(err(format!(
            "{}: {OPTIMIZER_FILE} is missing, so the optimizer state cannot be restored",
            dir.display()
        )));
    }
    Ok(state)
}
