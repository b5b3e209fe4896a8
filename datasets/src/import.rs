//! `sonora data import`: Parquet (and Arrow) video datasets made elsewhere, as they are,
//! into a clip dataset.
//!
//! Sources are Parquet files, Arrow IPC files (a Hugging Face `save_to_disk` folder holds
//! `data-*.arrow` streams) or folders searched for both. A row's video is one of:
//! - the Hugging Face `Video` convention, `struct<bytes, path>`: the bytes when present,
//!   else the file at `path`;
//! - a string: a path to a media file (`file://` allowed; relative paths are taken from
//!   the source file's folder); remote URLs are refused per row (download first);
//! - binary: a media file's bytes.
//!
//! Every row goes through the ingest pipeline ([`crate::ingest`]): decoded (FFmpeg: any
//! container and codec), cut into clips of `ingest.clip_seconds`, sampled at the target
//! fps, fitted to the target size, sound resampled; so an import and an ingest of the same
//! media give the same clips. Captions, ids, splits and tags come from mapped columns;
//! columns that schema v1 has no place for are named in the report, never dropped
//! silently. A bad row (no video, unreadable media, an unknown split) is listed with its
//! file, row and reason and never stops the rest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sonora_framework::fsutil::write_atomic;
use sonora_framework::media::MediaInput;

use crate::error::{DatasetError, Result};
use crate::ingest::{IngestFile, ingest_file, sanitize_id};
use crate::manifest::Manifest;
use crate::writer::DatasetWriter;

/// File name of the import report inside the output dataset directory.
pub const REPORT_FILE: &str = "import_report.json";

/// Tag carried by every imported clip.
pub const TAG_IMPORTED: &str = "imported";

/// Rows decoded at once (each holds a whole media file in memory).
const ROWS_PER_BATCH: usize = 8;

/// The sonora fields a source column can be mapped to, with the column names tried when
/// a field is not mapped.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "video",
        &["video", "clip", "media", "video_path", "path", "file"],
    ),
    ("caption", &["caption", "text", "prompt", "description"]),
    ("clip_id", &["clip_id", "id"]),
    ("tags", &["tags"]),
];

/// Which source column feeds each sonora field (`--map caption=text,video=clip`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnMap(pub BTreeMap<String, String>);

impl ColumnMap {
    /// Parses `field=column,field=column`; fields are `video`, `caption`, `clip_id` and
    /// `tags` (splits: `--split-by`).
    pub fn parse(spec: &str) -> Result<Self> {
        let mut map = BTreeMap::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, column) = pair.split_once('=').ok_or_else(|| {
                DatasetError::Config(format!(
                    "--map {pair:?}: expected FIELD=COLUMN, e.g. caption=text"
                ))
            })?;
            let field = field.trim();
            if field == "split" {
                return Err(DatasetError::Config(format!(
                    "--map {pair:?}: splits come from --split-by {} (or --split NAME for every row)",
                    column.trim()
                )));
            }
            if !FIELDS.iter().any(|(f, _)| *f == field) {
                return Err(DatasetError::Config(format!(
                    "--map {pair:?}: unknown field `{field}`; fields are {}",
                    FIELDS
                        .iter()
                        .map(|(f, _)| *f)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if map
                .insert(field.to_string(), column.trim().to_string())
                .is_some()
            {
                return Err(DatasetError::Config(format!(
                    "--map: field `{field}` is mapped twice"
                )));
            }
        }
        Ok(Self(map))
    }
}

/// How rows are assigned to `train` / `val` / `test`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SplitRule {
    /// By a hash of the row's id, with `ingest.val_fraction` / `ingest.test_fraction`.
    Hash,
    /// Every row to this split (`--split train`).
    Fixed(String),
    /// From a column's value (`--split-by COL`): `train`, `val`/`valid`/`validation`/`dev`,
    /// `test` (any case).
    Column(String),
}

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Clip shape and cutting (`[ingest]`) and shard layout (`[shards]`).
    pub file: IngestFile,
    /// Source column per sonora field.
    pub map: ColumnMap,
    /// Split assignment.
    pub split: SplitRule,
    /// Replace an existing output dataset.
    pub overwrite: bool,
}

