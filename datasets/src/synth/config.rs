//! `[synth]` settings of a data config, their defaults and validation.

use serde::{Deserialize, Serialize};

/// Which split a clip belongs to. Each split draws from its own seed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Training clips.
    Train,
    /// Validation clips.
    Val,
    /// Held-out test clips.
    Test,
}

impl Split {
    /// All splits in the order datasets are written.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's name as stored in the `split` column: `"train"`, `"val"` or `"test"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// A fixed 64-bit tag mixed into every seed of this split (disjoint streams).
    pub(crate) fn tag(self) -> u64 {
        match self {
            Split::Train => 0x7472_6169_6e5f_7331, // "train_s1"
            Split::Val => 0x7661_6c5f_5f5f_7332,   // "val___s2"
            Split::Test => 0x7465_7374_5f5f_7333,  // "test__s3"
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = SynthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(SynthError::Config(format!(
                "unknown split {other:?} (expected train, val or test)"
            ))),
        }
    }
}

/// Errors of the synthetic world.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A `[synth]` setting is out of range; the message names the key.
    #[error("invalid synth config: {0}")]
    Config(String),
    /// A clip could not be generated (the message says why).
    #[error("synthetic clip {clip_id}: {message}")]
    Generate {
        /// The clip being generated (`synth-train-000042`).
        clip_id: String,
        /// What went wrong.
        message: String,
    },
}

/// The `[synth]` section of a data config: the size of each split, the clip format, and
/// the knobs of the physics world.
///
/// Lengths are in pixels of the configured frame (x right, y down), times in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// World seed; every clip is a pure function of `(seed, split, index)`.
    pub seed: u64,
    /// Number of training clips (must be at least 1).
    pub train: u64,
    /// Number of validation clips (may be 0).
    pub val: u64,
    /// Number of test clips (may be 0).
    pub test: u64,
    /// Frame width in pixels (even, H.264 needs even sizes).
    pub width: usize,
    /// Frame height in pixels (even).
    pub height: usize,
    /// Frames per second.
    pub fps: f64,
    /// Clip duration in seconds; frames `T = round(duration_s * fps)`.
    pub duration_s: f64,
    /// Audio sample rate in Hz (mono).
    pub sample_rate: u32,
    /// Fewest objects per scene.
    pub min_objects: usize,
    /// Most objects per scene.
    pub max_objects: usize,
    /// Smallest object radius as a fraction of the frame height (radii are at least 1 px).
    pub min_size_frac: f64,
    /// Largest object radius as a fraction of the frame height.
    pub max_size_frac: f64,
    /// Probability that a scene has an occluding panel.
    pub occluder_prob: f64,
    /// Probability that each object is a named roster character.
    pub character_prob: f64,
    /// Downward acceleration in px/s² at the configured frame size. The default (240)
    /// suits a 64 px high frame; scale it with `height` to keep the same look.
    pub gravity: f64,
    /// Relative per-clip variation of gravity: each clip draws `gravity * (1 ± jitter)`.
    pub gravity_jitter: f64,
    /// RMS level of the background room tone, dBFS.
    pub ambience_db: f64,
    /// Peak level of an impact at the reference speed (a drop from most of the frame
    /// height), dBFS; slower impacts are quieter.
    pub impact_db: f64,
    /// Draw the walls' and floors' material patterns (planks, bricks, panels, streaks).
    /// `false` paints each surface in its material's colour with only the light falloff:
    /// the material still sets the colour, the caption and the impact sound, and a small
    /// model spends its capacity on the objects (the quickstart world).
    pub room_patterns: bool,
    /// Lowest starting height of an object's centre, as a fraction of the frame height
    /// from the top: objects start between just under the ceiling and this (and always
    /// above the floor). Smaller values mean longer falls.
    pub start_max_frac: f64,
    /// Largest horizontal starting speed, as a fraction of the frame width per second:
    /// each object starts with `vx` uniform in `±drift_frac × width`. `0` drops objects
    /// straight down; the default sends them across the room and off the side walls.
    pub drift_frac: f64,
    /// Width of the band, centred in the frame, that objects start in, as a fraction of
    /// the room's usable width: `1` anywhere between the walls, `0.4` the middle 40%.
    pub start_spread: f64,
    /// Give plain objects surface textures (stripes, dots, checks). `false` paints every
    /// plain object in its flat colour (roster characters keep their patterns).
    pub textures: bool,
    /// Name each object's starting side in its caption ("a red ball on the left …"), so
    /// the text says where the object is, not only what it is.
    pub caption_start: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            train: 256,
            val: 32,
            test: 32,
            width: 64,
            height: 64,
            fps: 8.0,
            duration_s: 4.0,
            sample_rate: 16_000,
            min_objects: 1,
            max_objects: 3,
            min_size_frac: 0.06,
            max_size_frac: 0.13,
            occluder_prob: 0.3,
            character_prob: 0.15,
            gravity: 240.0,
            gravity_jitter: 0.2,
            ambience_db: -50.0,
            impact_db: -6.0,
            room_patterns: true,
            start_max_frac: 0.55,
            drift_frac: 0.45,
            start_spread: 1.0,
            textures: true,
            caption_start: false,
        }
    }
}

/// Most objects a scene may hold.
pub const MAX_OBJECTS: usize = 8;

