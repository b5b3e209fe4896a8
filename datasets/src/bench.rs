//! Benchmarks behind `sonora bench loader` and `sonora bench parquet`.
//!
//! Each reports its figures beside an anchor measured in the same run: the loader with one
//! worker (for the two-worker speed-up) and pyarrow reading the same shards.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::error::{DatasetError, Result};
use crate::loader::{LOADER_COLUMNS, Loader, LoaderConfig};
use crate::reader::Dataset;

/// One loader measurement.
#[derive(Clone, Debug, Serialize)]
pub struct LoaderRun {
    /// `frames×height×width`.
    pub shape: String,
    /// Decode threads.
    pub workers: usize,
    /// Clips delivered.
    pub clips: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Clips per second.
    pub clips_per_s: f64,
    /// This run's throughput over the same shape's one-worker run.
    pub speedup_vs_1_worker: f64,
}

/// Loader throughput (decode + fit + batch) for each shape and worker count.
pub fn bench_loader(
    ds: &Dataset,
    shapes: &[(usize, usize, usize)],
    workers: &[usize],
    epochs: usize,
) -> Result<Vec<LoaderRun>> {
    let mut runs = Vec::new();
    for &(t, h, w) in shapes {
        let mut base = None;
        for &n in workers {
            let cfg = LoaderConfig {
                split: String::new(),
                frames: t,
                height: h,
                width: w,
                workers: n,
                batch_size: 8,
                prefetch_batches: 4,
                ..LoaderConfig::default()
            };
            let mut l = Loader::new(ds, cfg, 0, 1)?;
            // One untimed epoch warms the page cache, allocator and thread pool.
            while l.next_batch()?.is_some() {}
            let start = Instant::now();
            let mut clips = 0;
            for _ in 0..epochs {
                while let Some(b) = l.next_batch()? {
                    clips += b.len();
                    std::hint::black_box(b.video_u8());
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            let rate = clips as f64 / seconds;
            let b = *base.get_or_insert(rate);
            runs.push(LoaderRun {
                shape: format!("{t}x{h}x{w}"),
                workers: n,
                clips,
                seconds,
                clips_per_s: rate,
                speedup_vs_1_worker: rate / b,
            });
        }
    }
    Ok(runs)
}

/// Parquet read throughput of sonora and of pyarrow over the same shards.
#[derive(Clone, Debug, Serialize)]
pub struct ParquetRun {
    /// Shard bytes read per pass.
    pub bytes: u64,
    /// Rows read per pass.
    pub rows: u64,
    /// Passes timed.
    pub passes: usize,
    /// sonora (arrow-rs) seconds per pass, best of `passes`.
    pub sonora_s: f64,
    /// sonora seconds per pass reading only the loader's columns (no `physics`).
    pub sonora_loader_columns_s: f64,
    /// pyarrow seconds per pass, best of `passes`.
    pub pyarrow_s: f64,
    /// sonora MB/s (file bytes).
    pub sonora_mb_s: f64,
    /// pyarrow MB/s (file bytes).
    pub pyarrow_mb_s: f64,
    /// sonora throughput over pyarrow's (>1: faster).
    pub ratio: f64,
}

/// Reads every row group of every shard (all columns) with sonora's reader, then times
/// pyarrow's `pq.read_table` on the same files in a `python3` subprocess.
pub fn bench_parquet(ds: &Dataset, passes: usize) -> Result<ParquetRun> {
    let shards = ds.shards(None);
    let files: Vec<_> = shards.iter().map(|s| ds.root.join(&s.path)).collect();
    let bytes: u64 = shards.iter().map(|s| s.bytes).sum();
    // sonora's reader, row group by row group as the loader reads: all columns, then the
    // loader's projection (media and metadata, no physics labels).
    let time_sonora = |columns: Option<&[&str]>| -> Result<(f64, u64)> {
        let mut best = f64::INFINITY;
        let mut rows = 0u64;
        for _ in 0..passes.max(1) {
            let start = Instant::now();
            rows = 0;
            for s in &shards {
                let r = ds.open_shard(s)?;
                for g in 0..r.num_row_groups() {
                    rows += r.read_row_group(g, columns)?.num_rows() as u64;
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok((best, rows))
    };
    let (best, rows) = time_sonora(None)?;
    let (loader_s, _) = time_sonora(Some(LOADER_COLUMNS))?;
    let script = r#"
import sys, time
import pyarrow.parquet as pq
files = sys.argv[2:]
best = float('inf')
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    n = sum(pq.read_table(f, use_threads=False).num_rows for f in files)
    best = min(best, time.perf_counter() - t)
print(best, n)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(passes.max(1).to_string())
        .args(&files)
        .output()
        .map_err(|e| {
            DatasetError::Config(format!("cannot run python3 for the pyarrow anchor: {e}"))
        })?;
    if !out.status.success() {
        return Err(DatasetError::Config(format!(
            "pyarrow anchor failed (run scripts/setup.sh --test to install pyarrow): {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let py_s: f64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DatasetError::Config(format!("unexpected pyarrow output: {text}")))?;
    let mb = bytes as f64 / 1e6;
    Ok(ParquetRun {
        bytes,
        rows,
        passes,
        sonora_s: best,
        sonora_loader_columns_s: loader_s,
        pyarrow_s: py_s,
        sonora_mb_s: mb / best,
        pyarrow_mb_s: mb / py_s,
        ratio: py_s / best,
    })
}

/// Whether `dir` holds a dataset (used to reuse a benchmark dataset between runs).
pub fn has_dataset(dir: &Path) -> bool {
    dir.join(crate::manifest::MANIFEST_FILE).is_file()
}
