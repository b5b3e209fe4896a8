//! Opening datasets and shards: schema-version checks, projected row-group reads.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::{DatasetError, Result, RowError, RowLocation};
use crate::manifest::{Manifest, ShardInfo};
use crate::records::{BatchView, column_type_matches};
use crate::schema::{ClipRecord, SCHEMA_VERSION, SCHEMA_VERSION_KEY, col};

/// Columns every v1 shard must have.
pub const REQUIRED_COLUMNS: &[&str] = &[
    col::CLIP_ID,
    col::SPLIT,
    col::CAPTION,
    col::VIDEO,
    col::AUDIO,
    col::FPS,
    col::NUM_FRAMES,
    col::WIDTH,
    col::HEIGHT,
    col::AUDIO_SAMPLE_RATE,
];

/// An opened dataset directory: its manifest and root.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Dataset directory.
    pub root: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Dataset {
    /// Opens `dir`, reading and checking its manifest and that every shard file exists.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        for s in &manifest.shards {
            if !dir.join(&s.path).is_file() {
                return Err(DatasetError::Manifest {
                    path: dir.join(crate::manifest::MANIFEST_FILE),
                    message: format!("lists shard {} but the file is missing", s.path),
                });
            }
        }
        if manifest.shards.is_empty() {
            return Err(DatasetError::Manifest {
                path: dir.to_path_buf(),
                message: "dataset has no shards (no clips)".into(),
            });
        }
        Ok(Self {
            root: dir.to_path_buf(),
            manifest,
        })
    }

    /// Shards of a split (all when `None`).
    pub fn shards(&self, split: Option<&str>) -> Vec<ShardInfo> {
        self.manifest.shards_of(split).cloned().collect()
    }

    /// Opens one shard listed in the manifest.
    pub fn open_shard(&self, shard: &ShardInfo) -> Result<ShardReader> {
        ShardReader::open(&self.root, &shard.path)
    }
}

/// An opened Parquet shard whose footer and schema have been checked.
#[derive(Clone)]
pub struct ShardReader {
    path: PathBuf,
    name: String,
    meta: ArrowReaderMetadata,
}

