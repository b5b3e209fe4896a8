//! Turning a [`Clip`] into a schema row (MP4 + WAV bytes) and back, with the checks
//! that catch bad rows: zero frames, undecodable media, declared vs actual shape,
//! audio shorter than its video.

use sonora_framework::media::{self, Mp4Options};
use sonora_framework::{Clip, ClipMetadata};

use crate::error::DatasetError;
use crate::labels::PhysicsLabels;
use crate::schema::{ClipRecord, MediaBlob};

/// Encodes `clip` as a row of `split`: H.264 MP4 (video only) and 16-bit WAV.
pub fn record_from_clip(
    clip: &Clip,
    split: &str,
    physics: Option<PhysicsLabels>,
    video_opts: &Mp4Options,
) -> Result<ClipRecord, DatasetError> {
    let id = &clip.metadata.clip_id;
    let err = |message: String| DatasetError::Encode {
        clip_id: id.clone(),
        message,
    };
    if clip.frames.t == 0 {
        return Err(err("clip has zero frames".into()));
    }
    if clip.fps <= 0.0 || !clip.fps.is_finite() {
        return Err(err(format!("fps must be positive, got {}", clip.fps)));
    }
    let opts = Mp4Options {
        audio: false,
        ..video_opts.clone()
    };
    let video = media::encode_mp4(clip, &opts).map_err(|e| err(format!("video: {e}")))?;
    let audio = media::encode_wav(&clip.audio).map_err(|e| err(format!("audio: {e}")))?;
    Ok(ClipRecord {
        clip_id: id.clone(),
        split: split.to_string(),
        caption: clip.caption.clone(),
        video: MediaBlob {
            bytes: video,
            path: Some(format!("{id}.mp4")),
        },
        audio: MediaBlob {
            bytes: audio,
            path: Some(format!("{id}.wav")),
        },
        fps: clip.fps,
        num_frames: clip.frames.t as i32,
        width: clip.frames.w as i32,
        height: clip.frames.h as i32,
        duration_s: clip.duration_s(),
        audio_sample_rate: clip.audio.sample_rate as i32,
        audio_channels: clip.audio.channels as i32,
        audio_num_samples: clip.audio.num_frames() as i64,
        tags: clip.metadata.tags.clone(),
        character_ids: clip.metadata.character_ids.clone(),
        source_path: clip.metadata.source_path.clone(),
        source_start_s: clip.metadata.source_start_s,
        physics,
    })
}

/// Decodes a row's media into a [`Clip`], checking it against its declared metadata.
///
/// The error string says what is wrong; callers add the row's location.
pub fn decode_record(rec: &ClipRecord) -> Result<Clip, String> {
    if rec.num_frames <= 0 {
        return Err(format!(
            "declares {} frames: zero-frame clips are not allowed",
            rec.num_frames
        ));
    }
    if rec.video.bytes.is_empty() {
        return Err("video bytes are empty".into());
    }
    let decoded = media::decode_mp4(&rec.video.bytes).map_err(|e| format!("video: {e}"))?;
    let f = decoded.frames;
    if f.t == 0 {
        return Err("video decodes to zero frames".into());
    }
    if f.t != rec.num_frames as usize {
        return Err(format!(
            "declares {} frames but the video has {}",
            rec.num_frames, f.t
        ));
    }
    if (f.w, f.h) != (rec.width as usize, rec.height as usize) {
        return Err(format!(
            "declares {}x{} but the video is {}x{}",
            rec.width, rec.height, f.w, f.h
        ));
    }
    let audio = media::decode_wav(&rec.audio.bytes).map_err(|e| format!("audio: {e}"))?;
    if audio.sample_rate as i32 != rec.audio_sample_rate {
        return Err(format!(
            "declares audio at {} Hz but the WAV is {} Hz",
            rec.audio_sample_rate, audio.sample_rate
        ));
    }
    let fps = if rec.fps > 0.0 { rec.fps } else { decoded.fps };
    let video_s = f.t as f64 / fps;
    let audio_s = audio.duration_s();
    if audio_s + 0.5 / fps < video_s {
        return Err(format!(
            "audio ({audio_s:.3} s) is shorter than its video ({video_s:.3} s)"
        ));
    }
    Ok(Clip {
        frames: f,
        audio,
        fps,
        caption: rec.caption.clone(),
        metadata: ClipMetadata {
            clip_id: rec.clip_id.clone(),
            tags: rec.tags.clone(),
            character_ids: rec.character_ids.clone(),
            source_path: rec.source_path.clone(),
            source_start_s: rec.source_start_s,
            extra: Default::default(),
        },
    })
}
