//! `sonora data stats`: counts and histograms of a dataset, computed with polars.
//!
//! The shards listed in the manifest are scanned lazily with a projection of the metadata
//! columns only, so the video and audio bytes are never read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;
use serde::Serialize;

use crate::error::{DatasetError, Result};
use crate::reader::Dataset;
use crate::schema::col as c;

/// Tags and character ids listed in a report (the most frequent first).
pub const TOP_N: usize = 20;

/// Bin edges of the clip-duration histogram, seconds (the last bin is open).
pub const DURATION_EDGES: &[f64] = &[0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// Bin edges of the caption-length histogram, words (the last bin is open).
pub const CAPTION_WORD_EDGES: &[f64] = &[0.0, 1.0, 5.0, 10.0, 20.0, 40.0, 80.0];

/// One bin of a histogram: `[lo, hi)`, `hi` open-ended for the last bin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramBin {
    /// Human label, e.g. `1-2` or `80+`.
    pub label: String,
    /// Inclusive lower edge.
    pub lo: f64,
    /// Exclusive upper edge (`None` for the last, open bin).
    pub hi: Option<f64>,
    /// Rows in the bin.
    pub count: u64,
}

/// A value and how many rows (or list items) have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValueCount {
    /// The value (`64x64`, `12`, a tag, a character id).
    pub value: String,
    /// How often it occurs.
    pub count: u64,
}

/// Per-split totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitStats {
    /// Clips in the split.
    pub clips: u64,
    /// Summed clip duration, hours.
    pub hours: f64,
}

/// Everything `sonora data stats` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetStats {
    /// The dataset directory.
    pub dataset: String,
    /// Shard files.
    pub shards: usize,
    /// Summed shard size, bytes.
    pub bytes: u64,
    /// Clips in total.
    pub clips: u64,
    /// Per split, by name.
    pub splits: BTreeMap<String, SplitStats>,
    /// Summed clip duration, hours.
    pub total_hours: f64,
    /// Shortest clip, seconds.
    pub duration_min_s: f64,
    /// Mean clip duration, seconds.
    pub duration_mean_s: f64,
    /// Longest clip, seconds.
    pub duration_max_s: f64,
    /// Clip durations, seconds ([`DURATION_EDGES`]).
    pub duration_s: Vec<HistogramBin>,
    /// Clips per `WxH`, most frequent first.
    pub resolution: Vec<ValueCount>,
    /// Clips per frame rate, most frequent first.
    pub fps: Vec<ValueCount>,
    /// Caption lengths in words ([`CAPTION_WORD_EDGES`]).
    pub caption_words: Vec<HistogramBin>,
    /// Mean caption length, words.
    pub caption_words_mean: f64,
    /// Clips whose caption is empty or whitespace.
    pub empty_captions: u64,
    /// Distinct tags.
    pub distinct_tags: u64,
    /// The [`TOP_N`] most frequent tags.
    pub top_tags: Vec<ValueCount>,
    /// Distinct character ids.
    pub distinct_characters: u64,
    /// Clips with at least one character.
    pub clips_with_characters: u64,
    /// The [`TOP_N`] most frequent character ids.
    pub top_characters: Vec<ValueCount>,
}

fn pe(dir: &Path) -> impl Fn(PolarsError) -> DatasetError + '_ {
    move |e| DatasetError::Parquet {
        path: dir.to_path_buf(),
        message: format!("polars: {e}"),
    }
}

/// A lazy scan of the dataset's shards with only the named columns. Every shard's footer
/// and schema are read first with the shard reader, so a damaged shard is named (polars
/// would report the dataset directory and raw footer bytes).
pub(crate) fn scan_columns(ds: &Dataset, columns: &[&str]) -> Result<LazyFrame> {
    for s in &ds.manifest.shards {
        crate::reader::ShardReader::open(&ds.root, &s.path)?;
    }
    let paths: Vec<PlPath> = ds
        .manifest
        .shards
        .iter()
        .map(|s| PlPath::Local(Arc::from(ds.root.join(&s.path).as_path())))
        .collect();
    let lf = LazyFrame::scan_parquet_files(paths.into(), ScanArgsParquet::default())
        .map_err(pe(&ds.root))?;
    Ok(lf.select(columns.iter().map(|n| col(*n)).collect::<Vec<_>>()))
}

