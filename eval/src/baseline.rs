//! The floor and ceiling a checkpoint's report is normalised between: the untrained model's
//! report and the data's report of the same suite, model shape and window. Each is computed
//! once and reused from `<dir>/floor-<key>/` and `<dir>/ceiling-<key>/`, where the key is a
//! hash of everything the report depends on:
//!
//! - floor: the whole suite (cases, metrics, sampler), the model config, the tokenizer's
//!   SHA-256 and the dataset manifest (untrained weights are seeded by `sampler.seed`);
//! - ceiling: the suite's data, split, clip count, window, references and metrics, the
//!   model's shape (frames, size, fps, sample rate) and the dataset manifest.
//!
//! A report is only written into the cache whole (`Report::write` is atomic), so an
//! interrupted run leaves no half baseline behind; a cached report that does not read is
//! recomputed.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use sha2::{Digest, Sha256};
use sonora_framework::checkpoint::read_manifest_unverified;

use crate::EvalError;
use crate::cases::Shape;
use crate::report::Report;
use crate::runner::{Weights, eval_checkpoint, eval_data};
use crate::suite::SuiteFile;

/// A floor or ceiling report and where it lives.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// The report.
    pub report: Report,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether it was computed by this call (else reused).
    pub computed: bool,
}

/// A short hex key of `parts`.
fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

/// The dataset manifest's bytes (empty when there is none: the open fails later, named).
fn data_manifest(suite: &SuiteFile) -> Vec<u8> {
    std::fs::read(suite.suite.data.join("manifest.json")).unwrap_or_default()
}

/// Reads `<dir>/report.json` when it is there and whole.
fn cached(dir: &Path) -> Option<Report> {
    let p = dir.join("report.json");
    match Report::read(&p) {
        Ok(r) => Some(r),
        Err(e) => {
            if p.exists() {
                tracing::warn!("recomputing {}: {e}", dir.display());
            }
            None
        }
    }
}

/// The cache directory of the floor for `ckpt` under `suite`.
pub fn floor_dir(ckpt: &Path, suite: &SuiteFile, cache: &Path) -> Result<PathBuf, EvalError> {
    let man = read_manifest_unverified(ckpt)
        .map_err(|e| EvalError::Invalid(format!("checkpoint {}: {e}", ckpt.display())))?;
    let suite_json = serde_json::to_vec(suite).map_err(|e| EvalError::Invalid(e.to_string()))?;
    let model_json =
        serde_json::to_vec(&man.model).map_err(|e| EvalError::Invalid(e.to_string()))?;
    let tok = man.files.get("tokenizer.json").cloned().unwrap_or_default();
    let k = key(&[
        b"floor",
        &suite_json,
        &model_json,
        tok.as_bytes(),
        &data_manifest(suite),
    ]);
    Ok(cache.join(format!("floor-{k}")))
}

/// The cache directory of the ceiling for a model of `shape` under `suite`.
pub fn ceiling_dir(suite: &SuiteFile, shape: Shape, cache: &Path) -> Result<PathBuf, EvalError> {
    let mut s = suite.suite.clone();
    // the data report scores every clip once, whatever the case kinds and remix strength
    s.modes.clear();
    s.remix_strength = 0.0;
    let suite_json = serde_json::to_vec(&s).map_err(|e| EvalError::Invalid(e.to_string()))?;
    let shape = format!("{shape:?}");
    let k = key(&[
        b"ceiling",
        &suite_json,
        shape.as_bytes(),
        &data_manifest(suite),
    ]);
    Ok(cache.join(format!("ceiling-{k}")))
}

/// The untrained floor for `ckpt` under `suite`: reused from `cache` or computed there.
pub fn floor(
    ckpt: &Path,
    suite: &SuiteFile,
    cache: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Baseline, EvalError> {
    let dir = floor_dir(ckpt, suite, cache)?;
    if let Some(report) = cached(&dir) {
        return Ok(Baseline {
            report,
            dir,
            computed: false,
        });
    }
    let report = eval_checkpoint(ckpt, Weights::Untrained, suite, &dir, device, progress)?;
    Ok(Baseline {
        report,
        dir,
        computed: true,
    })
}

/// The data ceiling for a model of `shape` under `suite`: reused from `cache` or computed.
pub fn ceiling(suite: &SuiteFile, shape: Shape, cache: &Path) -> Result<Baseline, EvalError> {
    let dir = ceiling_dir(suite, shape, cache)?;
    if let Some(report) = cached(&dir) {
        return Ok(Baseline {
            report,
            dir,
            computed: false,
        });
    }
    let report = eval_data(suite, Some(shape), &dir)?;
    Ok(Baseline {
        report,
        dir,
        computed: true,
    })
}

/// Where `eval run` keeps its baselines by default: `baselines/` beside the report's
/// directory (`<run>/eval/<suite>/baselines` for a checkpoint of a run).
pub fn default_cache(out: &Path) -> PathBuf {
    out.parent().unwrap_or(Path::new(".")).join("baselines")
}
