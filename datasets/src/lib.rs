//! sonora-datasets: Parquet clip datasets.
//!
//! - [`schema`]: clip schema v1 (one row per clip, Hugging Face media structs).
//! - [`writer`] / [`manifest`]: atomic shard writing and the dataset manifest.
//! - [`reader`]: opening datasets and shards with schema checks.
//! - [`codec`]: clip ⇄ row (MP4 + WAV bytes) with consistency checks.
//! - [`labels`]: ground-truth physics labels of synthetic clips.
//! - [`synth`]: the synthetic physics world behind `sonora data synth`.

pub mod bench;
pub mod codec;
pub mod error;
pub mod filter;
pub mod generate;
pub mod import;
pub mod ingest;
pub mod labels;
pub mod loader;
pub mod manifest;
pub mod reader;
pub mod records;
pub mod reindex;
pub mod schema;
pub mod stats;
pub mod synth;
pub mod validate;
pub mod writer;

pub use error::{DatasetError, RowError, RowLocation};
pub use manifest::{Manifest, ShardInfo};
pub use reader::{Dataset, ShardReader};
pub use schema::{ClipRecord, MediaBlob};
pub use writer::{DatasetWriter, WriterOptions};