fn i64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<i64>> {
    let col = df.column(name)?.cast(&DataType::Int64)?;
    Ok(col.i64()?.into_iter().map(|v| v.unwrap_or(0)).collect())
}

fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<f64>>> {
    let col = df.column(name)?.cast(&DataType::Float64)?;
    Ok(col.f64()?.into_iter().collect())
}

fn strs(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    let col = df.column(name)?.cast(&DataType::String)?;
    Ok(col
        .str()?
        .into_iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// Bin index of `e` for `edges`: the number of edges after the first that `e` reaches.
fn bin_index(e: Expr, edges: &[f64]) -> Expr {
    edges[1..]
        .iter()
        .map(|&x| e.clone().gt_eq(lit(x)).cast(DataType::Int64))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| lit(0i64))
}

/// Counts rows of `lf` per bin of the numeric expression `e`.
fn histogram(
    lf: LazyFrame,
    e: Expr,
    edges: &[f64],
    label: fn(f64, Option<f64>) -> String,
) -> PolarsResult<Vec<HistogramBin>> {
    let df = lf
        .select([bin_index(e.clone(), edges).alias("bin"), e.alias("v")])
        .filter(col("v").is_not_null())
        .group_by([col("bin")])
        .agg([len().alias("n")])
        .collect()?;
    let mut counts = vec![0u64; edges.len()];
    for (b, n) in i64s(&df, "bin")?.into_iter().zip(i64s(&df, "n")?) {
        counts[(b.max(0) as usize).min(edges.len() - 1)] += n as u64;
    }
    Ok(edges
        .iter()
        .enumerate()
        .map(|(i, &lo)| {
            let hi = edges.get(i + 1).copied();
            HistogramBin {
                label: label(lo, hi),
                lo,
                hi,
                count: counts[i],
            }
        })
        .collect())
}

fn seconds_label(lo: f64, hi: Option<f64>) -> String {
    match hi {
        Some(hi) => format!("{lo}-{hi} s"),
        None => format!("{lo}+ s"),
    }
}

fn words_label(lo: f64, hi: Option<f64>) -> String {
    match hi {
        Some(hi) if hi - lo <= 1.0 => format!("{lo}"),
        Some(hi) => format!("{lo}-{}", hi - 1.0),
        None => format!("{lo}+"),
    }
}

/// Value counts of the list column `name` (exploded), most frequent first, and the
/// number of distinct values.
fn list_counts(lf: LazyFrame, name: &str) -> PolarsResult<(Vec<ValueCount>, u64)> {
    let df = lf
        .select([col(name)])
        .explode(cols([name]))
        .filter(col(name).is_not_null())
        .group_by([col(name)])
        .agg([len().alias("n")])
        .collect()?;
    let values = strs(&df, name)?;
    let counts = i64s(&df, "n")?;
    let mut out: Vec<ValueCount> = values
        .into_iter()
        .zip(counts)
        .map(|(v, n)| ValueCount {
            value: v.unwrap_or_default(),
            count: n as u64,
        })
        .collect();
    sort_counts(&mut out);
    let distinct = out.len() as u64;
    Ok((out, distinct))
}

fn sort_counts(v: &mut [ValueCount]) {
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
}

fn fmt_num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Computes the statistics of the dataset at `dataset_dir`.
pub fn stats(dataset_dir: &Path) -> Result<DatasetStats> {
    let ds = Dataset::open(dataset_dir)?;
    let err = pe(dataset_dir);
    let meta = scan_columns(
        &ds,
        &[
            c::SPLIT,
            c::CAPTION,
            c::FPS,
            c::WIDTH,
            c::HEIGHT,
            c::DURATION_S,
            c::TAGS,
            c::CHARACTER_IDS,
        ],
    )?
    .collect()
    .map_err(&err)?;
    let lf = || meta.clone().lazy();

    // Per split.
    let df = lf()
        .group_by([col(c::SPLIT)])
        .agg([len().alias("n"), col(c::DURATION_S).sum().alias("secs")])
        .collect()
        .map_err(&err)?;
    let mut splits = BTreeMap::new();
    let names = strs(&df, c::SPLIT).map_err(&err)?;
    let ns = i64s(&df, "n").map_err(&err)?;
    let secs = f64s(&df, "secs").map_err(&err)?;
    for ((name, n), s) in names.into_iter().zip(ns).zip(secs) {
        let hours = s.unwrap_or(0.0) / 3600.0;
        splits.insert(
            name.unwrap_or_default(),
            SplitStats {
                clips: n as u64,
                hours,
            },
        );
    }
    let clips = meta.height() as u64;
    let total_hours = splits.values().map(|s| s.hours).sum::<f64>();

    // Durations.
    let df = lf()
        .select([
            col(c::DURATION_S).min().alias("min"),
            col(c::DURATION_S).mean().alias("mean"),
            col(c::DURATION_S).max().alias("max"),
        ])
        .collect()
        .map_err(&err)?;
    let one = |n: &str| -> Result<f64> {
        Ok(f64s(&df, n)
            .map_err(&err)?
            .first()
            .copied()
            .flatten()
            .unwrap_or(0.0))
    };
    let (duration_min_s, duration_mean_s, duration_max_s) =
        (one("min")?, one("mean")?, one("max")?);
    let duration_s =
        histogram(lf(), col(c::DURATION_S), DURATION_EDGES, seconds_label).map_err(&err)?;

    // Resolution and fps.
    let df = lf()
        .group_by([col(c::WIDTH), col(c::HEIGHT)])
        .agg([len().alias("n")])
        .collect()
        .map_err(&err)?;
    let mut resolution: Vec<ValueCount> = i64s(&df, c::WIDTH)
        .map_err(&err)?
        .into_iter()
        .zip(i64s(&df, c::HEIGHT).map_err(&err)?)
        .zip(i64s(&df, "n").map_err(&err)?)
        .map(|((w, h), n)| ValueCount {
            value: format!("{w}x{h}"),
            count: n as u64,
        })
        .collect();
    sort_counts(&mut resolution);
    let df = lf()
        .group_by([col(c::FPS)])
        .agg([len().alias("n")])
        .collect()
        .map_err(&err)?;
    let mut fps: Vec<ValueCount> = f64s(&df, c::FPS)
        .map_err(&err)?
        .into_iter()
        .zip(i64s(&df, "n").map_err(&err)?)
        .map(|(f, n)| ValueCount {
            value: f.map(fmt_num).unwrap_or_else(|| "null".into()),
            count: n as u64,
        })
        .collect();
    sort_counts(&mut fps);

    // Captions.
    let words = || col(c::CAPTION).str().count_matches(lit(r"\S+"), false);
    let caption_words = histogram(lf(), words(), CAPTION_WORD_EDGES, words_label).map_err(&err)?;
    let df = lf()
        .select([
            words().cast(DataType::Float64).mean().alias("mean"),
            words()
                .eq(lit(0u32))
                .cast(DataType::Int64)
                .sum()
                .alias("empty"),
        ])
        .collect()
        .map_err(&err)?;
    let caption_words_mean = f64s(&df, "mean")
        .map_err(&err)?
        .first()
        .copied()
        .flatten()
        .unwrap_or(0.0);
    let empty_captions = i64s(&df, "empty")
        .map_err(&err)?
        .first()
        .copied()
        .unwrap_or(0) as u64;

    // Tags and characters.
    let (mut top_tags, distinct_tags) = list_counts(lf(), c::TAGS).map_err(&err)?;
    top_tags.truncate(TOP_N);
    let (mut top_characters, distinct_characters) =
        list_counts(lf(), c::CHARACTER_IDS).map_err(&err)?;
    top_characters.truncate(TOP_N);
    let df = lf()
        .select([col(c::CHARACTER_IDS)
            .list()
            .len()
            .gt(lit(0u32))
            .cast(DataType::Int64)
            .sum()
            .alias("n")])
        .collect()
        .map_err(&err)?;
    let clips_with_characters = i64s(&df, "n").map_err(&err)?.first().copied().unwrap_or(0) as u64;

    Ok(DatasetStats {
        dataset: dataset_dir.display().to_string(),
        shards: ds.manifest.shards.len(),
        bytes: ds.manifest.shards.iter().map(|s| s.bytes).sum(),
        clips,
        splits,
        total_hours,
        duration_min_s,
        duration_mean_s,
        duration_max_s,
        duration_s,
        resolution,
        fps,
        caption_words,
        caption_words_mean,
        empty_captions,
        distinct_tags,
        top_tags,
        distinct_characters,
        clips_with_characters,
        top_characters,
    })
}

/// Width of the ASCII bars in [`DatasetStats::render_text`].
const BAR: usize = 30;

fn bar(count: u64, max: u64) -> String {
    let n = if max == 0 {
        0
    } else {
        ((count as f64 / max as f64) * BAR as f64).round() as usize
    };
    let n = if count > 0 { n.max(1) } else { 0 };
    format!("{}{}", "#".repeat(n), " ".repeat(BAR - n))
}

fn pct(n: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / total as f64)
    }
}

