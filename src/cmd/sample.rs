//! `sonora sample`: generate clips from a checkpoint to MP4.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sonora_framework::diffusion::{SamplerConfig, SamplerKind};
use sonora_framework::generate::Generator;
use sonora_framework::media::{Mp4Options, encode_mp4};

/// Arguments of `sonora sample`.
#[derive(Args)]
pub struct SampleArgs {
    /// Checkpoint directory (…/checkpoints/step-NNNNNN).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prompts, one clip each.
    #[arg(long, num_args = 1.., required = true)]
    pub prompt: Vec<String>,
    /// Output directory for `clip-K.mp4`.
    #[arg(long, default_value = "samples")]
    pub out: PathBuf,
    /// Sampler steps.
    #[arg(long, default_value_t = SamplerConfig::default().steps)]
    pub steps: usize,
    /// Text guidance scale (1 = none).
    #[arg(long, default_value_t = SamplerConfig::default().text_scale)]
    pub cfg: f64,
    /// Text guidance scale of the audio tokens (1 = none; higher scales make the
    /// spectrogram tokens loud noise on small models).
    #[arg(long, default_value_t = SamplerConfig::default().audio_scale)]
    pub audio_cfg: f64,
    /// Generate the sound a second time with the generated video given, so impacts follow
    /// the frames (twice the sampling time).
    #[arg(long)]
    pub audio_from_video: bool,
    /// `euler` or `heun`.
    #[arg(long, default_value = "euler", value_parser = parse_kind)]
    pub sampler: SamplerKind,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `sonora sample`: checks the request and the output directory first, then loads,
/// samples and writes.
pub fn run(a: SampleArgs) -> Result<()> {
    let sc = SamplerConfig {
        kind: a.sampler,
        steps: a.steps,
        text_scale: a.cfg,
        audio_scale: a.audio_cfg,
        audio_from_video: a.audio_from_video,
        seed: a.seed,
        ..SamplerConfig::default()
    };
    // the flag names for the sampler's field names
    sc.validate().map_err(|e| {
        let e = e
            .replacen("steps", "--steps", 1)
            .replacen("text_scale", "--cfg", 1)
            .replacen("audio_scale", "--audio-cfg", 1);
        anyhow::anyhow!("{e}")
    })?;
    // the prompt rule (refuse blank, warn on cut) needs the tokenizer; a blank prompt
    // is refused before anything is loaded
    if let Some(k) = a.prompt.iter().position(|p| p.trim().is_empty()) {
        anyhow::bail!(
            "--prompt #{}: the prompt is empty: describe the clip (the empty caption is the null prompt that guidance contrasts with)",
            k + 1
        );
    }
    // outputs are checked before the work: a file where the directory should be, or
    // clips that would be overwritten, stop here
    if a.out.exists() && !a.out.is_dir() {
        anyhow::bail!(
            "--out {}: exists and is not a directory (clips are written into it as clip-K.mp4)",
            a.out.display()
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let device = sonora_framework::device::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let (generator, _, used) = Generator::load(&a.checkpoint, &device)?;
    tracing::info!(
        "sampling with the {} weights of {}",
        match used {
            sonora_framework::checkpoint::WeightsUsed::Ema => "EMA",
            sonora_framework::checkpoint::WeightsUsed::Trained =>
                "trained (no EMA in the checkpoint)",
        },
        a.checkpoint.display()
    );
    let mut reqs = Vec::new();
    for (k, p) in a.prompt.iter().enumerate() {
        let r = generator
            .text(p)
            .with_context(|| format!("--prompt #{} {:?}", k + 1, short(p)))?;
        if let Some(d) = &r.dropped {
            tracing::warn!(
                "--prompt #{}: the model reads its first {} tokens; not read: {:?}",
                k + 1,
                generator.tokenizer().max_len(),
                short(d)
            );
        }
        reqs.push(r);
    }
    let clips = generator.generate(&sc, &reqs, &mut |k, n| {
        progress(k, n);
        true
    })?;
    for (k, clip) in clips.iter().enumerate() {
        let p = a.out.join(format!("clip-{k}.mp4"));
        std::fs::write(&p, encode_mp4(clip, &Mp4Options::default())?)
            .with_context(|| format!("writing {}", p.display()))?;
        println!("{}: {}", p.display(), a.prompt[k]);
    }
    Ok(())
}

/// `--sampler`: the sampler kind by the one parser the configs use.
fn parse_kind(s: &str) -> Result<SamplerKind, String> {
    SamplerKind::try_from(s.to_string())
}

/// The first 80 characters of `s`, with `…` when there is more.
fn short(s: &str) -> String {
    let mut t: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        t.push('…');
    }
    t
}

/// Sampler progress on stderr: one line redrawn on a terminal, a line every tenth of the
/// way (and at the end) otherwise, so piped logs stay one event per line.
fn progress(k: usize, n: usize) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\rstep {k}/{n}");
        if k == n {
            eprintln!();
        }
    } else if k == n || k.is_multiple_of((n / 10).max(1)) {
        eprintln!("step {k}/{n}");
    }
}
