//! Why a clip could not be scored.

/// A clip that cannot be scored, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The clip has no frames.
    #[error("clip has no frames")]
    NoFrames,
    /// The audio does not cover the video.
    #[error("audio ({audio_s:.3} s) does not match the video ({video_s:.3} s)")]
    AudioLength {
        /// Audio duration, s.
        audio_s: f64,
        /// Video duration, s.
        video_s: f64,
    },
    /// Anything else about the input.
    #[error("{0}")]
    Invalid(String),
}

/// Checks the basics every metric relies on: frames present, audio as long as the video
/// (within one frame).
pub fn check_clip(clip: &sonora_framework::Clip) -> Result<(), EvalError> {
    if clip.frames.t == 0 || clip.frames.h == 0 || clip.frames.w == 0 {
        return Err(EvalError::NoFrames);
    }
    if clip.fps.is_nan() || clip.fps <= 0.0 {
        return Err(EvalError::Invalid(format!(
            "fps must be positive, got {}",
            clip.fps
        )));
    }
    let (audio_s, video_s) = (clip.audio.duration_s(), clip.duration_s());
    if (audio_s - video_s).abs() > 1.0 / clip.fps {
        return Err(EvalError::AudioLength { audio_s, video_s });
    }
    Ok(())
}