fn render_hist(out: &mut String, title: &str, bins: &[HistogramBin], total: u64) {
    let _ = writeln!(out, "\n{title}");
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0);
    let w = bins.iter().map(|b| b.label.len()).max().unwrap_or(0);
    for b in bins {
        let _ = writeln!(
            out,
            "  {:>w$} |{}| {:>8} {:>6}",
            b.label,
            bar(b.count, max),
            b.count,
            pct(b.count, total)
        );
    }
}

fn render_counts(out: &mut String, title: &str, items: &[ValueCount], total: u64) {
    let _ = writeln!(out, "\n{title}");
    if items.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let max = items.iter().map(|b| b.count).max().unwrap_or(0);
    let w = items.iter().map(|b| b.value.len()).max().unwrap_or(0);
    for b in items {
        let _ = writeln!(
            out,
            "  {:<w$} |{}| {:>8} {:>6}",
            b.value,
            bar(b.count, max),
            b.count,
            pct(b.count, total)
        );
    }
}

impl DatasetStats {
    /// A human-readable report: totals, a split table and ASCII-bar histograms.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "dataset   {}", self.dataset);
        let _ = writeln!(
            o,
            "shards    {} ({:.1} MiB)",
            self.shards,
            self.bytes as f64 / (1024.0 * 1024.0)
        );
        let _ = writeln!(o, "clips     {}", self.clips);
        let _ = writeln!(
            o,
            "duration  {:.3} h total; per clip min {:.2} s, mean {:.2} s, max {:.2} s",
            self.total_hours, self.duration_min_s, self.duration_mean_s, self.duration_max_s
        );
        let _ = writeln!(
            o,
            "\n  {:<10} {:>10} {:>10} {:>7}",
            "split", "clips", "hours", "share"
        );
        for (name, s) in &self.splits {
            let _ = writeln!(
                o,
                "  {:<10} {:>10} {:>10.3} {:>7}",
                name,
                s.clips,
                s.hours,
                pct(s.clips, self.clips)
            );
        }
        render_hist(&mut o, "duration (s)", &self.duration_s, self.clips);
        render_counts(&mut o, "resolution (WxH)", &self.resolution, self.clips);
        render_counts(&mut o, "fps", &self.fps, self.clips);
        render_hist(
            &mut o,
            &format!(
                "caption length (words; mean {:.1}, empty {})",
                self.caption_words_mean, self.empty_captions
            ),
            &self.caption_words,
            self.clips,
        );
        render_counts(
            &mut o,
            &format!("top tags ({} distinct; % of clips)", self.distinct_tags),
            &self.top_tags,
            self.clips,
        );
        render_counts(
            &mut o,
            &format!(
                "top characters ({} distinct, in {} clips; % of clips)",
                self.distinct_characters, self.clips_with_characters
            ),
            &self.top_characters,
            self.clips,
        );
        o
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::record_from_clip;
    use crate::schema::ClipRecord;
    use crate::writer::{DatasetWriter, WriterOptions};
    use sonora_framework::media::Mp4Options;
    use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