/// A row that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BadRow {
    /// The source file.
    pub file: String,
    /// Row index within that file (0-based).
    pub row: u64,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Source files read, in order.
    pub sources: Vec<String>,
    /// Output dataset directory.
    pub out: String,
    /// The column each field was read from (after defaults).
    pub columns: BTreeMap<String, String>,
    /// Source columns schema v1 has no place for (not imported).
    pub columns_not_imported: Vec<String>,
    /// Rows read.
    pub rows_seen: u64,
    /// Rows that gave at least one clip.
    pub rows_imported: u64,
    /// Clips written per split.
    pub clips_written: BTreeMap<String, u64>,
    /// Clips written in total.
    pub clips_total: u64,
    /// Rows not imported, with the reason.
    pub bad_rows: Vec<BadRow>,
    /// Wall time of the import, seconds.
    pub seconds: f64,
}

/// Every Parquet / Arrow file named, or under a named folder (searched recursively, sorted).
fn sources(srcs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| DatasetError::io(dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else if is_table(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for s in srcs {
        if s.is_dir() {
            let before = out.len();
            walk(s, &mut out)?;
            if out.len() == before {
                return Err(DatasetError::Config(format!(
                    "{}: no .parquet or .arrow files in this folder",
                    s.display()
                )));
            }
        } else if s.is_file() {
            out.push(s.clone());
        } else {
            return Err(DatasetError::Config(format!(
                "{}: no such file or folder",
                s.display()
            )));
        }
    }
    Ok(out)
}

fn is_table(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "parquet" | "arrow"))
}

/// Record batches read one after another.
type Batches = Box<dyn Iterator<Item = Result<RecordBatch>>>;

/// Record batches of a Parquet file or an Arrow IPC file/stream.
fn open_table(path: &Path) -> Result<(Schema, Batches)> {
    let bad = |m: String| DatasetError::Parquet {
        path: path.to_path_buf(),
        message: m,
    };
    let f = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let arrow_ext = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("arrow"));
    let p = path.to_path_buf();
    let map_err = move |e: arrow::error::ArrowError| DatasetError::Parquet {
        path: p.clone(),
        message: e.to_string(),
    };
    if arrow_ext {
        let mut head = [0u8; 6];
        let is_file = std::io::Read::read_exact(&mut &f, &mut head).is_ok() && &head == b"ARROW1";
        let f = File::open(path).map_err(|e| DatasetError::io(path, e))?;
        if is_file {
            let r = arrow::ipc::reader::FileReader::try_new(f, None)
                .map_err(|e| bad(format!("not a readable Arrow file: {e}")))?;
            let schema = r.schema().as_ref().clone();
            return Ok((schema, Box::new(r.map(move |b| b.map_err(&map_err)))));
        }
        let r = arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::new(f), None)
            .map_err(|e| bad(format!("not a readable Arrow stream: {e}")))?;
        let schema = r.schema().as_ref().clone();
        return Ok((schema, Box::new(r.map(move |b| b.map_err(&map_err)))));
    }
    let b = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let schema = b.schema().as_ref().clone();
    let r = b
        .with_batch_size(ROWS_PER_BATCH)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok((schema, Box::new(r.map(move |b| b.map_err(&map_err)))))
}

/// The kind of the video column.
#[derive(Clone, Copy, Debug)]
enum VideoKind {
    /// `struct<bytes, path>` (Hugging Face `Video`/`Image` convention).
    Struct,
    /// A path string.
    Path,
    /// The file's bytes.
    Bytes,
}