impl ShardReader {
    /// Opens `root/name`, checking the schema version and column types.
    pub fn open(root: &Path, name: &str) -> Result<Self> {
        let path = root.join(name);
        let file = File::open(&path).map_err(|e| DatasetError::io(&path, e))?;
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| DatasetError::parquet(&path, e))?;
        let kv = meta.metadata().file_metadata().key_value_metadata();
        let version = kv
            .and_then(|kv| kv.iter().find(|k| k.key == SCHEMA_VERSION_KEY))
            .and_then(|k| k.value.clone());
        // polars and DuckDB drop the file's key-value metadata when they rewrite a shard:
        // without the version key, the columns below decide (they must be schema v1's)
        let unversioned = version.is_none();
        match version.as_deref() {
            None => {}
            Some(v) if v != SCHEMA_VERSION => {
                return Err(DatasetError::Schema {
                    path,
                    message: format!(
                        "clip schema version {v} is not supported (this sonora reads {SCHEMA_VERSION})"
                    ),
                });
            }
            Some(_) => {}
        }
        let schema = meta.schema();
        for c in REQUIRED_COLUMNS {
            if schema.field_with_name(c).is_err() {
                let why = if unversioned {
                    format!(
                        "no `{SCHEMA_VERSION_KEY}` in the file's key-value metadata and no `{c}` column: not a sonora clip shard"
                    )
                } else {
                    format!("missing required column `{c}`")
                };
                return Err(DatasetError::Schema { path, message: why });
            }
        }
        for f in schema.fields() {
            if !column_type_matches(f.name(), f.data_type()) {
                return Err(DatasetError::Schema {
                    path,
                    message: format!(
                        "column `{}` has type {} which schema v1 does not allow",
                        f.name(),
                        f.data_type()
                    ),
                });
            }
        }
        Ok(Self {
            path,
            name: name.to_string(),
            meta,
        })
    }

    /// Shard file name relative to the dataset root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Full path of the shard file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of row groups.
    pub fn num_row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }

    /// Rows in row group `g`.
    pub fn row_group_rows(&self, g: usize) -> usize {
        self.meta.metadata().row_group(g).num_rows() as usize
    }

    /// Total rows in the shard.
    pub fn num_rows(&self) -> usize {
        (0..self.num_row_groups())
            .map(|g| self.row_group_rows(g))
            .sum()
    }

    /// Reads row group `g`, keeping only `columns` (all when `None`).
    pub fn read_row_group(&self, g: usize, columns: Option<&[&str]>) -> Result<RecordBatch> {
        let file = File::open(&self.path).map_err(|e| DatasetError::io(&self.path, e))?;
        let mut b = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
            .with_row_groups(vec![g])
            .with_batch_size(self.row_group_rows(g).max(1));
        if let Some(cols) = columns {
            let schema = self.meta.schema();
            let roots = cols.iter().filter_map(|c| schema.index_of(c).ok());
            b = b.with_projection(ProjectionMask::roots(self.meta.parquet_schema(), roots));
        }
        let reader = b.build().map_err(|e| self.group_err(g, e))?;
        let batches: Vec<RecordBatch> = reader
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.group_err(g, e))?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| std::sync::Arc::new(arrow::datatypes::Schema::empty()));
        let batch =
            arrow::compute::concat_batches(&schema, &batches).map_err(|e| self.group_err(g, e))?;
        self.canonical(batch).map_err(|e| self.group_err(g, e))
    }

    /// `batch` with every column in the v1 schema's exact type (list element fields named
    /// as sonora writes them), so a shard rewritten by pyarrow, polars or DuckDB reads as
    /// the original did.
    fn canonical(&self, batch: RecordBatch) -> std::result::Result<RecordBatch, String> {
        let want = crate::schema::clip_schema();
        if batch.schema().fields().iter().all(|f| {
            want.field_with_name(f.name())
                .is_ok_and(|w| w.data_type() == f.data_type())
        }) {
            return Ok(batch);
        }
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            let w = want
                .field_with_name(f.name())
                .map_err(|_| format!("column `{}` is not in schema v1", f.name()))?;
            // arrow's cast renames list element fields and narrows 64-bit offsets
            let col = arrow::compute::cast(c, w.data_type())
                .map_err(|e| format!("column `{}`: {e}", f.name()))?;
            columns.push(col);
            fields.push(arrow::datatypes::Field::new(
                f.name(),
                w.data_type().clone(),
                f.is_nullable(),
            ));
        }
        RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
        )
        .map_err(|e| e.to_string())
    }

    fn group_err(&self, g: usize, e: impl std::fmt::Display) -> DatasetError {
        DatasetError::parquet(&self.path, format!("row group {g}: {e}"))
    }

    /// Reads row group `g` into records; each bad row becomes a [`RowError`] naming it.
    pub fn read_records(
        &self,
        g: usize,
        columns: Option<&[&str]>,
    ) -> Result<Vec<std::result::Result<ClipRecord, RowError>>> {
        let batch = self.read_row_group(g, columns)?;
        let view = BatchView::new(&batch);
        let rows = view.records().map_err(|m| DatasetError::Schema {
            path: self.path.clone(),
            message: m,
        })?;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(r, res)| {
                res.map_err(|reason| RowError {
                    location: self.location(g, r, view.clip_id(r)),
                    reason,
                })
            })
            .collect())
    }

    /// A row's location, for error messages.
    pub fn location(&self, g: usize, row: usize, clip_id: Option<String>) -> RowLocation {
        RowLocation {
            shard: self.name.clone(),
            row_group: g,
            row,
            clip_id,
        }
    }
}

/// The folder of the dataset at `root` that holds one folder of reference images per
/// character (`characters/`, written by the synthetic world).
fn characters_dir(root: &Path) -> PathBuf {
    root.join("characters")
}

/// Where reference image `k` of character `id` lives in the dataset at `root`
/// (`characters/<id>/ref-<k>.png`, written by the synthetic world).
pub fn reference_path(root: &Path, id: &str, k: usize) -> PathBuf {
    characters_dir(root).join(id).join(format!("ref-{k}.png"))
}

/// The ids of the characters with reference images in the dataset at `root`: the folders
/// of `characters/`, sorted; an error names the folder when it cannot be read or holds
/// no character.
pub fn character_ids(root: &Path) -> std::result::Result<Vec<String>, String> {
    let dir = characters_dir(root);
    let bad = |e: String| format!("{}: {e}", dir.display());
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        if entry.path().is_dir() {
            ids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    if ids.is_empty() {
        return Err(bad("no character folders".into()));
    }
    ids.sort();
    Ok(ids)
}

/// The first `n` reference images of character `id` as `(RGB bytes, width, height)`; an
/// error names the image that could not be read or decoded.
pub fn read_references(
    root: &Path,
    id: &str,
    n: usize,
) -> std::result::Result<Vec<(Vec<u8>, usize, usize)>, String> {
    (0..n)
        .map(|k| {
            let p = reference_path(root, id, k);
            let bad = |e: String| format!("reference image {}: {e}", p.display());
            let bytes = std::fs::read(&p).map_err(|e| bad(e.to_string()))?;
            let (rgb, h, w) =
                sonora_framework::media::decode_png(&bytes).map_err(|e| bad(e.to_string()))?;
            Ok((rgb, w, h))
        })
        .collect()
}
