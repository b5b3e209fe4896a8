//! Text: a BPE tokenizer trained from the dataset's captions (Hugging Face `tokenizers`,
//! saved with the checkpoint as `tokenizer.json`) and a small transformer text encoder
//! trained jointly with the DiT. The empty caption is the null condition for CFG.

use std::str::FromStr;

use burn::module::{Module, Param};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::utils::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

use super::config::ModelConfig;

/// Id of the padding token (also the whole null caption).
pub const PAD_ID: u32 = 0;

/// A tokenizer that failed to train, load or run.
#[derive(Debug, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokenizerError(pub String);

/// Captions → fixed-length id rows with a padding mask.
#[derive(Clone)]
pub struct CaptionTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

impl std::fmt::Debug for CaptionTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaptionTokenizer(vocab {}, max_len {})",
            self.inner.get_vocab_size(true),
            self.max_len
        )
    }
}

impl CaptionTokenizer {
    /// Trains a lower-cased BPE with at most `vocab_size` entries (`[PAD]` = 0, `[UNK]`)
    /// on `captions`.
    pub fn train<'a>(
        captions: impl Iterator<Item = &'a str>,
        vocab_size: usize,
        max_len: usize,
    ) -> Result<Self, TokenizerError> {
        let e = |x: tokenizers::Error| TokenizerError(x.to_string());
        let specials = vec![
            AddedToken::from("[PAD]", true),
            AddedToken::from("[UNK]", true),
        ];
        let mut trainer: tokenizers::models::TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(specials)
            .build()
            .into();
        let model = BPE::builder()
            .unk_token("[UNK]".into())
            .build()
            .map_err(e)?;
        let mut tok = Tokenizer::new(model);
        tok.with_normalizer(Some(Lowercase)).map_err(e)?;
        tok.with_pre_tokenizer(Some(Whitespace {}));
        let captions: Vec<String> = captions.map(str::to_string).collect();
        tok.train(&mut trainer, captions.into_iter()).map_err(e)?;
        if tok.token_to_id("[PAD]") != Some(PAD_ID) {
            return Err(TokenizerError("[PAD] did not get id 0".into()));
        }
        Ok(Self {
            inner: tok,
            max_len,
        })
    }

    /// Loads a tokenizer saved by [`Self::to_json`].
    pub fn from_json(json: &str, max_len: usize) -> Result<Self, TokenizerError> {
        let inner = Tokenizer::from_str(json)
            .map_err(|e| TokenizerError(format!("tokenizer.json does not parse: {e}")))?;
        Ok(Self { inner, max_len })
    }

    /// The tokenizer as `tokenizer.json` text (readable by Python's `tokenizers`).
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TokenizerError(e.to_string()))
    }

    /// Vocabulary size including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids of `caption`, truncated to `max_len`, padded with [`PAD_ID`].
    pub fn encode(&self, caption: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode(caption, false)
            .map_err(|e| TokenizerError(e.to_string()))?;
        let mut ids: Vec<u32> = enc.get_ids().iter().copied().take(self.max_len).collect();
        ids.resize(self.max_len, PAD_ID);
        Ok(ids)
    }
}

/// A prompt checked and encoded for generation: its ids, and what the model will not read.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// Ids, `text_max_len` long (padded).
    pub ids: Vec<u32>,
    /// The end of the prompt beyond the model's `text_max_len` tokens, which the model
    /// does not see (`None` when it reads it all). Callers warn with it.
    pub dropped: Option<String>,
    /// Tokens the whole prompt makes.
    pub tokens: usize,
}

/// The one rule for prompts a user asks a model to generate from (the CLI's `sample`,
/// a recipe's `[sample]` prompts, eval cases, the server): an empty or blank prompt is
/// refused (the empty caption is the null prompt guidance contrasts with, not a request);
/// one longer than the model reads is cut to its `text_max_len` tokens and the cut part
/// returned in [`Prompt::dropped`] for a warning; a prompt over [`MAX_PROMPT_CHARS`]
/// characters is refused.
pub const MAX_PROMPT_CHARS: usize = 10_000;

