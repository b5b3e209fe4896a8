//! The ingest config: `[ingest]` (clip shape, cutting, splits) and `[shards]`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DatasetError, Result};
use crate::generate::ShardConfig;

/// The `[ingest]` section of an ingest config: clip shape, cutting and splits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Length of each clip cut from a source video, seconds.
    pub clip_seconds: f64,
    /// Frame rate of the stored clips (frames are sampled from the source).
    pub fps: f64,
    /// Width of the stored clips, px (even).
    pub width: usize,
    /// Height of the stored clips, px (even).
    pub height: usize,
    /// Audio sample rate of the stored clips, Hz.
    pub sample_rate: u32,
    /// Audio channels of the stored clips (1 = mono mix, 2 = stereo).
    pub channels: u16,
    /// At most this many clips from one source file (0 = no limit).
    pub max_clips_per_file: usize,
    /// A trailing piece shorter than this many seconds is dropped.
    pub min_clip_seconds: f64,
    /// Fraction of source files assigned to `val`.
    pub val_fraction: f64,
    /// Fraction of source files assigned to `test`.
    pub test_fraction: f64,
    /// Video file extensions to ingest (case-insensitive, without the dot).
    pub extensions: Vec<String>,
    /// Skip a video whose decoded frames would exceed this many MiB (decoding is in memory).
    /// The limit is per file: ingest decodes one file per core at a time, and import up to
    /// 8 rows at a time.
    pub max_decoded_mib: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            clip_seconds: 2.0,
            fps: 12.0,
            width: 64,
            height: 64,
            sample_rate: 16_000,
            channels: 1,
            max_clips_per_file: 0,
            min_clip_seconds: 1.0,
            val_fraction: 0.05,
            test_fraction: 0.05,
            extensions: ["mp4", "m4v", "mov", "mkv", "webm", "avi"]
                .map(String::from)
                .to_vec(),
            max_decoded_mib: 4096,
        }
    }
}

impl IngestConfig {
    /// Checks every value, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DatasetError::Config(m));
        if !(self.clip_seconds > 0.0 && self.clip_seconds.is_finite()) {
            return bad(format!(
                "ingest.clip_seconds must be positive, got {}",
                self.clip_seconds
            ));
        }
        if !(self.fps > 0.0 && self.fps.is_finite()) {
            return bad(format!("ingest.fps must be positive, got {}", self.fps));
        }
        for (k, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 2 != 0 {
                return bad(format!(
                    "ingest.{k} must be a positive even number (H.264 4:2:0), got {v}"
                ));
            }
        }
        if self.sample_rate == 0 {
            return bad("ingest.sample_rate must be positive".into());
        }
        if !matches!(self.channels, 1 | 2) {
            return bad(format!(
                "ingest.channels must be 1 or 2, got {}",
                self.channels
            ));
        }
        if !(self.min_clip_seconds >= 0.0 && self.min_clip_seconds <= self.clip_seconds) {
            return bad(format!(
                "ingest.min_clip_seconds must be between 0 and ingest.clip_seconds ({}), got {}",
                self.clip_seconds, self.min_clip_seconds
            ));
        }
        if self.clip_seconds * self.fps < 1.0 {
            return bad(format!(
                "ingest.clip_seconds ({}) at ingest.fps ({}) is less than one frame",
                self.clip_seconds, self.fps
            ));
        }
        for (k, v) in [
            ("val_fraction", self.val_fraction),
            ("test_fraction", self.test_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("ingest.{k} must be within [0, 1], got {v}"));
            }
        }
        if self.val_fraction + self.test_fraction > 1.0 {
            return bad(format!(
                "ingest.val_fraction + ingest.test_fraction must not exceed 1, got {}",
                self.val_fraction + self.test_fraction
            ));
        }
        if self.extensions.is_empty() {
            return bad("ingest.extensions must list at least one video extension".into());
        }
        Ok(())
    }

    /// Whether `ext` (no dot, any case) is one of the video extensions to ingest.
    pub fn accepts(&self, ext: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.trim_start_matches('.').eq_ignore_ascii_case(ext))
    }

    /// The split (`train`, `val`, `test`) of a source file, from a hash of its relative path.
    pub fn split_for(&self, rel_path: &str) -> &'static str {
        let h = Sha256::digest(rel_path.as_bytes());
        let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        let u = x as f64 / 18_446_744_073_709_551_616.0; // 2^64
        if u < self.test_fraction {
            "test"
        } else if u < self.test_fraction + self.val_fraction {
            "val"
        } else {
            "train"
        }
    }

    /// Clip starts and lengths (seconds) cut from a source lasting `duration_s`.
    pub fn plan_pieces(&self, duration_s: f64) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for k in 0usize.. {
            if self.max_clips_per_file > 0 && k >= self.max_clips_per_file {
                break;
            }
            let start = k as f64 * self.clip_seconds;
            if start >= duration_s - 1e-9 {
                break;
            }
            let len = (duration_s - start).min(self.clip_seconds);
            if len + 1e-9 < self.min_clip_seconds || self.frames_for(len) == 0 {
                break;
            }
            out.push((start, len));
        }
        out
    }

    /// Frames in a piece of `len_s` seconds at the target fps.
    pub(crate) fn frames_for(&self, len_s: f64) -> usize {
        (len_s * self.fps + 1e-6).floor() as usize
    }
}

/// An ingest config file: `[ingest]` and the shard layout `[shards]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestFile {
    /// Clip shape, cutting and splits.
    pub ingest: IngestConfig,
    /// Shard layout.
    pub shards: ShardConfig,
}
