//! Clip → MP4: H.264 (openh264) video and Opus audio, muxed by muxide with explicit
//! timestamps (frame `k` at `k/fps` s, audio packet `j` at `j·20` ms).

use muxide::api::{AudioCodec, MuxerBuilder, VideoCodec};
use openh264::OpenH264API;
use openh264::encoder::{
    Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode,
    UsageType,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use serde::{Deserialize, Serialize};

use super::opus_track::{self, FRAME, OPUS_RATE};
use super::{MediaError, Result, resample_audio};
use crate::clip::Clip;

/// How [`encode_mp4`] encodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mp4Options {
    /// Include the audio track (Opus, resampled to 48 kHz).
    pub audio: bool,
    /// H.264 quantiser for every frame (0–51, lower is better; 20 keeps small synthetic
    /// frames near 40 dB PSNR). Constant quality: no frame is ever skipped.
    pub qp: u8,
    /// Opus bitrate in kbit/s.
    pub audio_bitrate_kbps: u32,
    /// Frames between keyframes (IDR); 0 means only the first frame.
    pub keyframe_interval: u32,
}

impl Default for Mp4Options {
    fn default() -> Self {
        Self {
            audio: true,
            qp: 20,
            audio_bitrate_kbps: 96,
            keyframe_interval: 0,
        }
    }
}

/// Encodes `clip` to MP4 bytes (H.264 High-compatible baseline stream + Opus).
///
/// Width and height must be even (4:2:0 chroma). Audio of any rate is resampled to
/// 48 kHz; its first sample plays with the first frame.
pub fn encode_mp4(clip: &Clip, opts: &Mp4Options) -> Result<Vec<u8>> {
    let f = &clip.frames;
    if f.t == 0 {
        return Err(MediaError::Encode("clip has zero frames".into()));
    }
    if f.h == 0 || f.w == 0 || f.h % 2 == 1 || f.w % 2 == 1 {
        return Err(MediaError::Encode(format!(
            "H.264 4:2:0 needs a positive even width and height, got {}x{}",
            f.w, f.h
        )));
    }
    if !(clip.fps > 0.0 && clip.fps.is_finite()) {
        return Err(MediaError::Encode(format!(
            "fps must be positive, got {}",
            clip.fps
        )));
    }
    let video = encode_h264(clip, opts)?;
    let audio = if opts.audio {
        if clip.audio.num_frames() == 0 {
            return Err(MediaError::Encode(
                "audio track requested but the clip has no audio".into(),
            ));
        }
        let a48 = resample_audio(&clip.audio, OPUS_RATE)?;
        Some((
            opus_track::encode_packets(&a48, opts.audio_bitrate_kbps)?,
            a48.channels,
        ))
    } else {
        None
    };

    let err = |e: muxide::api::MuxerError| MediaError::Encode(format!("MP4 mux: {e}"));
    let mut builder =
        MuxerBuilder::new(Vec::new()).video(VideoCodec::H264, f.w as u32, f.h as u32, clip.fps);
    if let Some((_, ch)) = &audio {
        builder = builder.audio(AudioCodec::Opus, OPUS_RATE, *ch);
    }
    let mut mux = builder.build().map_err(err)?;
    // Interleave by time: video frame k at k/fps, audio packet j at j·FRAME/48000.
    let packets = audio.as_ref().map(|(p, _)| p.as_slice()).unwrap_or(&[]);
    let (mut k, mut j) = (0usize, 0usize);
    while k < video.len() || j < packets.len() {
        let tv = k as f64 / clip.fps;
        let ta = (j * FRAME) as f64 / OPUS_RATE as f64;
        if k < video.len() && (j >= packets.len() || tv <= ta) {
            let (data, key) = &video[k];
            mux.write_video(tv, data, *key).map_err(err)?;
            k += 1;
        } else {
            mux.write_audio(ta, &packets[j]).map_err(err)?;
            j += 1;
        }
    }
    mux.finish_in_place().map_err(err)?;
    Ok(mux.into_writer())
}

/// Encodes every frame to an Annex B access unit; returns `(bytes, is_keyframe)`.
fn encode_h264(clip: &Clip, opts: &Mp4Options) -> Result<Vec<(Vec<u8>, bool)>> {
    let f = &clip.frames;
    if opts.qp > 51 {
        return Err(MediaError::Encode(format!(
            "H.264 qp must be 0–51, got {}",
            opts.qp
        )));
    }
    let qp = opts.qp;
    let err = |e: openh264::Error| MediaError::Encode(format!("H.264: {e}"));
    let config = EncoderConfig::new()
        .skip_frames(false)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Off)
        .qp(QpRange::new(qp, qp))
        .max_frame_rate(FrameRate::from_hz(clip.fps as f32))
        .intra_frame_period(IntraFramePeriod::from_num_frames(opts.keyframe_interval))
        .num_threads(1);
    let mut enc = Encoder::with_api_config(OpenH264API::from_source(), config).map_err(err)?;
    let mut out = Vec::with_capacity(f.t);
    for k in 0..f.t {
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(f.frame(k), (f.w, f.h)));
        let bs = enc.encode(&yuv).map_err(err)?;
        let key = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
        let data = bs.to_vec();
        if data.is_empty() {
            return Err(MediaError::Encode(format!(
                "H.264 encoder produced no data for frame {k}"
            )));
        }
        out.push((data, key));
    }
    Ok(out)
}
