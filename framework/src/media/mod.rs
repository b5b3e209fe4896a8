//! Media I/O: MP4 (H.264 video + Opus audio) encode/decode, WAV, PNG, other audio
//! formats, frame resize/crop and audio resampling.
//!
//! Crates: `openh264` (Cisco's encoder/decoder, built from bundled source), `muxide`
//! (MP4 muxing with explicit timestamps), `opus` (bundled libopus), `mp4` (demuxing),
//! `symphonia` (AAC/FLAC/MP3/Vorbis/WAV decode), `hound` (WAV), `png`,
//! `fast_image_resize` (SIMD resize) and `rubato` (FFT resampling). With the cargo
//! feature `ffmpeg`, [`decode_media`] reads any container and codec through FFmpeg's
//! libraries (`ffmpeg-next`), which is how `data ingest` and `data import` read what
//! users bring.

mod audio;
#[cfg(feature = "ffmpeg")]
mod ffdec;
mod image;
mod input;
mod mp4dec;
mod mp4enc;
mod opus_track;
mod png_io;
mod wav;

pub use audio::{decode_audio, resample_audio};
#[cfg(feature = "ffmpeg")]
pub use ffdec::decode_media;
pub use image::{crop_frames, resize_frames, resize_rgb};
pub use input::{DecodeOptions, MediaInput};
pub use mp4dec::{DecodedMp4, Mp4Info, decode_mp4, probe_mp4};
pub use mp4enc::{Mp4Options, encode_mp4};
pub use png_io::{decode_png, encode_png};
pub use wav::{decode_wav, encode_wav};

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The input cannot be encoded as asked (odd size, empty clip, bad sample rate…).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The bytes are not a readable file of the expected kind.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// The file uses a codec or feature this build does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Bad arguments (crop outside the frame, zero target size…).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Shorthand for media results.
pub type Result<T> = std::result::Result<T, MediaError>;

/// Whether this build reads media through FFmpeg (cargo feature `ffmpeg`).
pub const FFMPEG: bool = cfg!(feature = "ffmpeg");

#[cfg(not(feature = "ffmpeg"))]
fn no_ffmpeg() -> MediaError {
    MediaError::Unsupported(
        "this build has no FFmpeg decoder (rebuild with the cargo feature `ffmpeg`); only sonora's own H.264 MP4s can be read".into(),
    )
}

/// Decodes a media file through FFmpeg; this build has none, so it says so.
#[cfg(not(feature = "ffmpeg"))]
pub fn decode_media(_input: MediaInput, _opts: &DecodeOptions) -> Result<DecodedMp4> {
    Err(no_ffmpeg())
}
