//! MP4 → frames and audio: demuxed by `mp4`, H.264 decoded by openh264, Opus by libopus,
//! AAC (and other symphonia codecs) by symphonia.

use std::io::Cursor;

use mp4::{Mp4Reader, Mp4Track, TrackType};
use openh264::decoder::{DecodeOptions, Decoder, Flush};
use openh264::formats::YUVSource;

use super::opus_track::{self, OPUS_RATE};
use super::{MediaError, Result, decode_audio};
use crate::clip::{Audio, Frames};

/// A decoded MP4: frames `T×H×W×3`, the frame rate and the audio track if there is one.
#[derive(Clone, Debug)]
pub struct DecodedMp4 {
    /// All video frames in display order.
    pub frames: Frames,
    /// Frames per second (frame count over the video track's duration).
    pub fps: f64,
    /// The first audio track, trimmed to the video's length when longer.
    pub audio: Option<Audio>,
}

/// What an MP4 holds, read from its headers without decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Mp4Info {
    /// Frame width.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// Video samples (frames).
    pub num_frames: usize,
    /// Frames per second.
    pub fps: f64,
    /// Video track duration in seconds.
    pub duration_s: f64,
    /// Video sample entry (`avc1`, `hev1`, …).
    pub video_codec: String,
    /// Audio sample entry (`Opus`, `mp4a`), if there is an audio track.
    pub audio_codec: Option<String>,
}

fn open(bytes: &[u8]) -> Result<Mp4Reader<Cursor<&[u8]>>> {
    Mp4Reader::read_header(Cursor::new(bytes), bytes.len() as u64)
        .map_err(|e| MediaError::Decode(format!("not a readable MP4 file: {e}")))
}

fn track_of<'a>(r: &'a Mp4Reader<Cursor<&[u8]>>, kind: TrackType) -> Option<&'a Mp4Track> {
    let mut ids: Vec<_> = r.tracks().keys().copied().collect();
    ids.sort();
    ids.into_iter()
        .map(|id| &r.tracks()[&id])
        .find(|t| t.track_type().ok() == Some(kind))
}

/// The sample entry name of a track (`avc1`, `mp4a`, `Opus`, …).
fn codec_name(t: &Mp4Track) -> String {
    let stsd = &t.trak.mdia.minf.stbl.stsd;
    if stsd.avc1.is_some() {
        "avc1".into()
    } else if stsd.hev1.is_some() {
        "hev1".into()
    } else if stsd.vp09.is_some() {
        "vp09".into()
    } else if stsd.mp4a.is_some() {
        "mp4a".into()
    } else if t.track_type().ok() == Some(TrackType::Audio) {
        "Opus".into() // the only other audio entry we write; checked again via dOps on decode
    } else {
        "unknown".into()
    }
}

