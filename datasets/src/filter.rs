//! `sonora data filter`: copy the clips matching a SQL WHERE expression into a new dataset.
//!
//! The expression is evaluated by polars' SQL engine over a lazy scan of the metadata
//! columns (every column but the `video` and `audio` bytes) plus a row locator (shard and
//! row index); the matching rows are then read in full with the Arrow reader and written
//! with [`DatasetWriter`], keeping each row's split.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;
use polars::sql::SQLContext;
use serde::Serialize;

use crate::error::{DatasetError, Result};
use crate::reader::Dataset;
use crate::schema::{clip_schema, col as c};
use crate::writer::{DatasetWriter, WriterOptions};

/// Name of the table the WHERE expression is evaluated against.
pub const TABLE: &str = "clips";
/// Locator column: index of the shard in the manifest.
pub const SHARD_COLUMN: &str = "__shard";
/// Locator column: row index within the shard.
pub const ROW_COLUMN: &str = "__row";

/// What a filter did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilterReport {
    /// Source dataset directory.
    pub source: String,
    /// Output dataset directory.
    pub out: String,
    /// The WHERE expression.
    pub where_expr: String,
    /// Rows in the source.
    pub rows_scanned: u64,
    /// Rows that matched and were copied.
    pub rows_matched: u64,
    /// Copied rows per split.
    pub splits: BTreeMap<String, u64>,
    /// Shard files written.
    pub shards_written: usize,
}

/// Metadata columns the expression may use (schema order; media columns excluded).
pub fn metadata_columns() -> Vec<String> {
    clip_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != c::VIDEO && n != c::AUDIO)
        .collect()
}

fn expr_error(expr: &str, e: impl std::fmt::Display) -> DatasetError {
    let full = e.to_string();
    // polars appends the query plan after a blank line; the first paragraph is the message.
    let mut msg = full
        .split("\n\n")
        .next()
        .unwrap_or(&full)
        .trim()
        .to_string();
    let missing = msg.contains("unable to find column") || msg.contains("no column");
    if let Some(i) = msg.find("; valid columns:") {
        msg.truncate(i);
    }
    if missing {
        msg.push_str(&format!("; columns are: {}", metadata_columns().join(", ")));
    }
    DatasetError::Config(format!("--where `{expr}`: {msg}"))
}

/// (shard index in the manifest, row within the shard) of every row matching `where_expr`,
/// in dataset order. Also returns the number of rows scanned.
pub fn matching_rows(ds: &Dataset, where_expr: &str) -> Result<(Vec<(usize, u64)>, u64)> {
    if where_expr.trim().is_empty() {
        return Err(DatasetError::Config(
            "--where: the expression is empty".into(),
        ));
    }
    let meta: Vec<Expr> = metadata_columns().iter().map(|n| col(n.as_str())).collect();
    let mut frames = Vec::with_capacity(ds.manifest.shards.len());
    let mut rows_scanned = 0u64;
    for (i, s) in ds.manifest.shards.iter().enumerate() {
        // Opening checks the schema version and column types before polars reads anything.
        rows_scanned += ds.open_shard(s)?.num_rows() as u64;
        let path = PlPath::Local(Arc::from(ds.root.join(&s.path).as_path()));
        let lf = LazyFrame::scan_parquet(path, ScanArgsParquet::default()).map_err(|e| {
            DatasetError::Parquet {
                path: ds.root.join(&s.path),
                message: format!("polars: {e}"),
            }
        })?;
        frames.push(
            lf.select(meta.clone())
                .with_row_index(ROW_COLUMN, None)
                .with_column(lit(i as u32).alias(SHARD_COLUMN)),
        );
    }
    let all = concat(frames, UnionArgs::default()).map_err(|e| expr_error(where_expr, e))?;
    let mut ctx = SQLContext::new();
    ctx.register(TABLE, all);
    let query = format!("SELECT {SHARD_COLUMN}, {ROW_COLUMN} FROM {TABLE} WHERE {where_expr}");
    let df = ctx
        .execute(&query)
        .and_then(|lf| lf.collect())
        .map_err(|e| expr_error(where_expr, e))?;
    let get = |name: &str| -> Result<Vec<Option<i64>>> {
        let col = df
            .column(name)
            .and_then(|s| s.cast(&DataType::Int64))
            .map_err(|e| expr_error(where_expr, e))?;
        Ok(col
            .i64()
            .map_err(|e| expr_error(where_expr, e))?
            .into_iter()
            .collect())
    };
    let mut rows: Vec<(usize, u64)> = get(SHARD_COLUMN)?
        .into_iter()
        .zip(get(ROW_COLUMN)?)
        .filter_map(|(s, r)| Some((s? as usize, r? as u64)))
        .collect();
    rows.sort_unstable();
    rows.dedup();
    Ok((rows, rows_scanned))
}

