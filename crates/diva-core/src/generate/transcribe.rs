//! Greedy Whisper transcription without timestamps.
//!
//! Decoding follows openai-whisper / faster-whisper at temperature 0 with
//! `without_timestamps=True`, so diva's output is comparable token for token:
//! - prompt `<|startoftranscript|>[<|lang|><|transcribe|>]<|notimestamps|>`;
//! - `suppress_tokens=[-1]`: non-speech symbols and task/special tokens are
//!   never emitted;
//! - `suppress_blank`: the first token may not be a bare space or end-of-text;
//! - timestamp tokens are suppressed (we asked for none);
//! - at most `max_target_positions / 2` new tokens per window.
//!
//! Audio longer than 30 s is cut into consecutive 30 s windows, each decoded on
//! its own, and the texts are joined: nothing is silently dropped.
//!
//! The language is checked when the transcriber is built: an English-only
//! (`.en`) model refuses any other language, a multilingual one refuses codes
//! it has no language token for.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use serde::Serialize;

use crate::audio::{self, MelFilters};
use crate::models::whisper::{WhisperDecoder, WhisperEncoder, WhisperWeights};
use crate::text::WhisperTokenizer;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Language code (`en`, `fr`, …). English-only models accept only `en`.
    pub language: String,
    /// Compute dtype for the encoder and decoder.
    pub dtype: DType,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            language: "en".into(),
            dtype: DType::F32,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub text: String,
    /// Token ids per 30 s window (without the prompt).
    pub tokens: Vec<Vec<u32>>,
    pub duration_s: f64,
}

pub struct Transcriber {
    pub encoder: WhisperEncoder,
    pub decoder: WhisperDecoder,
    pub tokenizer: WhisperTokenizer,
    filters: MelFilters,
    device: Device,
    prompt: Vec<u32>,
    suppress: Vec<u32>,
    suppress_at_begin: Vec<u32>,
    max_new_tokens: usize,
}

impl Transcriber {
    /// Load from a Whisper directory (HF safetensors or CTranslate2).
    pub fn load(dir: &Path, opts: &TranscribeOptions, device: &Device) -> Result<Self> {
        Self::from_weights(&WhisperWeights::load_dir(dir)?, opts, device)
    }

    /// Build from weights already read (their directory holds `tokenizer.json`).
    pub fn from_weights(
        weights: &WhisperWeights,
        opts: &TranscribeOptions,
        device: &Device,
    ) -> Result<Self> {
        let tokenizer = WhisperTokenizer::from_file(
            &weights.dir.join("tokenizer.json"),
            weights.config.is_multilingual(),
        )?;
        check_language(&tokenizer, &opts.language, &weights.dir)?;
        let encoder = weights.encoder(opts.dtype, device)?;
        let decoder = weights.decoder(opts.dtype, device, true)?;
        let vocab = weights.config.vocab_size as u32;
        let mut suppress = tokenizer.default_suppressed()?;
        if let Some(ts) = tokenizer.timestamp_begin {
            suppress.extend(ts..vocab);
        }
        suppress.push(tokenizer.no_timestamps);
        suppress.retain(|&t| t < vocab);
        let mut suppress_at_begin = tokenizer.encode(" ")?;
        suppress_at_begin.push(tokenizer.eot);
        Ok(Self {
            filters: MelFilters::new(weights.config.num_mel_bins),
            prompt: tokenizer.transcription_prompt(&opts.language)?,
            max_new_tokens: weights.config.max_target_positions / 2,
            encoder,
            decoder,
            tokenizer,
            device: device.clone(),
            suppress,
            suppress_at_begin,
        })
    }

    pub fn n_mels(&self) -> usize {
        self.filters.n_mels()
    }

    /// Log-mel of one window as a `[1, n_mels, 3000]` tensor.
    pub fn mel_tensor(&self, pcm: &[f32]) -> Result<Tensor> {
        let mel = audio::log_mel(pcm, &self.filters);
        Ok(Tensor::from_vec(
            mel,
            (1, self.filters.n_mels(), audio::N_FRAMES),
            &self.device,
        )?)
    }

    /// Encoder states `[1, 1500, d]` for one window.
    pub fn encode(&self, pcm: &[f32]) -> Result<Tensor> {
        Ok(self.encoder.forward(&self.mel_tensor(pcm)?)?)
    }

