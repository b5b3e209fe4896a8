//! Generation as a library: one entry point from a prompt (and what is given with it) to
//! clips, shared by `sonora sample`, the recipes' samples, the eval runner and the server.
//!
//! A [`Generator`] holds the model, its tokenizer and its codec. A request is built by one
//! constructor per mode ([`Generator::text`], [`Generator::image`],
//! [`Generator::extension`], [`Generator::remix`], [`Generator::video_to_audio`],
//! [`Generator::character`]), each applying the one prompt rule
//! ([`CaptionTokenizer::encode_prompt`]) and checking what it is given against the model's
//! shape. [`Generator::generate`] runs one sampler call over requests that may share it
//! ([`batches`]: same reference count and remix strength) with a progress callback
//! that can cancel, and decodes clips. Errors say whose fault they are
//! ([`GenerateError::BadRequest`] against [`GenerateError::Internal`]).

use std::ops::Range;
use std::path::Path;

use burn::prelude::*;

use crate::checkpoint::{Manifest, WeightsUsed, load_for_inference};
use crate::diffusion::{Mode, SampleRequest, SamplerConfig, sample_cancellable};
use crate::media::resize_rgb;
use crate::model::{Autoencoder, CaptionTokenizer, ClipTokens, ModelConfig, PatchCodec, SonoraDit};
use crate::{Audio, Clip, ClipMetadata, Frames};

/// Why generation did not produce clips.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The request cannot be served as asked (a 4xx for a server): an empty prompt, a
    /// given clip of the wrong shape, sampler settings out of range, an unbatchable mix.
    #[error("{0}")]
    BadRequest(String),
    /// The progress callback stopped the run.
    #[error("generation cancelled")]
    Cancelled,
    /// The generator failed (a 5xx): a checkpoint that will not load, a sampler error.
    #[error("{0}")]
    Internal(String),
}

/// A checked request, ready for [`Generator::generate`].
#[derive(Clone, Debug)]
pub struct GenRequest {
    /// What the sampler runs.
    pub sample: SampleRequest,
    /// The prompt as given.
    pub prompt: String,
    /// The end of the prompt the model does not read (callers warn with it).
    pub dropped: Option<String>,
}

/// Requests with equal keys may share one sampler call: the sampler mixes modes in a
/// batch but needs one reference count and one starting noise level (a remix's strength).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// Reference values carried (characters).
    pub refs: usize,
    /// The starting noise level's bits: the remix strength, 1 for every other mode.
    pub start: u64,
}

impl GenRequest {
    /// The request with its own noise seed: its clip is then the same whichever batch it
    /// is sampled in.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.sample.seed = Some(seed);
        self
    }

    /// The key that decides which requests may be sampled together.
    pub fn batch_key(&self) -> BatchKey {
        let start = match &self.sample.mode {
            Mode::Remix { strength } => *strength,
            _ => 1.0,
        };
        BatchKey {
            refs: self.sample.refs.len(),
            start: start.to_bits(),
        }
    }
}

/// Consecutive runs of requests with equal [`BatchKey`]s, each cut into batches of at most
/// `max` (the batching rule the sampler enforces: one reference count and one remix
/// strength per call). Sort requests by key first to fill batches.
pub fn batches(reqs: &[GenRequest], max: usize) -> Vec<Range<usize>> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=reqs.len() {
        if i == reqs.len() || reqs[i].batch_key() != reqs[start].batch_key() || i - start == max {
            if start < i {
                out.push(start..i);
            }
            start = i;
        }
    }
    out
}

/// A model ready to generate: weights, tokenizer, codec and device.
pub struct Generator {
    model: SonoraDit,
    tok: CaptionTokenizer,
    codec: PatchCodec,
    cfg: ModelConfig,
    device: Device,
    null: Vec<u32>,
}

impl Generator {
    /// A generator over a model in memory (training's own samples, an untrained baseline).
    pub fn new(
        model: SonoraDit,
        tok: CaptionTokenizer,
        device: &Device,
    ) -> Result<Self, GenerateError> {
        let cfg = model.config().clone();
        let null = tok
            .encode("")
            .map_err(|e| GenerateError::Internal(e.to_string()))?;
        Ok(Self {
            codec: PatchCodec::new(&cfg),
            model,
            tok,
            cfg,
            device: device.clone(),
            null,
        })
    }

    /// Loads a checkpoint for inference (its EMA weights when it has them; only the
    /// weights read and the tokenizer are checksummed).
    pub fn load(
        ckpt: &Path,
        device: &Device,
    ) -> Result<(Self, Manifest, WeightsUsed), GenerateError> {
        let (model, tok, man, used) = load_for_inference(ckpt, device)
            .map_err(|e| GenerateError::Internal(format!("checkpoint {}: {e}", ckpt.display())))?;
        Ok((Self::new(model, tok, device)?, man, used))
    }