    /// A tiny clip: 16×16, `t` frames at 8 fps, mono audio at 8 kHz.
    pub(crate) fn tiny_clip(
        id: &str,
        t: usize,
        caption: &str,
        tags: &[&str],
        chars: &[&str],
    ) -> Clip {
        let mut frames = Frames::zeros(t, 16, 16);
        for k in 0..t {
            frames
                .frame_mut(k)
                .iter_mut()
                .enumerate()
                .for_each(|(i, p)| *p = (i * 3 + k * 40) as u8);
        }
        let fps = 8.0;
        let n = (t as f64 / fps * 8000.0).round() as usize;
        Clip {
            frames,
            audio: Audio::silence(n, 1, 8000),
            fps,
            caption: caption.into(),
            metadata: ClipMetadata {
                clip_id: id.into(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
                character_ids: chars.iter().map(|s| s.to_string()).collect(),
                ..ClipMetadata::default()
            },
        }
    }

    /// Writes records as a dataset in `dir` with [`DatasetWriter`] (row groups of 2).
    pub(crate) fn write_records(dir: &Path, records: Vec<ClipRecord>) {
        let opts = WriterOptions {
            rows_per_group: 2,
            ..WriterOptions::default()
        };
        let mut w = DatasetWriter::create(dir, "test", opts).unwrap();
        for r in records {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
    }

    /// Encodes `(clip, split)` pairs and writes them as a dataset in `dir`.
    pub(crate) fn write_dataset(dir: &Path, clips: &[(Clip, &str)]) {
        let records = clips
            .iter()
            .map(|(clip, split)| {
                record_from_clip(clip, split, None, &Mp4Options::default()).unwrap()
            })
            .collect();
        write_records(dir, records);
    }

    #[test]
    fn stats_counts_and_histograms() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(
            dir.path(),
            &[
                (
                    tiny_clip("a", 4, "a red ball", &["bounce", "red"], &["alice"]),
                    "train",
                ),
                (tiny_clip("b", 8, "", &["bounce"], &[]), "train"),
                (
                    tiny_clip("c", 4, "one", &["bounce", "blue"], &["alice", "bob"]),
                    "train",
                ),
                (tiny_clip("d", 12, "  ", &[], &[]), "val"),
            ],
        );
        let s = stats(dir.path()).unwrap();
        assert_eq!(s.clips, 4);
        assert_eq!(s.splits["train"].clips, 3);
        assert_eq!(s.splits["val"].clips, 1);
        assert!(
            (s.total_hours * 3600.0 - 3.5).abs() < 1e-9,
            "{}",
            s.total_hours
        );
        assert_eq!(s.duration_s.iter().map(|b| b.count).sum::<u64>(), 4);
        // 0.5 s twice, 1.0 s, 1.5 s.
        assert_eq!(s.duration_s[1].count, 2);
        assert_eq!(s.duration_s[2].count, 2);
        assert_eq!(s.caption_words.iter().map(|b| b.count).sum::<u64>(), 4);
        assert_eq!(s.empty_captions, 2);
        assert_eq!(s.caption_words[0].count, 2);
        assert_eq!(s.caption_words[1].count, 2);
        assert_eq!(
            s.resolution,
            vec![ValueCount {
                value: "16x16".into(),
                count: 4
            }]
        );
        assert_eq!(
            s.fps,
            vec![ValueCount {
                value: "8".into(),
                count: 4
            }]
        );
        assert_eq!(s.distinct_tags, 3);
        assert_eq!(
            s.top_tags[0],
            ValueCount {
                value: "bounce".into(),
                count: 3
            }
        );
        assert_eq!(s.top_tags.iter().map(|t| t.count).sum::<u64>(), 5);
        assert_eq!(s.distinct_characters, 2);
        assert_eq!(s.clips_with_characters, 2);
        assert_eq!(
            s.top_characters[0],
            ValueCount {
                value: "alice".into(),
                count: 2
            }
        );
        let text = s.render_text();
        assert!(
            text.contains("bounce") && text.contains("16x16") && text.contains('#'),
            "{text}"
        );
        serde_json::to_string(&s).unwrap();
    }
}
