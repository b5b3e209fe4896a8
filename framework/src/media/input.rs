//! What the FFmpeg decoder is given: the input and the options (defined with or without the
//! `ffmpeg` feature, so callers compile either way and learn at run time).

use std::path::PathBuf;

/// Where the media comes from: a file, or a file's bytes already in memory (a Parquet
/// cell) with its name as a format hint.
#[derive(Debug)]
pub enum MediaInput {
    /// A file on disk.
    Path(PathBuf),
    /// A whole file's bytes; the name (if known) helps FFmpeg pick the container.
    Bytes {
        /// The file's content.
        bytes: Vec<u8>,
        /// Its original name, e.g. `clip.webm`.
        name: Option<String>,
    },
}

/// How to decode.
#[derive(Clone, Debug, Default)]
pub struct DecodeOptions {
    /// Shrink frames (keeping the aspect ratio) to the smallest size that still covers
    /// `(height, width)`; sources already smaller keep their size.
    pub cover: Option<(usize, usize)>,
    /// Refuse (with the estimate) when the decoded RGB frames would exceed this many bytes.
    pub max_frame_bytes: Option<u64>,
}