    /// The model's config (its clip shape).
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &CaptionTokenizer {
        &self.tok
    }

    /// The prompt checked by the one rule: ids and what the model will not read.
    fn prompt(&self, prompt: &str) -> Result<(Vec<u32>, Option<String>), GenerateError> {
        let p = self
            .tok
            .encode_prompt(prompt)
            .map_err(|e| GenerateError::BadRequest(e.to_string()))?;
        Ok((p.ids, p.dropped))
    }

    /// A request from its parts.
    fn build(
        &self,
        prompt: &str,
        mode: Mode,
        given: Option<ClipTokens>,
        refs: Vec<f32>,
    ) -> Result<GenRequest, GenerateError> {
        let (text, dropped) = self.prompt(prompt)?;
        Ok(GenRequest {
            sample: SampleRequest {
                text,
                mode,
                given,
                refs,
                seed: None,
            },
            prompt: prompt.to_string(),
            dropped,
        })
    }

    /// The tokens of a given clip, which must have the model's shape.
    fn given(&self, clip: &Clip, what: &str) -> Result<ClipTokens, GenerateError> {
        let (c, f) = (&self.cfg, &clip.frames);
        let want_audio = c.audio_samples();
        let audio = clip.audio.samples.len() / clip.audio.channels.max(1) as usize;
        if (f.t, f.h, f.w) != (c.frames, c.height, c.width)
            || (clip.fps - c.fps).abs() > 1e-6
            || clip.audio.sample_rate != c.sample_rate
            || audio != want_audio
        {
            return Err(GenerateError::BadRequest(format!(
                "the {what} is {} frames of {}×{} at {} fps with {audio} samples at {} Hz; this model takes {} frames of {}×{} at {} fps with {want_audio} samples at {} Hz",
                f.t,
                f.w,
                f.h,
                clip.fps,
                clip.audio.sample_rate,
                c.frames,
                c.width,
                c.height,
                c.fps,
                c.sample_rate
            )));
        }
        self.codec
            .encode(clip)
            .map_err(|e| GenerateError::BadRequest(format!("the {what}: {e}")))
    }

    /// Text → clip with sound.
    pub fn text(&self, prompt: &str) -> Result<GenRequest, GenerateError> {
        self.build(prompt, Mode::TextToAv, None, Vec::new())
    }

    /// Image → clip: `rgb` (`w × h`, any size) becomes the first frame, resized to the
    /// model's size; the rest and the sound are generated.
    pub fn image(
        &self,
        prompt: &str,
        rgb: &[u8],
        w: usize,
        h: usize,
    ) -> Result<GenRequest, GenerateError> {
        let c = &self.cfg;
        if w == 0 || h == 0 || rgb.len() != w * h * 3 {
            return Err(GenerateError::BadRequest(format!(
                "the first frame has {} bytes, not {w}×{h} RGB",
                rgb.len()
            )));
        }
        let px = if (h, w) == (c.height, c.width) {
            rgb.to_vec()
        } else {
            resize_rgb(rgb, h, w, c.height, c.width)
                .map_err(|e| GenerateError::BadRequest(format!("the first frame: {e}")))?
        };
        let mut frames = Frames::zeros(c.frames, c.height, c.width);
        for k in 0..c.frames {
            frames.frame_mut(k).copy_from_slice(&px);
        }
        let clip = Clip {
            frames,
            audio: Audio::silence(c.audio_samples(), 1, c.sample_rate),
            fps: c.fps,
            caption: prompt.to_string(),
            metadata: ClipMetadata::default(),
        };
        let given = self.given(&clip, "first frame's clip")?;
        self.build(prompt, Mode::ImageToVideo, Some(given), Vec::new())
    }

    /// Extension: the first `prefix_frames` of `clip` (a multiple of `patch_t`, below the
    /// model's frames) and their sound are given, the rest is continued.
    pub fn extension(
        &self,
        prompt: &str,
        clip: &Clip,
        prefix_frames: usize,
    ) -> Result<GenRequest, GenerateError> {
        let c = &self.cfg;
        if prefix_frames == 0
            || !prefix_frames.is_multiple_of(c.patch_t)
            || prefix_frames >= c.frames
        {
            return Err(GenerateError::BadRequest(format!(
                "an extension's given prefix must be a positive multiple of {} frames below {}, got {prefix_frames}",
                c.patch_t, c.frames
            )));
        }
        let given = self.given(clip, "clip to extend")?;
        self.build(
            prompt,
            Mode::Extension { prefix_frames },
            Some(given),
            Vec::new(),
        )
    }

