//! Errors of the datasets crate: each names the file, and for row problems the row.

use std::fmt;
use std::path::PathBuf;

/// Where a bad row sits: shard file, row group, row within the group, and its clip id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowLocation {
    /// Shard file name (relative to the dataset root).
    pub shard: String,
    /// Row group index within the shard.
    pub row_group: usize,
    /// Row index within the row group.
    pub row: usize,
    /// The row's `clip_id`, when it could be read.
    pub clip_id: Option<String>,
}

impl fmt::Display for RowLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard {}, row group {}, row {}",
            self.shard, self.row_group, self.row
        )?;
        if let Some(id) = &self.clip_id {
            write!(f, " (clip_id {id})")?;
        }
        Ok(())
    }
}

/// A row that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct RowError {
    /// Where the row is.
    pub location: RowLocation,
    /// What is wrong with it.
    pub reason: String,
}

/// Everything that can go wrong reading or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard is not a readable Parquet file (truncated, corrupt).
    #[error("{path}: not a readable Parquet clip shard: {message}")]
    Parquet {
        /// The shard.
        path: PathBuf,
        /// The Parquet/Arrow error.
        message: String,
    },
    /// A shard's schema or schema version is not what this version of sonora reads.
    #[error("{path}: {message}")]
    Schema {
        /// The shard.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The dataset manifest is missing, unreadable or inconsistent with the files.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest file or dataset directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One row is bad (policy `error`).
    #[error(transparent)]
    Row(#[from] RowError),
    /// A configuration value is invalid.
    #[error("{0}")]
    Config(String),
    /// Encoding a clip into a row failed.
    #[error("clip {clip_id}: {message}")]
    Encode {
        /// The clip being written.
        clip_id: String,
        /// Why.
        message: String,
    },
}

impl DatasetError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a Parquet/Arrow error with the shard it concerns.
    pub fn parquet(path: impl Into<PathBuf>, e: impl fmt::Display) -> Self {
        Self::Parquet {
            path: path.into(),
            message: e.to_string(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
