//! `configs/serve/*.toml`: the server's limits, quotas, workers and sampler settings.

use std::path::Path;

use serde::Deserialize;
use sonora_framework::diffusion::SamplerConfig;

/// The server's settings. Every key is honoured; an unknown key is refused.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on (`--addr` overrides it).
    pub addr: String,
    /// Worker threads, each running one sampler batch at a time.
    pub workers: usize,
    /// Most compatible queued jobs (same mode, length and strength) sampled in one call.
    pub batch: usize,
    /// Most queued jobs over all users; a create beyond it answers 429 with `Retry-After`.
    pub max_queue: usize,
    /// Largest request body (uploads included), in bytes.
    pub max_body_bytes: usize,
    /// Seconds a request may take before it answers 408 (generation runs in jobs, not
    /// in requests).
    pub request_timeout_s: f64,
    /// Seconds a worker's claim on a job lasts without a heartbeat; a job whose worker
    /// died is claimed again after it.
    pub lease_s: f64,
    /// Claims a job gets; a job whose worker died this many times fails with the reason.
    pub max_tries: u32,
    /// Longest prompt, in characters.
    pub max_prompt_chars: usize,
    /// Longest clip a request may ask for, in seconds (longer than the model's native clip
    /// is made by chained extension).
    pub max_seconds: f64,
    /// Remix and edit strength when a request does not give one: how far the source is
    /// re-noised (0 keeps it, 1 is a new clip).
    pub remix_strength: f64,
    /// Frames of the previous segment each chained extension is conditioned on; `None`
    /// is half the model's clip (rounded down to whole temporal patches).
    pub extension_prefix_frames: Option<usize>,
    /// The poll interval the server suggests to clients (`openai-poll-after-ms`).
    pub poll_after_ms: u64,
    /// Seconds between a worker's looks at an empty queue (new jobs also wake it).
    pub idle_poll_s: f64,
    /// Downloads of videos without characters carry sonora's visible mark (videos with a
    /// character always do, but see `clean_own_character_downloads`).
    pub watermark: bool,
    /// A video whose characters all belong to the downloader may be downloaded without
    /// the mark.
    pub clean_own_character_downloads: bool,
    /// Reference images a character keeps (frames sampled from its video).
    pub references_per_character: usize,
    /// Most reference images one request may cast (over all its characters).
    pub max_references: usize,
    /// Sampler settings for every job (the same type the recipes and suites use).
    pub sampler: SamplerConfig,
    /// Per-user limits.
    pub quota: Quota,
}

/// Per-user limits; a request beyond one answers 429 naming it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// Jobs a user may have queued or running at once.
    pub concurrent: usize,
    /// Jobs a user may create in any hour.
    pub per_hour: usize,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            concurrent: 16,
            per_hour: 600,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8000".into(),
            workers: 1,
            batch: 4,
            max_queue: 256,
            max_body_bytes: 32 << 20,
            request_timeout_s: 30.0,
            lease_s: 60.0,
            max_tries: 3,
            max_prompt_chars: 4000,
            max_seconds: 16.0,
            remix_strength: 0.7,
            extension_prefix_frames: None,
            poll_after_ms: 500,
            idle_poll_s: 0.5,
            watermark: true,
            clean_own_character_downloads: false,
            references_per_character: 2,
            max_references: 4,
            sampler: SamplerConfig {
                steps: 24,
                text_scale: 3.0,
                ..SamplerConfig::default()
            },
            quota: Quota::default(),
        }
    }
}

impl ServeConfig {
    /// Loads `path` (or the defaults) with `--set key=value` overrides, then checks it.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> anyhow::Result<Self> {
        let c: Self = sonora_framework::config::load_layered(path, overrides)?;
        let name = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<defaults>".into());
        c.validate().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        Ok(c)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("workers", self.workers),
            ("batch", self.batch),
            ("max_queue", self.max_queue),
            ("max_body_bytes", self.max_body_bytes),
            ("max_prompt_chars", self.max_prompt_chars),
            ("quota.concurrent", self.quota.concurrent),
            ("quota.per_hour", self.quota.per_hour),
            ("references_per_character", self.references_per_character),
            ("max_references", self.max_references),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("{k} must be at least 1"));
            }
        }
        for (k, v) in [
            ("request_timeout_s", self.request_timeout_s),
            ("lease_s", self.lease_s),
            ("max_seconds", self.max_seconds),
            ("idle_poll_s", self.idle_poll_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{k} must be a positive number of seconds, got {v}"));
            }
        }
        if self.max_tries == 0 {
            return Err("max_tries must be at least 1".into());
        }
        if !(self.remix_strength > 0.0 && self.remix_strength <= 1.0) {
            return Err(format!(
                "remix_strength must be in (0, 1], got {}",
                self.remix_strength
            ));
        }
        self.sampler
            .validate()
            .map_err(|e| format!("sampler.{e}"))?;
        if self.sampler.seed != 0 {
            return Err(
                "sampler.seed is not used by the server: every job has its own seed (the request's `seed`, else a random one); remove it"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn shipped(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/serve")
            .join(name)
    }

    #[test]
    fn the_shipped_configs_load_and_default_toml_is_the_defaults() {
        assert_eq!(
            ServeConfig::load(Some(&shipped("default.toml")), &[]).unwrap(),
            ServeConfig::default()
        );
        let q = ServeConfig::load(Some(&shipped("quickstart.toml")), &[]).unwrap();
        assert_eq!((q.sampler.steps, q.sampler.text_scale), (16, 1.5));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let bad = |set: &str, needle: &str| {
            let e = ServeConfig::load(None, &[set.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{set}: {e}");
        };
        bad("batch=0", "batch must be at least 1");
        bad("remix_strength=1.5", "remix_strength");
        bad("lease_s=-1", "lease_s");
        bad("sampler.seed=3", "sampler.seed is not used");
        bad("sampler.steps=0", "sampler.steps");
        bad("colour=red", "colour");
    }
}
