//! The dataset manifest (`manifest.json`): counts, shards and their checksums.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sonora_framework::fsutil::write_atomic;

use crate::error::{DatasetError, Result};
use crate::schema::SCHEMA_VERSION;

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Value of [`Manifest::format`].
pub const FORMAT: &str = "sonora-clips";

/// One shard file of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// Path relative to the dataset root.
    pub path: String,
    /// Split the shard's rows belong to.
    pub split: String,
    /// Rows (clips) in the shard.
    pub rows: u64,
    /// Row groups in the shard.
    pub row_groups: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// What is in a dataset directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"sonora-clips"`.
    pub format: String,
    /// Clip schema version of every shard.
    pub schema_version: String,
    /// The program that wrote it (`sonora data synth`, …).
    pub created_by: String,
    /// Clips per split.
    pub splits: BTreeMap<String, u64>,
    /// Every shard, in write order.
    pub shards: Vec<ShardInfo>,
    /// Rows skipped while writing (e.g. unreadable inputs during ingest).
    #[serde(default)]
    pub skipped: u64,
    /// Free-form provenance (the generating config, source folder, …).
    #[serde(default)]
    pub source: serde_json::Value,
}

impl Manifest {
    /// An empty manifest for a dataset being written by `created_by`.
    pub fn new(created_by: &str) -> Self {
        Self {
            format: FORMAT.into(),
            schema_version: SCHEMA_VERSION.into(),
            created_by: created_by.into(),
            splits: BTreeMap::new(),
            shards: Vec::new(),
            skipped: 0,
            source: serde_json::Value::Null,
        }
    }

    /// Total clips across splits.
    pub fn total_clips(&self) -> u64 {
        self.splits.values().sum()
    }

    /// Reads and checks `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !dir.is_dir() {
            return Err(DatasetError::Manifest {
                path: dir.to_path_buf(),
                message: "dataset directory does not exist".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::Manifest {
            path: path.clone(),
            message: format!(
                "cannot read the dataset manifest ({e}); is this a sonora dataset directory?"
            ),
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| DatasetError::Manifest {
            path: path.clone(),
            message: format!("invalid manifest: {e}"),
        })?;
        if m.format != FORMAT {
            return Err(DatasetError::Manifest {
                path,
                message: format!("format is `{}`, expected `{FORMAT}`", m.format),
            });
        }
        // every shard lies inside the dataset: a manifest cannot point a reader elsewhere
        for s in &m.shards {
            sonora_framework::fsutil::check_relative(&s.path).map_err(|why| {
                DatasetError::Manifest {
                    path: path.clone(),
                    message: format!("shard path {why}"),
                }
            })?;
        }
        if m.schema_version != SCHEMA_VERSION {
            return Err(DatasetError::Manifest {
                path,
                message: format!(
                    "schema version {} is not supported (this sonora reads version {SCHEMA_VERSION})",
                    m.schema_version
                ),
            });
        }
        Ok(m)
    }

    /// Writes `DIR/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        write_atomic(&path, text.as_bytes()).map_err(|e| DatasetError::io(&path, e))?;
        Ok(path)
    }

    /// Shards of one split (all shards when `split` is `None`).
    pub fn shards_of<'a>(
        &'a self,
        split: Option<&'a str>,
    ) -> impl Iterator<Item = &'a ShardInfo> + 'a {
        self.shards
            .iter()
            .filter(move |s| split.is_none_or(|sp| s.split == sp))
    }
}
