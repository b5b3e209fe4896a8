//! Every generation mode is one mechanism: some tokens are given clean (timestep 0, no
//! loss), the rest are denoised. This module says which tokens each mode gives.
//!
//! Image → video is the one mode whose given part (a single frame) is smaller than a video
//! token (`patch_t` frames). The frame is held over a token's frames either way; under
//! `image_cond = "hold"` those held tokens replace the first token row, given clean, so
//! the clip's first `patch_t` frames stand still; under `"context"` they come as extra
//! clean tokens after the clip's (at the first row's positions, [`image_condition`]) and
//! every video token is generated.

use serde::{Deserialize, Serialize};

use crate::model::{ClipTokens, ImageCond, ModelConfig};

/// A generation / training mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// Text → video + audio (nothing given).
    TextToAv,
    /// The first frame is given; the rest of the video and all audio are generated (see
    /// the module doc for the model's two ways of taking the frame).
    ImageToVideo,
    /// The first `prefix_frames` frames (a multiple of `patch_t`) and their audio are
    /// given; the clip is continued.
    Extension {
        /// Given frames.
        prefix_frames: usize,
    },
    /// A character's reference tokens are given (always clean, no time position).
    Character,
    /// A source clip noised to `strength` ∈ (0, 1] is regenerated under a new prompt.
    Remix {
        /// How far into the noise the source goes (1 = ignore it entirely).
        strength: f64,
    },
    /// The audio is given; video is generated.
    AudioToVideo,
    /// The video is given; audio is generated.
    VideoToAudio,
}

/// Which video and audio tokens a mode gives clean: `(video flags, audio flags)`.
pub fn clean_tokens(cfg: &ModelConfig, mode: &Mode) -> Result<(Vec<bool>, Vec<bool>), String> {
    let (gt, gh, gw) = cfg.video_grid();
    let (nv, na) = (cfg.video_tokens(), cfg.audio_tokens());
    let prefix = |patches: usize| -> (Vec<bool>, Vec<bool>) {
        let video = (0..nv).map(|i| i / (gh * gw) < patches).collect();
        // audio tokens whose samples end inside the given frames
        let given_samples = (patches * cfg.patch_t) as f64 / cfg.fps * cfg.sample_rate as f64;
        let audio = (0..na)
            .map(|i| (((i + 1) * cfg.audio_patch) as f64) <= given_samples + 0.5)
            .collect();
        (video, audio)
    };
    Ok(match mode {
        Mode::TextToAv | Mode::Character => (vec![false; nv], vec![false; na]),
        Mode::Remix { strength } => {
            if !(*strength > 0.0 && *strength <= 1.0) {
                return Err(format!("remix strength must be in (0, 1], got {strength}"));
            }
            (vec![false; nv], vec![false; na])
        }
        Mode::ImageToVideo => match cfg.image_cond {
            ImageCond::Hold => (prefix(1).0, vec![false; na]),
            ImageCond::Context => (vec![false; nv], vec![false; na]),
        },
        Mode::Extension { prefix_frames } => {
            if *prefix_frames == 0
                || prefix_frames % cfg.patch_t != 0
                || *prefix_frames >= cfg.frames
            {
                return Err(format!(
                    "extension prefix_frames = {prefix_frames} must be a positive multiple of patch_t = {} below {} frames",
                    cfg.patch_t, cfg.frames
                ));
            }
            let _ = gt;
            prefix(prefix_frames / cfg.patch_t)
        }
        Mode::AudioToVideo => (vec![false; nv], vec![true; na]),
        Mode::VideoToAudio => (vec![true; nv], vec![false; na]),
    })
}

/// Readies one clip's given tokens for `mode`. Under `image_cond = "hold"` image → video
/// holds the first frame over the first token row in place ([`hold_first_frame`]) and
/// returns `None`; under `"context"` it returns the held row as the in-context image
/// tokens `[image_tokens × video_patch_dim]`, leaving `tokens` as they are. Other modes:
/// `None`.
pub fn image_condition(
    cfg: &ModelConfig,
    mode: &Mode,
    tokens: &mut ClipTokens,
) -> Option<Vec<f32>> {
    if *mode != Mode::ImageToVideo {
        return None;
    }
    match cfg.image_cond {
        ImageCond::Hold => {
            hold_first_frame(cfg, tokens);
            None
        }
        ImageCond::Context => {
            let mut held = ClipTokens {
                video: tokens.video[..cfg.image_tokens() * cfg.video_patch_dim()].to_vec(),
                audio: Vec::new(),
            };
            hold_first_frame(cfg, &mut held);
            Some(held.video)
        }
    }
}

/// In-context image tokens per example of a batch of `modes`: one row when any of them is
/// image → video under `image_cond = "context"` (every example then carries a row, see
/// [`push_image_row`]), else 0.
pub fn image_row_tokens<'a>(cfg: &ModelConfig, mut modes: impl Iterator<Item = &'a Mode>) -> usize {
    let context = cfg.image_cond == ImageCond::Context;
    if context && modes.any(|m| *m == Mode::ImageToVideo) {
        cfg.image_tokens()
    } else {
        0
    }
}

/// Appends one example's in-context image row to a batch's image values and its
/// token-mask entries (true = ignored): the held frame of [`image_condition`], or for an
/// example without one a zero row that no token attends to.
pub fn push_image_row(
    cfg: &ModelConfig,
    held: Option<&[f32]>,
    image: &mut Vec<f32>,
    ignore: &mut Vec<bool>,
) {
    let ni = cfg.image_tokens();
    ignore.extend(std::iter::repeat_n(held.is_none(), ni));
    match held {
        Some(h) => image.extend_from_slice(h),
        None => image.extend(std::iter::repeat_n(0.0, ni * cfg.video_patch_dim())),
    }
}

/// For image to video: copies frame 0 of each first-row video token over the token's other
/// `patch_t − 1` frames (the given image is held for one patch of time).
pub fn hold_first_frame(cfg: &ModelConfig, tokens: &mut ClipTokens) {
    let pd = cfg.video_patch_dim();
    let frame = pd / cfg.patch_t;
    for i in 0..cfg.image_tokens() {
        let tok = &mut tokens.video[i * pd..(i + 1) * pd];
        let (first, rest) = tok.split_at_mut(frame);
        for k in 0..cfg.patch_t - 1 {
            rest[k * frame..(k + 1) * frame].copy_from_slice(first);
        }
    }
}

/// The number of reference images every item of a batch carries, given each item's
/// reference-token length; an error when they differ (`what` names the items).
pub(crate) fn reference_count(
    cfg: &ModelConfig,
    lens: &[usize],
    what: &str,
) -> Result<usize, String> {
    let ref_len = cfg.ref_tokens() * cfg.ref_patch_dim();
    let refs = lens.first().map_or(0, |l| l / ref_len.max(1));
    if lens.iter().any(|&l| l != refs * ref_len) {
        return Err(format!(
            "every {what} of a batch must carry the same number of reference images"
        ));
    }
    Ok(refs)
}
