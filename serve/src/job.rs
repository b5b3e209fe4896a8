//! What a job generates ([`JobSpec`]) and how it is cut into sampler calls
//! ([`segments`]): a clip longer than the model's is made by chained extension, each
//! segment conditioned on the tail of what came before; a remix of a longer clip remixes
//! it window by window.

use serde::{Deserialize, Serialize};
use sonora_framework::model::ModelConfig;

/// The clip a remix, edit or extension starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A completed video of the same user, by id.
    Video(String),
    /// An uploaded MP4, stored under the state directory (`uploads/…`).
    Upload(String),
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Kind {
    /// Text → clip with sound.
    Text,
    /// Image → clip: the stored PNG (`uploads/…`) becomes the first frame.
    Image {
        /// The upload's path under the state directory.
        image: String,
    },
    /// The source re-noised to `strength` and regenerated under the prompt (remix, edit).
    Remix {
        /// The clip to remix.
        source: Source,
        /// Noise level it is re-noised to, in (0, 1].
        strength: f64,
    },
    /// The source continued; the output is the source and the continuation stitched.
    Extension {
        /// The clip to continue.
        source: Source,
    },
}

/// A job: its kind, its noise seed and the frames it outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// What to generate.
    pub kind: Kind,
    /// Noise seed (segment `k` draws from `seed + k · SEGMENT_SEED`).
    pub seed: u64,
    /// Frames of the output clip.
    pub frames: usize,
    /// Frames of the source clip (remix, edit, extension), 0 otherwise.
    pub source_frames: usize,
    /// Characters cast (ids), their references given to every segment.
    #[serde(default)]
    pub characters: Vec<String>,
    /// Reference images over all the characters cast.
    #[serde(default)]
    pub references: usize,
    /// The route that made it from another video: `remix`, `edit`, `extension`; empty
    /// for a new clip (recorded in the file's provenance).
    #[serde(default)]
    pub derived: String,
}

/// Offset between segments' noise seeds.
pub const SEGMENT_SEED: u64 = 0x9E37_79B9;

/// One sampler call of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// The first clip from text (or a first frame): frames `0..F`.
    Fresh,
    /// A continuation conditioned on the last `prefix` frames so far.
    Continue,
    /// The source's frames `start..start + F` remixed.
    Window {
        /// First source frame of the window.
        start: usize,
    },
}

/// Frames each chained extension is conditioned on: `configured`, or half the model's
/// clip, rounded down to whole temporal patches (at least one patch).
pub fn prefix_frames(cfg: &ModelConfig, configured: Option<usize>) -> Result<usize, String> {
    let p = configured.unwrap_or((cfg.frames / 2 / cfg.patch_t).max(1) * cfg.patch_t);
    if p == 0 || !p.is_multiple_of(cfg.patch_t) || p >= cfg.frames {
        return Err(format!(
            "extension_prefix_frames must be a positive multiple of {} below {}, got {p}",
            cfg.patch_t, cfg.frames
        ));
    }
    Ok(p)
}

/// The sampler calls that make `spec` on a model of `cfg` with extension prefix `p`.
pub fn segments(spec: &JobSpec, cfg: &ModelConfig, p: usize) -> Vec<Segment> {
    let f = cfg.frames;
    let step = f - p;
    let continues = |have: usize, want: usize| want.saturating_sub(have).div_ceil(step);
    match &spec.kind {
        Kind::Text | Kind::Image { .. } => {
            let mut s = vec![Segment::Fresh];
            s.extend(std::iter::repeat_n(
                Segment::Continue,
                continues(f, spec.frames),
            ));
            s
        }
        Kind::Extension { .. } => std::iter::repeat_n(
            Segment::Continue,
            continues(spec.source_frames, spec.frames),
        )
        .collect(),
        Kind::Remix { .. } => {
            let n = spec.source_frames.div_ceil(f);
            (0..n)
                .map(|k| Segment::Window {
                    start: (k * f).min(spec.source_frames.saturating_sub(f)),
                })
                .collect()
        }
    }
}