fn is_str(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_bin(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn video_kind(t: &DataType) -> Option<VideoKind> {
    match t {
        DataType::Struct(fields) => {
            let has = |n: &str, ok: fn(&DataType) -> bool| {
                fields.iter().any(|f| f.name() == n && ok(f.data_type()))
            };
            (has("bytes", is_bin) || has("path", is_str)).then_some(VideoKind::Struct)
        }
        t if is_str(t) => Some(VideoKind::Path),
        t if is_bin(t) => Some(VideoKind::Bytes),
        _ => None,
    }
}

/// The columns each field reads in one source, checked against its schema.
#[derive(Clone, Debug)]
struct Columns {
    video: (String, VideoKind),
    caption: Option<String>,
    clip_id: Option<String>,
    split: Option<String>,
    tags: Option<String>,
}

fn resolve_columns(path: &Path, schema: &Schema, opts: &ImportOptions) -> Result<Columns> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let err = |m: String| DatasetError::Schema {
        path: path.to_path_buf(),
        message: m,
    };
    let listing = || names.join(", ");
    let pick = |field: &str| -> Result<Option<String>> {
        if let Some(c) = opts.map.0.get(field) {
            return if names.contains(&c.as_str()) {
                Ok(Some(c.clone()))
            } else {
                Err(err(format!(
                    "--map {field}={c}: no column `{c}`; columns are {}",
                    listing()
                )))
            };
        }
        let defaults = FIELDS
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, d)| *d)
            .unwrap_or(&[]);
        Ok(defaults
            .iter()
            .find(|d| names.contains(d))
            .map(|d| d.to_string()))
    };
    let video = pick("video")?.ok_or_else(|| {
        err(format!(
            "no video column (tried video, clip, media, video_path, path, file); name it with --map video=COLUMN; columns are {}",
            listing()
        ))
    })?;
    let vt = schema
        .field_with_name(&video)
        .expect("picked from the schema")
        .data_type();
    let kind = video_kind(vt).ok_or_else(|| {
        err(format!(
            "column `{video}` has type {vt}; a video column is struct<bytes, path> (Hugging Face Video), a path string or binary"
        ))
    })?;
    let typed = |field: &str,
                 col: Option<String>,
                 ok: fn(&DataType) -> bool,
                 want: &str|
     -> Result<Option<String>> {
        if let Some(c) = &col {
            let t = schema.field_with_name(c).expect("picked").data_type();
            if !ok(t) {
                return Err(err(format!(
                    "column `{c}` ({field}) has type {t}; expected {want}"
                )));
            }
        }
        Ok(col)
    };
    let split_col = match &opts.split {
        SplitRule::Column(c) => {
            if !names.contains(&c.as_str()) {
                return Err(err(format!(
                    "--split-by {c}: no column `{c}`; columns are {}",
                    listing()
                )));
            }
            Some(c.clone())
        }
        _ => None,
    };
    let is_tags = |t: &DataType| match t {
        DataType::List(f) | DataType::LargeList(f) => is_str(f.data_type()),
        t => is_str(t),
    };
    Ok(Columns {
        video: (video, kind),
        caption: typed("caption", pick("caption")?, is_str, "a string")?,
        clip_id: typed("clip_id", pick("clip_id")?, is_str, "a string")?,
        split: typed("split", split_col, is_str, "a string")?,
        tags: typed(
            "tags",
            pick("tags")?,
            is_tags,
            "a list of strings or a string",
        )?,
    })
}

fn str_at(col: &ArrayRef, i: usize) -> Option<String> {
    if col.is_null(i) {
        return None;
    }
    if let Some(a) = col.as_string_opt::<i32>() {
        return Some(a.value(i).to_string());
    }
    if let Some(a) = col.as_string_opt::<i64>() {
        return Some(a.value(i).to_string());
    }
    col.as_string_view_opt().map(|a| a.value(i).to_string())
}

fn bytes_at(col: &ArrayRef, i: usize) -> Option<Vec<u8>> {
    if col.is_null(i) {
        return None;
    }
    if let Some(a) = col.as_binary_opt::<i32>() {
        return Some(a.value(i).to_vec());
    }
    if let Some(a) = col.as_binary_opt::<i64>() {
        return Some(a.value(i).to_vec());
    }
    col.as_binary_view_opt().map(|a| a.value(i).to_vec())
}

