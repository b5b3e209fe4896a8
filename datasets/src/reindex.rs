//! `sonora data reindex`: record shards rewritten on purpose (by pyarrow, polars, DuckDB…)
//! in the manifest, after checking that every row of every shard reads as a clip record.
//!
//! The manifest keeps each shard's size, rows, row groups and SHA-256 so that `data
//! validate` catches a damaged or altered file. A shard rewritten deliberately is
//! "altered" too; reindexing reads every listed shard through the same schema check the
//! loader uses, recounts it, hashes it and writes the manifest atomically. Nothing is
//! written when any shard fails: the errors name the shard, row group and row.

use std::collections::BTreeMap;
use std::path::Path;

use sonora_framework::fsutil::sha256_file;

use crate::error::{DatasetError, Result};
use crate::manifest::{MANIFEST_FILE, Manifest, ShardInfo};
use crate::reader::ShardReader;

/// One shard whose recorded facts changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Reindexed {
    /// Shard path relative to the dataset.
    pub path: String,
    /// What the manifest said.
    pub before: ShardInfo,
    /// What the file is now.
    pub after: ShardInfo,
}

/// Rechecks and re-records every shard of the dataset at `dir` (and the per-split clip
/// counts); returns the shards whose size, hash, rows or row groups changed.
pub fn reindex(dir: &Path) -> Result<Vec<Reindexed>> {
    let mut manifest = Manifest::load(dir)?;
    let mut changed = Vec::new();
    let mut splits: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    for info in manifest.shards.iter_mut() {
        let path = dir.join(&info.path);
        let reader = match ShardReader::open(dir, &info.path) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let mut rows = 0u64;
        for g in 0..reader.num_row_groups() {
            match reader.read_records(g, None) {
                Ok(records) => {
                    for r in records {
                        match r {
                            Ok(rec) if rec.split != info.split => problems.push(format!(
                                "{}: clip {} is in split `{}` but the shard holds `{}`",
                                info.path, rec.clip_id, rec.split, info.split
                            )),
                            Ok(_) => rows += 1,
                            Err(e) => problems.push(e.to_string()),
                        }
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        let bytes = std::fs::metadata(&path)
            .map_err(|e| DatasetError::io(&path, e))?
            .len();
        let sha256 = sha256_file(&path).map_err(|e| DatasetError::io(&path, e))?;
        let after = ShardInfo {
            path: info.path.clone(),
            split: info.split.clone(),
            rows,
            row_groups: reader.num_row_groups() as u64,
            bytes,
            sha256,
        };
        *splits.entry(info.split.clone()).or_insert(0) += rows;
        if after != *info {
            changed.push(Reindexed {
                path: info.path.clone(),
                before: info.clone(),
                after: after.clone(),
            });
            *info = after;
        }
    }
    if !problems.is_empty() {
        let shown: Vec<_> = problems
            .iter()
            .take(10)
            .map(|p| format!("  - {p}"))
            .collect();
        return Err(DatasetError::Manifest {
            path: dir.join(MANIFEST_FILE),
            message: format!(
                "not reindexed: {} problem(s) in the shards\n{}{}",
                problems.len(),
                shown.join("\n"),
                if problems.len() > 10 { "\n  - …" } else { "" }
            ),
        });
    }
    let counts_changed = manifest.splits != splits;
    manifest.splits = splits;
    if !changed.is_empty() || counts_changed {
        manifest.save(dir)?;
    }
    Ok(changed)
}