    /// Remix: `clip` re-noised to `strength` ∈ (0, 1] and regenerated under `prompt`.
    pub fn remix(
        &self,
        prompt: &str,
        clip: &Clip,
        strength: f64,
    ) -> Result<GenRequest, GenerateError> {
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(GenerateError::BadRequest(format!(
                "a remix strength must be in (0, 1], got {strength}"
            )));
        }
        let given = self.given(clip, "clip to remix")?;
        self.build(prompt, Mode::Remix { strength }, Some(given), Vec::new())
    }

    /// Video → audio: `clip`'s frames are given, its sound is generated.
    pub fn video_to_audio(&self, prompt: &str, clip: &Clip) -> Result<GenRequest, GenerateError> {
        let given = self.given(clip, "video")?;
        self.build(prompt, Mode::VideoToAudio, Some(given), Vec::new())
    }

    /// Character: reference images `(RGB, w, h)` of the subject to cast, each resized to
    /// the model's reference size.
    pub fn character(
        &self,
        prompt: &str,
        references: &[(Vec<u8>, usize, usize)],
    ) -> Result<GenRequest, GenerateError> {
        if references.is_empty() {
            return Err(GenerateError::BadRequest(
                "a character request needs at least one reference image".into(),
            ));
        }
        let req = self.build(prompt, Mode::Character, None, Vec::new())?;
        self.cast(req, references)
    }

    /// `req` with reference images `(RGB, w, h)` cast into it (each resized to the
    /// model's reference size): a text request becomes a character request; the other
    /// modes keep what they are given and carry the references too.
    pub fn cast(
        &self,
        mut req: GenRequest,
        references: &[(Vec<u8>, usize, usize)],
    ) -> Result<GenRequest, GenerateError> {
        let s = self.cfg.ref_size;
        let mut refs = Vec::new();
        for (k, (rgb, w, h)) in references.iter().enumerate() {
            if *w == 0 || *h == 0 || rgb.len() != w * h * 3 {
                return Err(GenerateError::BadRequest(format!(
                    "reference image {k} has {} bytes, not {w}×{h} RGB",
                    rgb.len()
                )));
            }
            let px = resize_rgb(rgb, *h, *w, s, s)
                .map_err(|e| GenerateError::BadRequest(format!("reference image {k}: {e}")))?;
            refs.extend(
                self.codec
                    .encode_reference(&px)
                    .map_err(|e| GenerateError::BadRequest(format!("reference image {k}: {e}")))?,
            );
        }
        if !references.is_empty() && req.sample.mode == Mode::TextToAv {
            req.sample.mode = Mode::Character;
        }
        req.sample.refs.extend(refs);
        Ok(req)
    }

    /// A request from tokens a caller already holds (training's validation clips): the
    /// caption's ids, the mode and its given tokens. Not checked by the prompt rule.
    pub fn from_tokens(
        &self,
        caption: &str,
        text: Vec<u32>,
        mode: Mode,
        given: Option<ClipTokens>,
    ) -> GenRequest {
        GenRequest {
            sample: SampleRequest {
                text,
                mode,
                given,
                refs: Vec::new(),
                seed: None,
            },
            prompt: caption.to_string(),
            dropped: None,
        }
    }

    /// Generates one clip per request in one sampler call. The requests must share a
    /// [`BatchKey`] (see [`batches`]); `progress(step, total)` is called after every step
    /// and stops the run by returning `false`.
    pub fn generate(
        &self,
        sc: &SamplerConfig,
        reqs: &[GenRequest],
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Clip>, GenerateError> {
        sc.validate()
            .map_err(|e| GenerateError::BadRequest(format!("sampler {e}")))?;
        if let Some(first) = reqs.first()
            && let Some(other) = reqs.iter().find(|r| r.batch_key() != first.batch_key())
        {
            return Err(GenerateError::BadRequest(format!(
                "requests of one batch must share their reference count and remix strength: {:?} and {:?}",
                first.batch_key(),
                other.batch_key()
            )));
        }
        let sample: Vec<SampleRequest> = reqs.iter().map(|r| r.sample.clone()).collect();
        let tokens =
            sample_cancellable(&self.model, sc, &sample, &self.null, &self.device, progress)
                .map_err(|e| {
                    if e.is_cancelled() {
                        GenerateError::Cancelled
                    } else {
                        GenerateError::Internal(e.to_string())
                    }
                })?;
        Ok(tokens
            .iter()
            .zip(reqs)
            .map(|(t, r)| {
                let (frames, audio) = self.codec.decode(t);
                Clip {
                    frames,
                    audio,
                    fps: self.cfg.fps,
                    caption: r.prompt.clone(),
                    metadata: ClipMetadata::default(),
                }
            })
            .collect())
    }
}