/// Copies the rows of the dataset at `dataset_dir` matching the SQL `where_expr` (e.g.
/// `duration_s > 1.5 AND split = 'train'`) into a new dataset at `out`.
///
/// It is an error when nothing matches (no dataset is written) or when `out` is the source.
pub fn filter(
    dataset_dir: &Path,
    where_expr: &str,
    out: &Path,
    overwrite: bool,
) -> Result<FilterReport> {
    let ds = Dataset::open(dataset_dir)?;
    if let (Ok(a), Ok(b)) = (dataset_dir.canonicalize(), out.canonicalize())
        && a == b
    {
        return Err(DatasetError::Config(format!(
            "{}: the output directory must differ from the source dataset",
            out.display()
        )));
    }
    let (rows, rows_scanned) = matching_rows(&ds, where_expr)?;
    if rows.is_empty() {
        return Err(DatasetError::Config(format!(
            "--where `{where_expr}` matches none of the {rows_scanned} clips in {}; nothing written",
            dataset_dir.display()
        )));
    }
    let mut by_shard: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (s, r) in &rows {
        by_shard.entry(*s).or_default().push(*r);
    }
    let mut writer = DatasetWriter::create(
        out,
        "sonora data filter",
        WriterOptions {
            overwrite,
            ..Default::default()
        },
    )?;
    writer.set_source(serde_json::json!({
        "filter": {
            "dataset": dataset_dir.display().to_string(),
            "where": where_expr,
            "source_created_by": ds.manifest.created_by,
            "source": ds.manifest.source,
        }
    }));
    let mut splits: BTreeMap<String, u64> = BTreeMap::new();
    for (si, wanted) in by_shard {
        let info = ds.manifest.shards.get(si).ok_or_else(|| {
            DatasetError::Config(format!(
                "--where `{where_expr}`: query returned shard index {si}, which does not exist"
            ))
        })?;
        let reader = ds.open_shard(info)?;
        let mut wanted = wanted.into_iter().peekable();
        let mut first = 0u64;
        for g in 0..reader.num_row_groups() {
            let end = first + reader.row_group_rows(g) as u64;
            if wanted.peek().is_some_and(|&r| r < end) {
                let mut records = reader
                    .read_records(g, None)?
                    .into_iter()
                    .map(Some)
                    .collect::<Vec<_>>();
                while let Some(r) = wanted.next_if(|&r| r < end) {
                    let rec = records[(r - first) as usize]
                        .take()
                        .expect("rows are deduplicated")?;
                    *splits.entry(rec.split.clone()).or_insert(0) += 1;
                    writer.write(rec)?;
                }
            }
            first = end;
        }
        if let Some(r) = wanted.next() {
            return Err(DatasetError::Config(format!(
                "--where `{where_expr}`: query returned row {r} of {}, which has only {first} rows",
                info.path
            )));
        }
    }
    let manifest = writer.finish()?;
    Ok(FilterReport {
        source: dataset_dir.display().to_string(),
        out: out.display().to_string(),
        where_expr: where_expr.to_string(),
        rows_scanned,
        rows_matched: rows.len() as u64,
        splits,
        shards_written: manifest.shards.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{tiny_clip, write_dataset};

    fn ids(dir: &Path) -> Vec<String> {
        let ds = Dataset::open(dir).unwrap();
        let mut out = Vec::new();
        for s in ds.shards(None) {
            let r = ds.open_shard(&s).unwrap();
            for g in 0..r.num_row_groups() {
                out.extend(
                    r.read_records(g, None)
                        .unwrap()
                        .into_iter()
                        .map(|x| x.unwrap().clip_id),
                );
            }
        }
        out.sort();
        out
    }

    fn source(dir: &Path) -> std::path::PathBuf {
        let src = dir.join("src");
        write_dataset(
            &src,
            &[
                (tiny_clip("a", 4, "a red ball", &["bounce"], &[]), "train"),
                (tiny_clip("b", 8, "blue", &[], &["alice"]), "train"),
                (tiny_clip("c", 12, "green", &["bounce"], &[]), "train"),
                (tiny_clip("d", 12, "x", &[], &[]), "val"),
                (tiny_clip("e", 4, "y", &[], &[]), "val"),
            ],
        );
        src
    }

    #[test]
    fn where_expression_selects_rows_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Dataset::open(&source(dir.path())).unwrap();
        let matched_ids = |expr: &str| -> Vec<String> {
            let (rows, scanned) = matching_rows(&ds, expr).unwrap();
            assert_eq!(scanned, 5);
            let mut out = Vec::new();
            for (s, r) in rows {
                let reader = ds.open_shard(&ds.manifest.shards[s]).unwrap();
                let batch = reader.read_row_group(0, None).unwrap();
                let mut all = Vec::new();
                for g in 0..reader.num_row_groups() {
                    let b = if g == 0 {
                        batch.clone()
                    } else {
                        reader.read_row_group(g, None).unwrap()
                    };
                    let v = crate::records::BatchView::new(&b);
                    all.extend((0..v.len()).map(|i| v.clip_id(i).unwrap()));
                }
                out.push(all[r as usize].clone());
            }
            out.sort();
            out
        };
        assert_eq!(
            matched_ids("duration_s >= 1.0 AND split = 'train'"),
            ["b", "c"]
        );
        assert_eq!(
            matched_ids("num_frames = 12 OR caption LIKE '%red%'"),
            ["a", "c", "d"]
        );
        assert_eq!(matched_ids("array_length(character_ids) > 0"), ["b"]);
        assert!(matched_ids("num_frames > 100").is_empty());

        let e = matching_rows(&ds, "duration_s >>> 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duration_s >>> 2"), "{e}");
        let e = matching_rows(&ds, "no_such_col > 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no_such_col"), "{e}");
        assert!(matching_rows(&ds, "  ").is_err());
    }

    #[test]
    fn filter_copies_full_records() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        let out = dir.path().join("out");
        let rep = filter(&src, "num_frames = 12 OR caption LIKE '%red%'", &out, false).unwrap();
        assert_eq!((rep.rows_scanned, rep.rows_matched), (5, 3));
        assert_eq!(
            rep.splits,
            BTreeMap::from([("train".to_string(), 2), ("val".to_string(), 1)])
        );
        assert_eq!(ids(&out), ["a", "c", "d"]);
        let m = crate::manifest::Manifest::load(&out).unwrap();
        assert_eq!(
            m.source["filter"]["where"],
            "num_frames = 12 OR caption LIKE '%red%'"
        );
        // Full records are copied, media included.
        let ds = Dataset::open(&out).unwrap();
        let r = ds.open_shard(&ds.shards(Some("val"))[0]).unwrap();
        let rec = r.read_records(0, None).unwrap().remove(0).unwrap();
        assert_eq!(rec.clip_id, "d");
        crate::codec::decode_record(&rec).unwrap();

        let e = filter(&src, "num_frames > 100", &dir.path().join("o2"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("matches none"), "{e}");
        assert!(!dir.path().join("o2").exists());
        assert!(filter(&src, "num_frames > 1", &src, true).is_err());
    }
}