impl SynthConfig {
    /// Checks every setting; the error names the offending key and its value.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        for (key, v) in [("width", self.width), ("height", self.height)] {
            if v < 16 || v % 2 != 0 || v > 4096 {
                return bad(format!(
                    "synth.{key} must be an even number >= 16 (and <= 4096), got {v}"
                ));
            }
        }
        if self.train == 0 {
            return bad("synth.train must be at least 1 (val and test may be 0)".into());
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 240.0) {
            return bad(format!("synth.fps must be in (0, 240], got {}", self.fps));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 600.0) {
            return bad(format!(
                "synth.duration_s must be in (0, 600] seconds, got {}",
                self.duration_s
            ));
        }
        if self.num_frames() == 0 {
            return bad(format!(
                "synth.duration_s * synth.fps must give at least one frame, got {} s at {} fps",
                self.duration_s, self.fps
            ));
        }
        // each clip in flight holds its RGB frames about three times over (rendered,
        // converted for the encoder, encoded), one clip per worker thread
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u128;
        let clip = self.num_frames() as u128 * self.width as u128 * self.height as u128 * 3;
        sonora_framework::budget::check(
            &format!(
                "synthesising {}×{} clips of {} s at {} fps ({} frames each, {threads} at a time)",
                self.width,
                self.height,
                self.duration_s,
                self.fps,
                self.num_frames()
            ),
            3 * clip * threads,
            "synth.width, synth.height, synth.duration_s or synth.fps",
        )
        .map_err(SynthError::Config)?;
        if !(8_000..=192_000).contains(&self.sample_rate) {
            return bad(format!(
                "synth.sample_rate must be in [8000, 192000] Hz, got {}",
                self.sample_rate
            ));
        }
        if self.min_objects == 0 {
            return bad("synth.min_objects must be at least 1".into());
        }
        if self.max_objects < self.min_objects || self.max_objects > MAX_OBJECTS {
            return bad(format!(
                "synth.max_objects must be in [synth.min_objects = {}, {MAX_OBJECTS}], got {}",
                self.min_objects, self.max_objects
            ));
        }
        let frac_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 0.25;
        if !frac_ok(self.min_size_frac)
            || !frac_ok(self.max_size_frac)
            || self.min_size_frac > self.max_size_frac
        {
            return bad(format!(
                "synth.min_size_frac and synth.max_size_frac must satisfy 0 < min <= max <= 0.25, got {} and {}",
                self.min_size_frac, self.max_size_frac
            ));
        }
        if self.min_size_frac * self.height as f64 * 2.0 < 1.0 {
            return bad(format!(
                "synth.min_size_frac = {} makes objects smaller than 1 px across at height {}",
                self.min_size_frac, self.height
            ));
        }
        for (key, p) in [
            ("occluder_prob", self.occluder_prob),
            ("character_prob", self.character_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!(
                    "synth.{key} must be a probability in [0, 1], got {p}"
                ));
            }
        }
        if !(self.start_max_frac.is_finite()
            && self.start_max_frac > 0.0
            && self.start_max_frac <= 1.0)
        {
            return bad(format!(
                "synth.start_max_frac must be in (0, 1] (a fraction of the height from the top), got {}",
                self.start_max_frac
            ));
        }
        if !(self.drift_frac.is_finite() && (0.0..=2.0).contains(&self.drift_frac)) {
            return bad(format!(
                "synth.drift_frac must be in [0, 2] (a fraction of the width per second), got {}",
                self.drift_frac
            ));
        }
        if !(self.start_spread.is_finite() && self.start_spread > 0.0 && self.start_spread <= 1.0) {
            return bad(format!(
                "synth.start_spread must be in (0, 1] (a fraction of the width), got {}",
                self.start_spread
            ));
        }
        if !(self.gravity.is_finite() && self.gravity > 0.0) {
            return bad(format!(
                "synth.gravity must be positive (px/s²), got {}",
                self.gravity
            ));
        }
        if !(0.0..0.9).contains(&self.gravity_jitter) {
            return bad(format!(
                "synth.gravity_jitter must be in [0, 0.9), got {}",
                self.gravity_jitter
            ));
        }
        if !(self.ambience_db.is_finite() && self.ambience_db <= 0.0) {
            return bad(format!(
                "synth.ambience_db must be a level <= 0 dBFS, got {}",
                self.ambience_db
            ));
        }
        if !(self.impact_db.is_finite() && self.impact_db <= 0.0 && self.impact_db >= -60.0) {
            return bad(format!(
                "synth.impact_db must be in [-60, 0] dBFS, got {}",
                self.impact_db
            ));
        }
        Ok(())
    }

    /// Number of clips in `split`.
    pub fn count(&self, split: Split) -> u64 {
        match split {
            Split::Train => self.train,
            Split::Val => self.val,
            Split::Test => self.test,
        }
    }

    /// Frames per clip, `round(duration_s * fps)`.
    pub fn num_frames(&self) -> usize {
        (self.duration_s * self.fps).round().max(0.0) as usize
    }

    /// Audio samples per clip, `round(duration_s * sample_rate)`.
    pub fn num_samples(&self) -> usize {
        (self.duration_s * self.sample_rate as f64).round().max(0.0) as usize
    }
}
