//! The shard writer: Parquet files of a target size, small zstd row groups, written
//! atomically (temp file, then rename), recorded in the manifest with checksums.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sonora_framework::fsutil::{sha256_file, sync_dir};
use tempfile::NamedTempFile;

use crate::error::{DatasetError, Result};
use crate::manifest::{Manifest, ShardInfo};
use crate::records::records_to_batch;
use crate::schema::{ClipRecord, SCHEMA_VERSION, SCHEMA_VERSION_KEY, clip_schema};

/// Shard layout options.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Close a shard once its file reaches this many bytes.
    pub target_shard_bytes: u64,
    /// Rows per row group (small groups keep random access and memory cheap).
    pub rows_per_group: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// Replace an existing dataset in the output directory.
    pub overwrite: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_shard_bytes: 64 << 20,
            rows_per_group: 16,
            zstd_level: 3,
            overwrite: false,
        }
    }
}

struct OpenShard {
    writer: ArrowWriter<NamedTempFile>,
    rows: u64,
    row_groups: u64,
    pending: Vec<ClipRecord>,
}

/// Writes clip records into per-split shards and the manifest of a dataset directory.
pub struct DatasetWriter {
    dir: PathBuf,
    opts: WriterOptions,
    open: BTreeMap<String, OpenShard>,
    next_index: BTreeMap<String, usize>,
    manifest: Manifest,
}

impl DatasetWriter {
    /// Prepares `dir` for a new dataset. Refuses a directory that already holds a
    /// dataset unless `opts.overwrite` is set.
    pub fn create(dir: &Path, created_by: &str, opts: WriterOptions) -> Result<Self> {
        if opts.rows_per_group == 0 {
            return Err(DatasetError::Config(
                "rows_per_group must be at least 1".into(),
            ));
        }
        if dir.exists() {
            let has_data = std::fs::read_dir(dir)
                .map_err(|e| DatasetError::io(dir, e))?
                .filter_map(|e| e.ok())
                .any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.ends_with(".parquet") || n == crate::manifest::MANIFEST_FILE
                });
            if has_data && !opts.overwrite {
                return Err(DatasetError::Manifest {
                    path: dir.to_path_buf(),
                    message:
                        "output directory already holds a dataset; pass --overwrite to replace it"
                            .into(),
                });
            }
            if has_data {
                for e in std::fs::read_dir(dir)
                    .map_err(|e| DatasetError::io(dir, e))?
                    .flatten()
                {
                    let n = e.file_name().to_string_lossy().to_string();
                    if n.ends_with(".parquet") || n == crate::manifest::MANIFEST_FILE {
                        std::fs::remove_file(e.path())
                            .map_err(|err| DatasetError::io(e.path(), err))?;
                    }
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            opts,
            open: BTreeMap::new(),
            next_index: BTreeMap::new(),
            manifest: Manifest::new(created_by),
        })
    }

    /// The dataset directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counts rows that were dropped upstream (recorded in the manifest).
    pub fn note_skipped(&mut self, n: u64) {
        self.manifest.skipped += n;
    }

    /// Provenance stored in the manifest's `source` field.
    pub fn set_source(&mut self, source: serde_json::Value) {
        self.manifest.source = source;
    }

    /// Appends one record to its split's current shard.
    pub fn write(&mut self, record: ClipRecord) -> Result<()> {
        if record.split.is_empty() || record.split.contains(['/', '\\', '.']) {
            return Err(DatasetError::Encode {
                clip_id: record.clip_id.clone(),
                message: format!("invalid split name `{}`", record.split),
            });
        }
        let split = record.split.clone();
        if !self.open.contains_key(&split) {
            let shard = self.open_shard()?;
            self.open.insert(split.clone(), shard);
        }
        let shard = self.open.get_mut(&split).expect("inserted above");
        shard.pending.push(record);
        if shard.pending.len() >= self.opts.rows_per_group {
            Self::flush_group(shard)?;
            if shard.writer.bytes_written() as u64 >= self.opts.target_shard_bytes {
                let shard = self.open.remove(&split).expect("present");
                self.close_shard(&split, shard)?;
            }
        }
        Ok(())
    }

    fn open_shard(&self) -> Result<OpenShard> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-shard-")
            .suffix(".parquet.partial")
            .tempfile_in(&self.dir)
            .map_err(|e| DatasetError::io(&self.dir, e))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(self.opts.zstd_level)
                    .map_err(|e| DatasetError::Config(format!("zstd level: {e}")))?,
            ))
            .set_max_row_group_size(self.opts.rows_per_group);
        // Media blobs are unique and opaque: no dictionary, no min/max statistics.
        for c in ["video.bytes", "audio.bytes"] {
            let path = ColumnPath::new(c.split('.').map(str::to_string).collect());
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
        let props = props
            .set_key_value_metadata(Some(vec![KeyValue::new(
                SCHEMA_VERSION_KEY.to_string(),
                SCHEMA_VERSION.to_string(),
            )]))
            .set_created_by(format!("sonora {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(tmp, clip_schema(), Some(props))
            .map_err(|e| DatasetError::parquet(&self.dir, e))?;
        Ok(OpenShard {
            writer,
            rows: 0,
            row_groups: 0,
            pending: Vec::new(),
        })
    }

    fn flush_group(shard: &mut OpenShard) -> Result<()> {
        if shard.pending.is_empty() {
            return Ok(());
        }
        let batch = records_to_batch(&shard.pending).map_err(|message| DatasetError::Encode {
            clip_id: shard.pending[0].clip_id.clone(),
            message,
        })?;
        shard
            .writer
            .write(&batch)
            .map_err(|e| DatasetError::parquet("<shard being written>", e))?;
        shard
            .writer
            .flush()
            .map_err(|e| DatasetError::parquet("<shard being written>", e))?;
        shard.rows += shard.pending.len() as u64;
        shard.row_groups += 1; // flush() closes the row group
        shard.pending.clear();
        Ok(())
    }

    fn close_shard(&mut self, split: &str, mut shard: OpenShard) -> Result<()> {
        Self::flush_group(&mut shard)?;
        let rows = shard.rows;
        let row_groups = shard.row_groups;
        // into_inner writes the footer (finish) and hands back the temp file.
        let tmp = shard
            .writer
            .into_inner()
            .map_err(|e| DatasetError::parquet("<shard being written>", e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| DatasetError::io(tmp.path(), e))?;
        let idx = self.next_index.entry(split.to_string()).or_insert(0);
        let name = format!("{split}-{:05}.parquet", *idx);
        *idx += 1;
        let path = self.dir.join(&name);
        tmp.persist(&path)
            .map_err(|e| DatasetError::io(&path, e.error))?;
        sync_dir(&self.dir);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| DatasetError::io(&path, e))?
            .len();
        let sha256 = sha256_file(&path).map_err(|e| DatasetError::io(&path, e))?;
        *self.manifest.splits.entry(split.to_string()).or_insert(0) += rows;
        self.manifest.shards.push(ShardInfo {
            path: name,
            split: split.to_string(),
            rows,
            row_groups,
            bytes,
            sha256,
        });
        Ok(())
    }

    /// Closes every open shard and writes the manifest atomically.
    pub fn finish(mut self) -> Result<Manifest> {
        let open = std::mem::take(&mut self.open);
        for (split, shard) in open {
            if shard.rows > 0 || !shard.pending.is_empty() {
                self.close_shard(&split, shard)?;
            }
        }
        self.manifest.save(&self.dir)?;
        Ok(self.manifest)
    }
}