impl CaptionTokenizer {
    /// Checks and encodes a generation prompt (see [`Prompt`] for the rule).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Prompt, TokenizerError> {
        if prompt.trim().is_empty() {
            return Err(TokenizerError(
                "the prompt is empty: describe the clip (the empty caption is the null prompt that guidance contrasts with)".into(),
            ));
        }
        let chars = prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(TokenizerError(format!(
                "the prompt is {chars} characters long; at most {MAX_PROMPT_CHARS} are accepted"
            )));
        }
        let enc = self
            .inner
            .encode(prompt, false)
            .map_err(|e| TokenizerError(e.to_string()))?;
        let tokens = enc.get_ids().len();
        let dropped = (tokens > self.max_len).then(|| {
            let cut = enc.get_offsets()[self.max_len].0;
            prompt.get(cut..).unwrap_or("").trim().to_string()
        });
        Ok(Prompt {
            ids: self.encode(prompt)?,
            dropped,
            tokens,
        })
    }

    /// The model's prompt length in tokens.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// Token ids of a batch of captions: `([B, L] ids, [B, L] padding mask, true = pad)`.
/// An all-padding row (the null caption) keeps its first position unmasked so attention
/// has a key to look at.
pub fn text_batch(rows: &[Vec<u32>], device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let (b, l) = (rows.len(), rows.first().map_or(1, Vec::len));
    let ids: Vec<i64> = rows.iter().flatten().map(|&i| i as i64).collect();
    let mask: Vec<bool> = rows
        .iter()
        .flat_map(|r| r.iter().enumerate().map(|(j, &i)| i == PAD_ID && j > 0))
        .collect();
    (
        Tensor::from_data(TensorData::new(ids, [b, l]), device),
        Tensor::from_data(TensorData::new(mask, [b, l]), device),
    )
}

/// Token embedding + learned positions + a pre-norm transformer encoder.
#[derive(Module, Debug)]
pub struct TextEncoder {
    embed: Embedding,
    pos: Param<Tensor<2>>,
    encoder: TransformerEncoder,
    norm: LayerNorm,
}

impl TextEncoder {
    /// The encoder for `cfg` (`text_dim` wide, `text_depth` layers).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.text_dim;
        Self {
            embed: EmbeddingConfig::new(cfg.vocab_size, d).init(device),
            pos: Param::from_tensor(Tensor::random(
                [cfg.text_max_len, d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            encoder: TransformerEncoderConfig::new(d, 4 * d, cfg.text_heads, cfg.text_depth.max(1))
                .with_norm_first(true)
                .with_dropout(0.0)
                .init(device),
            norm: LayerNormConfig::new(d).init(device),
        }
    }

    /// `ids`: `[B, L]`, `pad`: `[B, L]` → `[B, L, text_dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>, pad: Tensor<2, Bool>) -> Tensor<3> {
        let [_, l] = ids.dims();
        let pos = self.pos.val().narrow(0, 0, l).unsqueeze_dim::<3>(0);
        let x = self.embed.forward(ids) + pos;
        self.norm.forward(
            self.encoder
                .forward(TransformerEncoderInput::new(x).mask_pad(pad)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(max_len: usize) -> CaptionTokenizer {
        let caps = [
            "a red ball falls on a wooden floor",
            "a blue cube bounces off the wall",
        ];
        CaptionTokenizer::train(caps.iter().copied(), 64, max_len).unwrap()
    }

    #[test]
    fn prompts_are_refused_when_empty_and_cut_with_what_was_dropped() {
        let t = tok(4);
        for blank in ["", "   ", "\n\t"] {
            let e = t.encode_prompt(blank).unwrap_err().to_string();
            assert!(e.contains("prompt is empty"), "{e}");
        }
        let p = t.encode_prompt("a red ball").unwrap();
        assert_eq!((p.tokens, p.dropped.as_deref()), (3, None));
        assert_eq!(p.ids, t.encode("a red ball").unwrap());
        let p = t
            .encode_prompt("a red ball falls on a wooden floor")
            .unwrap();
        assert_eq!(p.tokens, 8);
        assert_eq!(p.dropped.as_deref(), Some("on a wooden floor"));
        assert_eq!(p.ids.len(), 4);
        let long = "ball ".repeat(MAX_PROMPT_CHARS);
        let e = t.encode_prompt(&long).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} characters", 5 * MAX_PROMPT_CHARS)),
            "{e}"
        );
    }
}
