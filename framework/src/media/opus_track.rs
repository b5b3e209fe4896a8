//! Opus packets for the MP4 audio track (48 kHz, 20 ms frames).
//!
//! MP4 players drop the first `pre_skip` decoded samples (from the `dOps` box). muxide
//! always writes `pre_skip = 312`, so the encoder's own delay (libopus' lookahead) is
//! topped up with silence to exactly 312 samples: sample 0 of the clip then plays at
//! time 0, with its first video frame.

use opus::{Application, Bitrate, Channels};

use super::{MediaError, Result};
use crate::clip::Audio;

/// Opus' sample rate in MP4.
pub const OPUS_RATE: u32 = 48_000;
/// Samples per channel in one Opus packet (20 ms).
pub const FRAME: usize = 960;
/// The pre-skip muxide writes into `dOps`.
pub const PRE_SKIP: usize = 312;

fn channels(n: u16) -> Result<Channels> {
    match n {
        1 => Ok(Channels::Mono),
        2 => Ok(Channels::Stereo),
        n => Err(MediaError::Encode(format!(
            "Opus tracks hold 1 or 2 channels, got {n}"
        ))),
    }
}

/// Encodes 48 kHz audio into Opus packets; each packet covers [`FRAME`] samples.
pub fn encode_packets(audio: &Audio, bitrate_kbps: u32) -> Result<Vec<Vec<u8>>> {
    if audio.sample_rate != OPUS_RATE {
        return Err(MediaError::Encode(format!(
            "Opus input must be 48 kHz, got {}",
            audio.sample_rate
        )));
    }
    let ch = audio.channels as usize;
    let err = |e: opus::Error| MediaError::Encode(format!("Opus: {e}"));
    let mut enc = opus::Encoder::new(OPUS_RATE, channels(audio.channels)?, Application::Audio)
        .map_err(err)?;
    enc.set_bitrate(Bitrate::Bits((bitrate_kbps as i32) * 1000))
        .map_err(err)?;
    let lookahead = enc.get_lookahead().map_err(err)? as usize;
    if lookahead > PRE_SKIP {
        return Err(MediaError::Encode(format!(
            "libopus lookahead {lookahead} exceeds the container's pre-skip {PRE_SKIP}"
        )));
    }
    // [pad | audio | tail]: pad makes the total delay PRE_SKIP; the tail flushes the encoder.
    let pad = (PRE_SKIP - lookahead) * ch;
    let mut pcm = vec![0.0f32; pad];
    pcm.extend(audio.samples.iter().map(|s| {
        if s.is_finite() {
            s.clamp(-1.0, 1.0)
        } else {
            0.0
        }
    }));
    let total = audio.num_frames() + PRE_SKIP;
    let n_packets = total.div_ceil(FRAME).max(1);
    pcm.resize(n_packets * FRAME * ch, 0.0);
    let mut out = Vec::with_capacity(n_packets);
    for frame in pcm.chunks(FRAME * ch) {
        out.push(enc.encode_vec_float(frame, 4000).map_err(err)?);
    }
    Ok(out)
}

/// Decodes Opus packets into 48 kHz audio, dropping `pre_skip` samples from the start.
pub fn decode_packets<'a>(
    packets: impl IntoIterator<Item = &'a [u8]>,
    n_channels: u16,
    pre_skip: usize,
) -> Result<Audio> {
    let err = |e: opus::Error| MediaError::Decode(format!("Opus: {e}"));
    let ch = n_channels as usize;
    let mut dec = opus::Decoder::new(
        OPUS_RATE,
        channels(n_channels).map_err(|e| MediaError::Decode(e.to_string()))?,
    )
    .map_err(err)?;
    let mut buf = vec![0.0f32; 5760 * ch]; // the longest Opus packet: 120 ms
    let mut samples = Vec::new();
    for (i, p) in packets.into_iter().enumerate() {
        let n = dec
            .decode_float(p, &mut buf, false)
            .map_err(|e| MediaError::Decode(format!("Opus packet {i}: {e}")))?;
        samples.extend_from_slice(&buf[..n * ch]);
    }
    let skip = (pre_skip * ch).min(samples.len());
    samples.drain(..skip);
    Ok(Audio {
        samples,
        channels: n_channels,
        sample_rate: OPUS_RATE,
    })
}
