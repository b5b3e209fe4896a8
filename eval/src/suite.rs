//! Evaluation suites (`configs/eval/*.toml`): which held-out scenes to prompt with, in which
//! modes, which metrics to score, and the sampler settings. Loaded with the layered config
//! loader (file, `SONORA_…`, `--set`); unknown keys and unknown metrics are errors.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sonora_datasets::loader::transform::CropMode;

use sonora_framework::diffusion::SamplerConfig;

use crate::metric::lookup;

/// A whole suite file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuiteFile {
    /// What to evaluate.
    pub suite: Suite,
    /// How to sample: the sampler settings type the recipes, the CLI and the server use
    /// (case k draws its noise from the stream `seed + k`; `ref_scale` guides character
    /// cases).
    pub sampler: SamplerConfig,
}

/// `[suite]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Suite {
    /// Suite name (used in report paths and dashboards).
    pub name: String,
    /// Dataset whose held-out clips give the prompts, first frames, prefixes, references and
    /// (for synthetic clips) the scene each prompt describes.
    pub data: PathBuf,
    /// Split to draw cases from.
    pub split: String,
    /// Scenes to use (the first N of the split).
    pub clips: usize,
    /// Case kinds: `text` (caption → clip), `image` (first frame given), `extension` (first
    /// half given), `remix` (the clip re-noised to `remix_strength` and regenerated),
    /// `character` (the scene's character's reference images cast).
    pub modes: Vec<String>,
    /// Metrics to report (`suite.metric` names from `sonora eval metrics`); empty = all.
    pub metrics: Vec<String>,
    /// Reference images per character case.
    pub references: usize,
    /// Which part of a longer clip the model's window covers: `start` or `center` — the
    /// same as the training loader's `temporal_crop`, so prompts and scenes line up.
    pub window: CropMode,
    /// How much of a remix case is regenerated (0 = the source, 1 = from pure noise).
    pub remix_strength: f64,
    /// Cases sampled together.
    pub batch: usize,
}

impl Default for Suite {
    fn default() -> Self {
        Self {
            name: "physics".into(),
            data: "data/quickstart".into(),
            split: "test".into(),
            clips: 8,
            modes: vec!["text".into()],
            metrics: Vec::new(),
            references: 1,
            window: CropMode::Center,
            remix_strength: 0.6,
            batch: 4,
        }
    }
}

/// One kind of case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum CaseMode {
    /// Caption → clip.
    Text,
    /// First frame given.
    Image,
    /// First half given, continued.
    Extension,
    /// The whole clip given, partly re-noised and regenerated.
    Remix,
    /// The scene's character's references cast.
    Character,
    /// The video given, its sound track generated (video → audio): how well the sound
    /// lands on the visible contacts.
    Sound,
}

impl CaseMode {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Extension => "extension",
            Self::Remix => "remix",
            Self::Character => "character",
            Self::Sound => "sound",
        }
    }
}

impl std::str::FromStr for CaseMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "extension" => Self::Extension,
            "remix" => Self::Remix,
            "character" => Self::Character,
            "sound" => Self::Sound,
            o => {
                return Err(format!(
                    "suite.modes: unknown mode `{o}`; expected text, image, extension, remix, character or sound"
                ));
            }
        })
    }
}

impl SuiteFile {
    /// Loads a suite with environment and `--set` overrides and checks it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, String> {
        let f: Self = sonora_framework::config::load_layered(Some(path), overrides)
            .map_err(|e| e.to_string())?;
        f.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(f)
    }

    /// Range checks, unknown modes and unknown metrics.
    pub fn check(&self) -> Result<(), String> {
        self.modes()?;
        for m in &self.suite.metrics {
            lookup(m).map_err(|e| format!("suite.metrics: {e}"))?;
        }
        if !(0.0..=1.0).contains(&self.suite.remix_strength) {
            return Err(format!(
                "suite.remix_strength must be in [0, 1], got {}",
                self.suite.remix_strength
            ));
        }
        if self.suite.clips == 0 {
            return Err("suite.clips must be at least 1".into());
        }
        if self.suite.batch == 0 {
            return Err("suite.batch must be at least 1".into());
        }
        self.sampler
            .validate()
            .map_err(|e| format!("sampler.{e}"))?;
        Ok(())
    }

    /// The case kinds.
    pub fn modes(&self) -> Result<Vec<CaseMode>, String> {
        if self.suite.modes.is_empty() {
            return Err("suite.modes is empty".into());
        }
        self.suite.modes.iter().map(|m| m.parse()).collect()
    }

    /// Whether `metric` is reported.
    pub fn wants(&self, metric: &str) -> bool {
        self.suite.metrics.is_empty() || self.suite.metrics.iter().any(|m| m == metric)
    }
}

sonora_framework::config_enum!(CaseMode {
    "text" => CaseMode::Text,
    "image" => CaseMode::Image,
    "extension" => CaseMode::Extension,
    "remix" => CaseMode::Remix,
    "character" => CaseMode::Character,
    "sound" => CaseMode::Sound,
});