/// The key that lets jobs share sampler calls: the same number of segments, the same
/// number of reference images, and (for remixes) the same strength; every segment of
/// such jobs can run in one batch.
pub fn batch_key(spec: &JobSpec, cfg: &ModelConfig, p: usize) -> String {
    let n = segments(spec, cfg, p).len();
    let r = spec.references;
    match &spec.kind {
        Kind::Remix { strength, .. } => format!("remix:{strength}:{n}:r{r}"),
        _ => format!("gen:{n}:r{r}"),
    }
}

/// `frames` at `fps` as the API writes seconds: `"4"`, or `"2.5"`.
pub fn seconds_label(frames: usize, fps: f64) -> String {
    let s = frames as f64 / fps;
    if (s - s.round()).abs() < 1e-9 {
        format!("{}", s.round() as u64)
    } else {
        let t = format!("{s:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Parses a `seconds` value into whole frames at `fps`, within `(0, max]` seconds.
pub fn parse_seconds(s: &str, fps: f64, max: f64) -> Result<usize, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("seconds must be a number of seconds, got {s:?}"))?;
    if !(v.is_finite() && v > 0.0 && v <= max) {
        return Err(format!(
            "seconds must be above 0 and at most {max}, got {s:?}"
        ));
    }
    let frames = v * fps;
    if (frames - frames.round()).abs() > 1e-6 {
        return Err(format!(
            "seconds must be a whole number of frames at {fps} fps, got {s:?}"
        ));
    }
    Ok(frames.round() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quickstart model: 16 frames at 8 fps, temporal patches of 4.
    fn cfg() -> ModelConfig {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/model/quickstart.toml");
        let c = ModelConfig::from_file(&p).unwrap();
        assert_eq!((c.frames, c.patch_t, c.fps), (16, 4, 8.0));
        c
    }

    fn spec(kind: Kind, frames: usize, source_frames: usize) -> JobSpec {
        JobSpec {
            kind,
            seed: 0,
            frames,
            source_frames,
            characters: Vec::new(),
            references: 0,
            derived: String::new(),
        }
    }

    #[test]
    fn a_longer_clip_is_chained_extensions_of_the_free_frames() {
        let c = cfg();
        let p = prefix_frames(&c, None).unwrap();
        assert_eq!(p, 8);
        // 2 s native, 4 s asked: 16 frames, then 8 new frames per continuation
        let s = segments(&spec(Kind::Text, 32, 0), &c, p);
        assert_eq!(
            s,
            vec![Segment::Fresh, Segment::Continue, Segment::Continue]
        );
        // a shorter clip is one segment, trimmed
        assert_eq!(segments(&spec(Kind::Text, 8, 0), &c, p).len(), 1);
        // 20 frames: one continuation of 8, trimmed to 4
        assert_eq!(segments(&spec(Kind::Text, 20, 0), &c, p).len(), 2);
        let ext = Kind::Extension {
            source: Source::Video("v".into()),
        };
        assert_eq!(segments(&spec(ext, 16 + 16, 16), &c, p).len(), 2);
    }

    #[test]
    fn a_remix_covers_the_source_in_windows_the_last_one_ending_at_its_end() {
        let c = cfg();
        let k = Kind::Remix {
            source: Source::Video("v".into()),
            strength: 0.5,
        };
        let s = segments(&spec(k, 40, 40), &c, 8);
        assert_eq!(
            s,
            vec![
                Segment::Window { start: 0 },
                Segment::Window { start: 16 },
                Segment::Window { start: 24 }
            ]
        );
    }

    #[test]
    fn seconds_are_whole_frames_within_the_limit() {
        assert_eq!(parse_seconds("4", 8.0, 16.0), Ok(32));
        assert_eq!(parse_seconds("0.5", 8.0, 16.0), Ok(4));
        assert!(
            parse_seconds("0.3", 8.0, 16.0)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            parse_seconds("20", 8.0, 16.0)
                .unwrap_err()
                .contains("at most 16")
        );
        assert!(parse_seconds("four", 8.0, 16.0).is_err());
        assert!(parse_seconds("-1", 8.0, 16.0).is_err());
        assert_eq!(seconds_label(32, 8.0), "4");
        assert_eq!(seconds_label(20, 8.0), "2.5");
    }
}