fn video_info(t: &Mp4Track) -> (usize, f64) {
    let n = t.sample_count() as usize;
    let secs = t.duration().as_secs_f64();
    (n, if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

/// Reads an MP4's headers: size, frame count, fps, duration and codecs.
pub fn probe_mp4(bytes: &[u8]) -> Result<Mp4Info> {
    let r = open(bytes)?;
    let v = track_of(&r, TrackType::Video)
        .ok_or_else(|| MediaError::Decode("MP4 has no video track".into()))?;
    let (num_frames, fps) = video_info(v);
    Ok(Mp4Info {
        width: v.width() as usize,
        height: v.height() as usize,
        num_frames,
        fps,
        duration_s: v.duration().as_secs_f64(),
        video_codec: codec_name(v),
        audio_codec: track_of(&r, TrackType::Audio).map(codec_name),
    })
}

/// Decodes every frame (and the first audio track) of an H.264 MP4.
pub fn decode_mp4(bytes: &[u8]) -> Result<DecodedMp4> {
    let mut r = open(bytes)?;
    let v = track_of(&r, TrackType::Video)
        .ok_or_else(|| MediaError::Decode("MP4 has no video track".into()))?;
    let avc = v.trak.mdia.minf.stbl.stsd.avc1.as_ref().ok_or_else(|| {
        MediaError::Unsupported(format!(
            "video codec {}: only H.264 (avc1) is decoded",
            codec_name(v)
        ))
    })?;
    let len_size = avc.avcc.length_size_minus_one as usize + 1;
    // Annex B parameter sets, sent before the first access unit.
    let mut header = Vec::new();
    for nal in avc
        .avcc
        .sequence_parameter_sets
        .iter()
        .chain(&avc.avcc.picture_parameter_sets)
    {
        header.extend_from_slice(&[0, 0, 0, 1]);
        header.extend_from_slice(&nal.bytes);
    }
    let (vid, (n, fps)) = (v.track_id(), video_info(v));
    let audio_track = track_of(&r, TrackType::Audio).map(|t| (t.track_id(), codec_name(t)));

    let err = |e: openh264::Error| MediaError::Decode(format!("H.264: {e}"));
    let mut dec = Decoder::new().map_err(err)?;
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(n);
    let (mut h, mut w) = (0usize, 0usize);
    let mut keep = |yuv: &openh264::decoder::DecodedYUV<'_>, frames: &mut Vec<Vec<u8>>| {
        let (fw, fh) = yuv.dimensions();
        (h, w) = (fh, fw);
        let mut rgb = vec![0u8; fw * fh * 3];
        yuv.write_rgb8(&mut rgb);
        frames.push(rgb);
    };
    for i in 1..=n as u32 {
        let s = r
            .read_sample(vid, i)
            .map_err(|e| MediaError::Decode(format!("video sample {i}: {e}")))?
            .ok_or_else(|| MediaError::Decode(format!("video sample {i} is missing")))?;
        let mut au = if i == 1 { header.clone() } else { Vec::new() };
        avcc_to_annexb(&s.bytes, len_size, &mut au)
            .map_err(|m| MediaError::Decode(format!("video sample {i}: {m}")))?;
        // No flush per frame: the decoder keeps its reorder buffer for B-frames.
        let no_flush = DecodeOptions::new().flush_after_decode(Flush::NoFlush);
        if let Some(yuv) = dec
            .decode_with_options(&au, no_flush)
            .map_err(|e| MediaError::Decode(format!("H.264 frame {i}: {e}")))?
        {
            keep(&yuv, &mut frames);
        }
    }
    for yuv in dec.flush_remaining().map_err(err)? {
        keep(&yuv, &mut frames);
    }
    if frames.is_empty() {
        return Err(MediaError::Decode(
            "video track decodes to zero frames".into(),
        ));
    }
    let t = frames.len();
    let frames = Frames::from_vec(frames.concat(), t, h, w)
        .ok_or_else(|| MediaError::Decode("frames change size mid-stream".into()))?;

    let audio = match audio_track {
        None => None,
        Some((id, codec)) if codec == "Opus" => Some(decode_opus_track(&mut r, id, bytes)?),
        Some(_) => Some(decode_audio(bytes, Some("mp4"))?),
    };
    let audio = audio.map(|mut a| {
        let keep = ((t as f64 / fps) * a.sample_rate as f64).round() as usize * a.channels as usize;
        if fps > 0.0 && a.samples.len() > keep {
            a.samples.truncate(keep);
        }
        a
    });
    Ok(DecodedMp4 { frames, fps, audio })
}

/// Rewrites length-prefixed (AVCC) NAL units as start-code-prefixed (Annex B) ones.
fn avcc_to_annexb(
    data: &[u8],
    len_size: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let mut p = 0;
    while p < data.len() {
        if p + len_size > data.len() {
            return Err("truncated NAL length".into());
        }
        let len = data[p..p + len_size]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | b as usize);
        p += len_size;
        if p + len > data.len() {
            return Err(format!("NAL of {len} bytes runs past the sample end"));
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&data[p..p + len]);
        p += len;
    }
    Ok(())
}

/// Decodes an Opus track using the channel count and pre-skip of its `dOps` box.
fn decode_opus_track(r: &mut Mp4Reader<Cursor<&[u8]>>, id: u32, bytes: &[u8]) -> Result<Audio> {
    let at = bytes.windows(4).position(|w| w == b"dOps").ok_or_else(|| {
        MediaError::Unsupported("audio track is neither AAC nor Opus (no dOps box)".into())
    })?;
    let d = bytes
        .get(at + 4..at + 8)
        .ok_or_else(|| MediaError::Decode("truncated dOps box".into()))?;
    let (channels, pre_skip) = (d[1] as u16, u16::from_be_bytes([d[2], d[3]]) as usize);
    let n = r
        .sample_count(id)
        .map_err(|e| MediaError::Decode(format!("audio track: {e}")))?;
    let mut packets = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let s = r
            .read_sample(id, i)
            .map_err(|e| MediaError::Decode(format!("audio sample {i}: {e}")))?
            .ok_or_else(|| MediaError::Decode(format!("audio sample {i} is missing")))?;
        packets.push(s.bytes.to_vec());
    }
    let a = opus_track::decode_packets(packets.iter().map(|p| p.as_slice()), channels, pre_skip)?;
    debug_assert_eq!(a.sample_rate, OPUS_RATE);
    Ok(a)
}