fn tags_at(col: &ArrayRef, i: usize) -> Vec<String> {
    if col.is_null(i) {
        return Vec::new();
    }
    let list = |values: ArrayRef| {
        (0..values.len())
            .filter_map(|k| str_at(&values, k))
            .collect()
    };
    if let Some(a) = col.as_list_opt::<i32>() {
        return list(a.value(i));
    }
    if let Some(a) = col.as_list_opt::<i64>() {
        return list(a.value(i));
    }
    str_at(col, i)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A media path from a cell: `file://` stripped, remote URLs refused, relative paths from
/// the source file's folder; the file must exist.
fn media_path(cell: &str, base: &Path) -> std::result::Result<PathBuf, String> {
    let s = cell.strip_prefix("file://").unwrap_or(cell);
    if s.contains("://") {
        return Err(format!(
            "video `{cell}` is a remote URL; sonora reads local files only (download it first)"
        ));
    }
    let p = Path::new(s);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    if !p.is_file() {
        return Err(format!("video file {} does not exist", p.display()));
    }
    Ok(p)
}

/// The media a row's video cell names, and a name for it (its path or file name).
fn video_at(
    col: &ArrayRef,
    kind: VideoKind,
    i: usize,
    base: &Path,
) -> std::result::Result<(MediaInput, Option<String>), String> {
    if col.is_null(i) {
        return Err("the video cell is null".into());
    }
    match kind {
        VideoKind::Bytes => Ok((
            MediaInput::Bytes {
                bytes: bytes_at(col, i).unwrap_or_default(),
                name: None,
            },
            None,
        )),
        VideoKind::Path => {
            let cell = str_at(col, i).unwrap_or_default();
            Ok((MediaInput::Path(media_path(&cell, base)?), Some(cell)))
        }
        VideoKind::Struct => {
            let st = col.as_struct();
            let path = st.column_by_name("path").and_then(|c| str_at(c, i));
            if let Some(bytes) = st.column_by_name("bytes").and_then(|c| bytes_at(c, i)) {
                let name = path
                    .as_deref()
                    .and_then(|p| Path::new(p).file_name())
                    .map(|n| n.to_string_lossy().to_string());
                return Ok((MediaInput::Bytes { bytes, name }, path));
            }
            match path {
                Some(p) => Ok((MediaInput::Path(media_path(&p, base)?), Some(p))),
                None => Err("the video struct has neither bytes nor a path".into()),
            }
        }
    }
}

fn split_of(
    rule: &SplitRule,
    cell: Option<&str>,
    key: &str,
    file: &IngestFile,
) -> std::result::Result<String, String> {
    match rule {
        SplitRule::Hash => Ok(file.ingest.split_for(key).to_string()),
        SplitRule::Fixed(s) => Ok(s.clone()),
        SplitRule::Column(c) => {
            let v = cell.ok_or_else(|| format!("split column `{c}` is null"))?;
            match v.trim().to_ascii_lowercase().as_str() {
                "train" => Ok("train".into()),
                "val" | "valid" | "validation" | "dev" => Ok("val".into()),
                "test" => Ok("test".into()),
                _ => Err(format!(
                    "split column `{c}` says `{v}`; expected train, val (valid, validation, dev) or test"
                )),
            }
        }
    }
}

/// One row ready to decode.
struct Row {
    index: u64,
    media: std::result::Result<(MediaInput, Option<String>), String>,
    caption: Option<String>,
    id: String,
    split: std::result::Result<String, String>,
    tags: Vec<String>,
}

/// Imports Parquet/Arrow video datasets into a clip dataset at `out`.
///
/// `progress(rows_done)` is called after each batch of rows. The report is written to
/// `out/import_report.json`; it is an error when no clip at all could be imported.
pub fn import(
    srcs: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportReport> {
    let started = std::time::Instant::now();
    opts.file.ingest.validate()?;
    if let SplitRule::Fixed(s) = &opts.split
        && !matches!(s.as_str(), "train" | "val" | "test")
    {
        return Err(DatasetError::Config(format!(
            "--split {s}: expected train, val or test"
        )));
    }
    let files = sources(srcs)?;
    // every source's columns are checked before anything is written
    let mut plans = Vec::new();
    let mut unused = BTreeSet::new();
    let mut used_columns = BTreeMap::new();
    for f in &files {
        let (schema, _) = open_table(f)?;
        let cols = resolve_columns(f, &schema, opts)?;
        let mut used: HashSet<&str> = [cols.video.0.as_str()].into();
        for (field, c) in [
            ("video", Some(&cols.video.0)),
            ("caption", cols.caption.as_ref()),
            ("clip_id", cols.clip_id.as_ref()),
            ("split", cols.split.as_ref()),
            ("tags", cols.tags.as_ref()),
        ] {
            if let Some(c) = c {
                used.insert(c.as_str());
                used_columns.insert(field.to_string(), c.clone());
            }
        }
        for fld in schema.fields() {
            if !used.contains(fld.name().as_str()) {
                unused.insert(fld.name().clone());
            }
        }
        plans.push((f.clone(), cols));
    }
    let shards = &opts.file.shards;
    let mut writer = DatasetWriter::create(
        out,
        "sonora data import",
        shards.writer_options(opts.overwrite)?,
    )?;
    writer.set_source(serde_json::json!({
        "import": {
            "sources": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "map": &opts.map,
            "split": &opts.split,
            "config": &opts.file.ingest,
        },
        "shards": shards,
    }));
    let mut report = ImportReport {
        sources: files.iter().map(|f| f.display().to_string()).collect(),
        out: out.display().to_string(),
        columns: used_columns,
        columns_not_imported: unused.into_iter().collect(),
        rows_seen: 0,
        rows_imported: 0,
        clips_written: BTreeMap::new(),
        clips_total: 0,
        bad_rows: Vec::new(),
        seconds: 0.0,
    };
    let mut used_ids: HashSet<String> = HashSet::new();
    for (path, cols) in &plans {
        let base = path.parent().unwrap_or(Path::new("."));
        let stem = sanitize_id(&path.file_stem().unwrap_or_default().to_string_lossy());
        let (_, batches) = open_table(path)?;
        let mut row0 = 0u64;
        for batch in batches {
            let batch = batch?;
            for chunk_start in (0..batch.num_rows()).step_by(ROWS_PER_BATCH) {
                let chunk = batch.slice(
                    chunk_start,
                    ROWS_PER_BATCH.min(batch.num_rows() - chunk_start),
                );
                let col =
                    |c: &Option<String>| c.as_ref().and_then(|c| chunk.column_by_name(c)).cloned();
                let video = chunk
                    .column_by_name(&cols.video.0)
                    .expect("checked")
                    .clone();
                let (caption, clip_id, split, tags) = (
                    col(&cols.caption),
                    col(&cols.clip_id),
                    col(&cols.split),
                    col(&cols.tags),
                );
                let mut rows = Vec::new();
                for i in 0..chunk.num_rows() {
                    let index = row0 + i as u64;
                    let mut id = clip_id
                        .as_ref()
                        .and_then(|c| str_at(c, i))
                        .map(|s| sanitize_id(&s))
                        .unwrap_or_else(|| format!("{stem}-{index:06}"));
                    if !used_ids.insert(id.clone()) {
                        let h = Sha256::digest(format!("{}#{index}", path.display()).as_bytes());
                        id = format!("{id}_{}", &hex::encode(h)[..8]);
                        used_ids.insert(id.clone());
                    }
                    let split_cell = split.as_ref().and_then(|c| str_at(c, i));
                    rows.push(Row {
                        index,
                        media: video_at(&video, cols.video.1, i, base),
                        caption: caption.as_ref().and_then(|c| str_at(c, i)),
                        split: split_of(&opts.split, split_cell.as_deref(), &id, &opts.file),
                        id,
                        tags: tags.as_ref().map(|c| tags_at(c, i)).unwrap_or_default(),
                    });
                }
                row0 += chunk.num_rows() as u64;
                let results: Vec<_> = rows
                    .into_par_iter()
                    .map(|r| {
                        let out = (|| {
                            let (media, name) = r.media?;
                            let split = r.split?;
                            let rel =
                                name.unwrap_or_else(|| format!("{}#{}", path.display(), r.index));
                            let mut tags = vec![TAG_IMPORTED.to_string()];
                            tags.extend(r.tags);
                            let fc = ingest_file(
                                media,
                                &rel,
                                &r.id,
                                &split,
                                r.caption.as_deref(),
                                &tags,
                                &opts.file,
                            )?;
                            Ok::<_, String>((split, fc))
                        })();
                        (r.index, out)
                    })
                    .collect();
                for (index, res) in results {
                    report.rows_seen += 1;
                    match res {
                        Ok((split, fc)) => {
                            let n = fc.records.len() as u64;
                            for rec in fc.records {
                                writer.write(rec)?;
                            }
                            *report.clips_written.entry(split).or_insert(0) += n;
                            report.clips_total += n;
                            report.rows_imported += 1;
                        }
                        Err(reason) => {
                            tracing::warn!("skipping {} row {index}: {reason}", path.display());
                            report.bad_rows.push(BadRow {
                                file: path.display().to_string(),
                                row: index,
                                reason,
                            });
                        }
                    }
                }
                progress(report.rows_seen);
            }
        }
    }
    writer.note_skipped(report.bad_rows.len() as u64);
    report.seconds = started.elapsed().as_secs_f64();
    let report_path = out.join(REPORT_FILE);
    let text = serde_json::to_string_pretty(&report).expect("report serialises");
    write_atomic(&report_path, text.as_bytes()).map_err(|e| DatasetError::io(&report_path, e))?;
    if report.clips_total == 0 {
        return Err(DatasetError::Config(format!(
            "no clips were imported ({} rows seen, {} bad); see {}",
            report.rows_seen,
            report.bad_rows.len(),
            report_path.display()
        )));
    }
    let _: Manifest = writer.finish()?;
    Ok(report)
}