    fn mask(&self, vocab: usize, ids: &[u32]) -> Result<Tensor> {
        let mut m = vec![0f32; vocab];
        for &t in ids {
            m[t as usize] = f32::NEG_INFINITY;
        }
        Ok(Tensor::from_vec(m, vocab, &self.device)?)
    }

    /// Greedy-decode one window of encoder states.
    pub fn decode_window(&self, states: &Tensor) -> Result<Vec<u32>> {
        let mut cache = self.decoder.new_cache(states)?;
        let prompt = Tensor::new(self.prompt.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut logits = self.decoder.forward_tokens(&prompt, &mut cache)?;
        let vocab = logits.dim(D::Minus1)?;
        let always = self.mask(vocab, &self.suppress)?;
        let mut begin = self.suppress.clone();
        begin.extend(&self.suppress_at_begin);
        let at_begin = self.mask(vocab, &begin)?;
        let mut out = Vec::new();
        let limit = self
            .max_new_tokens
            .min(self.decoder.embed_positions.dim(0)? - self.prompt.len());
        while out.len() < limit {
            let last = logits.get(0)?.get(logits.dim(1)? - 1)?;
            let mask = if out.is_empty() { &at_begin } else { &always };
            let next = (&last + mask)?.argmax(D::Minus1)?.to_scalar::<u32>()?;
            if next == self.tokenizer.eot {
                break;
            }
            out.push(next);
            let ids = Tensor::new(&[[next]], &self.device)?;
            logits = self.decoder.forward_tokens(&ids, &mut cache)?;
        }
        Ok(out)
    }

    /// Transcribe 16 kHz mono PCM of any length.
    pub fn transcribe_pcm(&self, pcm: &[f32]) -> Result<Transcript> {
        self.transcribe_pcm_with_progress(pcm, |_, _| {})
    }

    /// [`Self::transcribe_pcm`], calling `progress(done, total)` with the
    /// number of 30 s windows decoded so far (first with `done = 0`).
    pub fn transcribe_pcm_with_progress(
        &self,
        pcm: &[f32],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Transcript> {
        let total = pcm.len().max(1).div_ceil(audio::N_SAMPLES);
        progress(0, total);
        let mut tokens = Vec::new();
        let mut texts = Vec::new();
        for (i, window) in audio::mel::windows(pcm).enumerate() {
            let states = self.encode(window)?;
            let ids = self.decode_window(&states)?;
            texts.push(self.tokenizer.decode(&ids)?.trim().to_string());
            tokens.push(ids);
            progress(i + 1, total);
        }
        let text = texts
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            tokens,
            duration_s: pcm.len() as f64 / audio::SAMPLE_RATE as f64,
        })
    }

    /// Decode, resample and transcribe an audio file.
    pub fn transcribe_file(&self, path: &Path) -> Result<Transcript> {
        let pcm = audio::load::load_pcm_16k(path)?;
        self.transcribe_named(&pcm, path, |_, _| {})
    }

    /// Transcribe decoded PCM; `name` (a file, or `-` for stdin) labels errors.
    pub fn transcribe_named(
        &self,
        pcm: &[f32],
        name: &Path,
        progress: impl FnMut(usize, usize),
    ) -> Result<Transcript> {
        self.transcribe_pcm_with_progress(pcm, progress)
            .map_err(|e| match e {
                Error::Candle(c) => Error::audio(name, format!("transcription failed: {c}")),
                other => other,
            })
    }
}

/// Refuse a language the model cannot be asked for. Whisper's language tokens
/// are `<|xx|>` or `<|xxx|>` (`haw`, `yue`); longer names in that form are task
/// tokens (`<|transcribe|>`), not languages.
fn check_language(tok: &WhisperTokenizer, language: &str, dir: &Path) -> Result<()> {
    if !tok.multilingual {
        if language != "en" {
            return Err(Error::Config(format!(
                "--language {language}: {} is an English-only Whisper model; drop --language, \
                 or use a multilingual model (e.g. --model base)",
                dir.display()
            )));
        }
        return Ok(());
    }
    let is_code =
        (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
    if !is_code || tok.language_token(language).is_none() {
        return Err(Error::Config(format!(
            "--language {language}: not a language code this Whisper model knows; \
             use a two-letter code such as en, fr, de, es, ja or zh"
        )));
    }
    Ok(())
}
