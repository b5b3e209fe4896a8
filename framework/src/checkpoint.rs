//! Checkpoints: a directory holding `model.safetensors` (tensor names are the module paths,
//! e.g. `blocks.0.attn.q.weight`, which Python's `safetensors` reads as they are),
//! `tokenizer.json`, any extra files (EMA weights, optimizer state) and `manifest.json`
//! (format, step, model config, SHA-256 of every file). The directory is written under a
//! temporary name and renamed into place, so a crash never leaves a half checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::fsutil::{sha256_hex, sync_dir, write_atomic};
use crate::model::{CaptionTokenizer, ModelConfig, SonoraDit};

/// Checkpoint format version.
pub const FORMAT: u32 = 1;
/// The weights file.
pub const MODEL_FILE: &str = "model.safetensors";
/// The tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The manifest file.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Exponential moving average of the weights, written beside `model.safetensors` by
/// training runs with `train.ema_decay > 0` (checksummed in the manifest like every file).
pub const EMA_FILE: &str = "ema.safetensors";

/// What a checkpoint holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Training step.
    pub step: u64,
    /// The model's configuration.
    pub model: ModelConfig,
    /// SHA-256 (hex) of every file by name.
    pub files: BTreeMap<String, String>,
    /// Anything the trainer needs back (data-loader state, RNG state, metrics).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The manifest is missing or malformed.
    #[error("{path}: not a sonora checkpoint manifest: {why}")]
    Manifest {
        /// The manifest path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file does not match its checksum.
    #[error(
        "{path}: SHA-256 {actual} does not match the manifest's {expected}; the checkpoint is corrupt"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The checkpoint was made for another model configuration.
    #[error(
        "{path}: the checkpoint's model config differs from the one expected in {keys} (checkpoint's config named `{found}`, expected `{expected}`)"
    )]
    ConfigMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The expected config's name.
        expected: String,
        /// The checkpoint's config name.
        found: String,
        /// `key: checkpoint value vs expected value`, comma-separated.
        keys: String,
    },
    /// Tensors are missing, unexpected or of the wrong shape.
    #[error("{path}: tensors do not match the model:\n{details}")]
    Tensors {
        /// The weights file.
        path: PathBuf,
        /// One line per mismatched tensor.
        details: String,
    },
    /// Anything else (serialisation, tokenizer).
    #[error("{path}: {why}")]
    Other {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// A [`CheckpointError::Other`] about `path`.
fn other(path: &Path) -> impl Fn(String) -> CheckpointError + '_ {
    move |why| CheckpointError::Other {
        path: path.to_path_buf(),
        why,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The model's weights as safetensors bytes.
pub fn weights_bytes(model: &SonoraDit) -> Result<Vec<u8>, String> {
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata("format", "sonora")
        .metadata("model", model.config().name.clone());
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    canonical_header(store.get_bytes().map_err(|e| e.to_string())?)
}

/// Rewrites a safetensors header with its keys (and `__metadata__` keys) sorted, so that equal
/// weights give byte-identical files (the store writes its metadata map in hash order).
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let bad = || "safetensors: malformed header".to_string();
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let header = bytes.get(8..8 + n).ok_or_else(bad)?;
    let mut top: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("safetensors header: {e}"))?;
    if let Some(meta) = top.remove("__metadata__") {
        let sorted: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(meta).map_err(|e| format!("safetensors metadata: {e}"))?;
        top.insert(
            "__metadata__".into(),
            serde_json::to_value(sorted).map_err(|e| e.to_string())?,
        );
    }
    let mut text = serde_json::to_string(&top).map_err(|e| e.to_string())?;
    // keep the data section 8-byte aligned, as the format asks
    while text.len() < n || text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Writes a checkpoint at `dir` (replacing one already there, atomically).
pub fn save(
    dir: &Path,
    model: &SonoraDit,
    tokenizer: &CaptionTokenizer,
    step: u64,
    extra_files: &[(&str, Vec<u8>)],
    extra: serde_json::Value,
) -> Result<Manifest, CheckpointError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| other(dir)("checkpoint path has no file name".into()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    match write_contents(&tmp, model, tokenizer, step, extra_files, extra) {
        Ok(manifest) => {
            // swap into place: the old checkpoint stays until the new one is complete
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            if dir.exists() {
                std::fs::rename(dir, &old).map_err(io(dir))?;
            }
            std::fs::rename(&tmp, dir).map_err(io(dir))?;
            sync_dir(parent);
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            Ok(manifest)
        }
        Err(e) => {
            // e.g. a full disk: free what was written; earlier checkpoints are untouched
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Writes every file of a checkpoint and its manifest into `tmp`.
fn write_contents(
    tmp: &Path,
    model: &SonoraDit,
    tokenizer: &CaptionTokenizer,
    step: u64,
    extra_files: &[(&str, Vec<u8>)],
    extra: serde_json::Value,
) -> Result<Manifest, CheckpointError> {
    let other = other(tmp);
    let mut files = BTreeMap::new();
    let mut put = |file: &str, bytes: &[u8]| -> Result<(), CheckpointError> {
        let p = tmp.join(file);
        write_atomic(&p, bytes).map_err(io(&p))?;
        files.insert(file.to_string(), sha256_hex(bytes));
        Ok(())
    };
    put(MODEL_FILE, &weights_bytes(model).map_err(&other)?)?;
    put(
        TOKENIZER_FILE,
        tokenizer
            .to_json()
            .map_err(|e| other(e.to_string()))?
            .as_bytes(),
    )?;
    for (f, bytes) in extra_files {
        put(f, bytes)?;
    }
    let manifest = Manifest {
        format: FORMAT,
        step,
        model: model.config().clone(),
        files,
        extra,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| other(e.to_string()))?;
    let mp = tmp.join(MANIFEST_FILE);
    write_atomic(&mp, &json).map_err(io(&mp))?;
    sync_dir(tmp);
    Ok(manifest)
}

/// Reads and checks the manifest and every file's checksum.
pub fn read_manifest(dir: &Path) -> Result<Manifest, CheckpointError> {
    let m = read_manifest_unverified(dir)?;
    verify_files(dir, &m, |_| true)?;
    Ok(m)
}

/// Reads and parses `manifest.json` (format and file names checked, no file hashed): for
/// callers that only need the model config or verify the files they read themselves.
pub fn read_manifest_unverified(dir: &Path) -> Result<Manifest, CheckpointError> {
    let mp = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&mp).map_err(io(&mp))?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Manifest {
        path: mp.clone(),
        why: e.to_string(),
    })?;
    if m.format != FORMAT {
        return Err(CheckpointError::Manifest {
            path: mp,
            why: format!(
                "format {} is not supported (this sonora reads format {FORMAT})",
                m.format
            ),
        });
    }
    // every listed file lies inside the checkpoint directory
    for f in m.files.keys() {
        crate::fsutil::check_relative(f).map_err(|why| CheckpointError::Manifest {
            path: mp.clone(),
            why: format!("file {why}"),
        })?;
    }
    Ok(m)
}

/// Checks the SHA-256 of the manifest's files that `which` selects.
fn verify_files(
    dir: &Path,
    m: &Manifest,
    which: impl Fn(&str) -> bool,
) -> Result<(), CheckpointError> {
    for (f, expected) in m.files.iter().filter(|(f, _)| which(f)) {
        let p = dir.join(f);
        let actual = sha256_hex(&std::fs::read(&p).map_err(io(&p))?);
        if &actual != expected {
            return Err(CheckpointError::Checksum {
                path: p,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// Which weights [`load_for_inference`] used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsUsed {
    /// The EMA weights (`ema.safetensors`).
    Ema,
    /// The trained weights (`model.safetensors`): the checkpoint has no EMA.
    Trained,
}

/// Loads a checkpoint for sampling and evaluation: its EMA weights when it has them (what
/// diffusion models are sampled with, and what training's own samples use), else its
/// trained weights. Only the chosen weights file is read.
pub fn load_for_inference(
    dir: &Path,
    device: &Device,
) -> Result<(SonoraDit, CaptionTokenizer, Manifest, WeightsUsed), CheckpointError> {
    let mut used = WeightsUsed::Trained;
    let (model, tok, m) = load_weights(
        dir,
        None,
        device,
        |m| {
            if m.files.contains_key(EMA_FILE) {
                used = WeightsUsed::Ema;
                EMA_FILE
            } else {
                MODEL_FILE
            }
        },
        false,
    )?;
    Ok((model, tok, m, used))
}

/// Keys of two model configs that differ, as `key: a vs b`.
pub fn config_diff(a: &ModelConfig, b: &ModelConfig) -> Vec<String> {
    let (ja, jb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let (Some(oa), Some(ob)) = (ja.as_object(), jb.as_object()) else {
        return vec![];
    };
    // keys either side may leave out (defaults are not serialised), in a stable order
    let keys: std::collections::BTreeSet<&String> = oa.keys().chain(ob.keys()).collect();
    let shown =
        |v: Option<&serde_json::Value>| v.map_or("(default)".to_string(), |v| v.to_string());
    keys.into_iter()
        .filter(|k| oa.get(*k) != ob.get(*k))
        .map(|k| format!("{k}: {} vs {}", shown(oa.get(k)), shown(ob.get(k))))
        .collect()
}

/// Loads weights from `bytes` into `model`, naming every missing, unexpected or misshapen
/// tensor.
pub fn apply_weights(
    model: &mut SonoraDit,
    bytes: Vec<u8>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .allow_partial(true)
        .validate(false);
    let r = model
        .load_from(&mut store)
        .map_err(|e| CheckpointError::Tensors {
            path: path.to_path_buf(),
            details: e.to_string(),
        })?;
    let mut details: Vec<String> = r
        .missing
        .iter()
        .map(|(p, _)| format!("  missing from the file: {p}"))
        .collect();
    details.extend(r.unused.iter().map(|p| format!("  not in the model: {p}")));
    details.extend(r.errors.iter().map(|e| format!("  {e}")));
    if details.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Tensors {
            path: path.to_path_buf(),
            details: details.join("\n"),
        })
    }
}

/// Reads the safetensors file at `path` into `model` (see [`apply_weights`]).
pub fn apply_weights_file(model: &mut SonoraDit, path: &Path) -> Result<(), CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    apply_weights(model, bytes, path)
}

/// Loads a checkpoint: checks checksums, the model config (when `expected` is given) and
/// every tensor.
pub fn load(
    dir: &Path,
    expected: Option<&ModelConfig>,
    device: &Device,
) -> Result<(SonoraDit, CaptionTokenizer, Manifest), CheckpointError> {
    load_weights(dir, expected, device, |_| MODEL_FILE, true)
}

/// [`load`] with the weights file chosen from the (checked) manifest by `pick`.
fn load_weights(
    dir: &Path,
    expected: Option<&ModelConfig>,
    device: &Device,
    pick: impl FnOnce(&Manifest) -> &'static str,
    verify_all: bool,
) -> Result<(SonoraDit, CaptionTokenizer, Manifest), CheckpointError> {
    let m = read_manifest_unverified(dir)?;
    let weights = pick(&m);
    // resuming checks every file (the optimizer state is read too); inference checks
    // only the weights it reads and the tokenizer
    verify_files(dir, &m, |f| {
        verify_all || f == weights || f == TOKENIZER_FILE
    })?;
    if let Some(e) = expected {
        let diff = config_diff(&m.model, e);
        if !diff.is_empty() {
            return Err(CheckpointError::ConfigMismatch {
                path: dir.to_path_buf(),
                expected: e.name.clone(),
                found: m.model.name.clone(),
                keys: diff.join(", "),
            });
        }
    }
    m.model.validate().map_err(|e| CheckpointError::Manifest {
        path: dir.join(MANIFEST_FILE),
        why: e.to_string(),
    })?;
    crate::model::memory::check_memory(&m.model, 1, false).map_err(|why| {
        CheckpointError::Manifest {
            path: dir.join(MANIFEST_FILE),
            why,
        }
    })?;
    let mut model = SonoraDit::new(&m.model, device);
    apply_weights_file(&mut model, &dir.join(weights))?;
    let tp = dir.join(TOKENIZER_FILE);
    let json = std::fs::read_to_string(&tp).map_err(io(&tp))?;
    let tok = CaptionTokenizer::from_json(&json, m.model.text_max_len).map_err(|e| {
        CheckpointError::Other {
            path: tp,
            why: e.to_string(),
        }
    })?;
    Ok((model, tok, m))
}
