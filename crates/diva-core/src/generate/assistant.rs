//! A spoken-chat session: the Whisper encoder, the connector and the LLM are
//! loaded once, then one conversation answers audio or text turns, streaming
//! each reply, with the KV cache carried from turn to turn.
//!
//! An audio turn is DiVA's path: one 30 s window of log-mel → encoder →
//! connector → virtual tokens in the user slot of the LLM's chat template
//! ([`PromptSplit`]). Without a connector the session is the cascade baseline:
//! the caller transcribes ([`Assistant::transcribe`]) and sends the text as a
//! text turn. The template's constant prefix is computed once at load and
//! every conversation starts after it.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::llm::{Decoder, Generation, TextGenerator};
use super::sampling::SamplingParams;
use super::transcribe::{TranscribeOptions, Transcriber};
use crate::audio::{self, AudioCtx, MelFilters};
use crate::models::checkpoint;
use crate::models::connector::Connector;
use crate::models::diva::PromptSplit;
use crate::models::llm::{load_llm, KvCache, Llm, LlmWeights, WeightMode};
use crate::models::whisper::{WhisperEncoder, WhisperWeights};
use crate::models::Exec;
use crate::text::LlmTokenizer;
use crate::{Error, Result};

/// Where the connector comes from.
#[derive(Debug, Clone)]
pub enum ConnectorSource {
    /// A DiVA checkpoint directory (official layout).
    Checkpoint(PathBuf),
    /// Freshly initialised: decoder blocks from Whisper, random queries.
    Untrained { num_queries: usize },
    /// No connector: the cascade baseline (text turns only).
    Cascade,
}

/// What to load. Paths are already resolved (a Whisper directory; a `.gguf`
/// file or an HF directory for the LLM).
#[derive(Debug, Clone)]
pub struct AssistantOptions {
    pub whisper: PathBuf,
    pub llm: PathBuf,
    pub connector: ConnectorSource,
    /// Also build a Whisper transcriber (cascade, or the teacher's reply).
    pub transcriber: bool,
    /// A text instruction, rendered as the system message.
    pub instruction: Option<String>,
    /// Compute dtype of the Whisper encoder, the connector and the transcriber.
    pub dtype: DType,
    pub device: Device,
    /// The LLM's weights on the CPU (as stored, f32, or by size).
    pub llm_weights: LlmWeights,
    /// The encoder's window for audio → virtual tokens (whisper.cpp's
    /// `audio_ctx`; the transcriber keeps the 30 s window).
    pub audio_ctx: AudioCtx,
}

/// A loaded session.
pub struct Assistant {
    pub llm: Llm,
    pub tokenizer: LlmTokenizer,
    encoder: Option<WhisperEncoder>,
    connector: Option<Connector>,
    transcriber: Option<Transcriber>,
    filters: MelFilters,
    split: PromptSplit,
    prefix_kv: KvCache,
    device: Device,
    audio_ctx: AudioCtx,
}

/// One conversation's state: the KV cache after its last reply, and its
/// own template split when it has its own system message.
pub struct Conversation {
    cache: KvCache,
    turns: usize,
    split: Option<PromptSplit>,
}

/// One piece of a user message, in order: audio becomes virtual tokens, text
/// its token embeddings, and the pieces are concatenated in the user slot.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    Audio(&'a [f32]),
    /// Audio already turned into virtual tokens `[1, N, d_llm]` by
    /// [`Assistant::virtual_tokens`] (a caller's cache of earlier turns).
    Virtual(&'a Tensor),
    Text(&'a str),
}

/// A user message's embeddings, ready for the template.
pub struct UserInput {
    /// `[1, m, d_llm]`
    pub middle: Tensor,
    /// Seconds spent on audio → virtual tokens.
    pub input_seconds: f64,
    /// Virtual tokens among the `m` (OpenAI's `audio_tokens`).
    pub audio_tokens: usize,
}

impl Conversation {
    /// Tokens in the cache (template prefix included).
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

/// One answered turn.
#[derive(Debug, Clone)]
pub struct Reply {
    pub generation: Generation,
    /// Audio → virtual tokens (encoder + connector); 0 for a text turn.
    pub input_seconds: f64,
}

impl Reply {
    /// From the decoded input to the first token's logits (prefill included).
    pub fn time_to_first_token_s(&self) -> f64 {
        self.input_seconds + self.generation.prompt_seconds
    }
}

impl Assistant {
    /// How the LLM's weights load: `llm_weights` on the CPU, dense in
    /// `dtype` on a GPU.
    fn weight_mode(o: &AssistantOptions) -> Result<WeightMode> {
        o.llm_weights.mode(&o.llm, &o.device, o.dtype)
    }

    /// Size candle's CPU pools for loading `o` (one pool unless quantized
    /// kernels run; see [`crate::cpu_pools`]). [`Self::load`] does this
    /// itself; a caller that loads on another thread while the process has
    /// several (`diva serve`) calls it first, while single-threaded.
    pub fn prepare_cpu_pools(o: &AssistantOptions) -> Result<()> {
        crate::cpu_pools::use_one_pool_unless_quantized(&o.llm, Self::weight_mode(o)?)
    }

    pub fn load(o: &AssistantOptions) -> Result<Self> {
        let mode = Self::weight_mode(o)?;
        // Before any candle op: one CPU pool unless quantized kernels run.
        crate::cpu_pools::use_one_pool_unless_quantized(&o.llm, mode)?;
        let tokenizer = LlmTokenizer::from_path(&o.llm)?;
        let llm = load_llm(&o.llm, mode, &o.device)?;
        let whisper = WhisperWeights::load_dir(&o.whisper)?;
        let transcriber = if o.transcriber {
            let opts = TranscribeOptions {
                language: "en".into(),
                dtype: o.dtype,
            };
            Some(
                Transcriber::from_weights(&whisper, &opts, &o.device).map_err(|e| {
                    Error::model(
                        &o.whisper,
                        format!("a transcript needs a Whisper with its decoder: {e}"),
                    )
                })?,
            )
        } else {
            None
        };
        // Build the Whisper parts first, then let go of the stored Whisper
        // tensors (decoder included) before a checkpoint's file is read:
        // the two are never in memory together.
        let hears = !matches!(o.connector, ConnectorSource::Cascade);
        let encoder = match (&transcriber, hears) {
            (_, false) => None,
            // The transcriber's encoder serves the audio path too (shared tensors).
            (Some(t), true) => Some(t.encoder.clone()),
            (None, true) => Some(whisper.encoder(o.dtype, &o.device)?),
        };
        let filters = MelFilters::new(whisper.config.num_mel_bins);
        let connector = match &o.connector {
            ConnectorSource::Checkpoint(dir) => {
                let config = whisper.config.clone();
                drop(whisper);
                Some(checkpoint::load_connector(
                    dir, &config, o.dtype, &o.device,
                )?)
            }
            ConnectorSource::Untrained { num_queries } => Some(Connector::init(
                &whisper,
                *num_queries,
                llm.hidden_size(),
                0,
                o.dtype,
                &o.device,
            )?),
            ConnectorSource::Cascade => None,
        };
        if let Some(c) = &connector {
            let d_out = c.projection.weight.dim(0)?;
            if d_out != llm.hidden_size() {
                return Err(Error::model(
                    &o.llm,
                    format!(
                        "the connector projects to width {d_out} but this LLM's hidden size is {}: \
                         use the LLM the checkpoint was trained with",
                        llm.hidden_size()
                    ),
                ));
            }
        }
        let split = PromptSplit::from_template(&tokenizer, o.instruction.as_deref())?;
        let prefix_kv = split.prefix_cache(&llm)?;
        Ok(Self {
            llm,
            tokenizer,
            encoder,
            connector,
            transcriber,
            filters,
            split,
            prefix_kv,
            device: o.device.clone(),
            audio_ctx: o.audio_ctx,
        })
    }

    /// A new conversation (its cache starts after the template prefix).
    pub fn conversation(&self) -> Conversation {
        Conversation {
            cache: self.prefix_kv.clone(),
            turns: 0,
            split: None,
        }
    }

    /// A new conversation under its own system message (a request's own
    /// instruction): the template is split again and its prefix computed for
    /// this conversation only.
    pub fn conversation_with_system(&self, system: &str) -> Result<Conversation> {
        let split = PromptSplit::from_template(&self.tokenizer, Some(system))?;
        Ok(Conversation {
            cache: split.prefix_cache(&self.llm)?,
            turns: 0,
            split: Some(split),
        })
    }

    /// The embeddings of a user message made of `parts`.
    pub fn user_input(&self, parts: &[Part]) -> Result<UserInput> {
        let t0 = Instant::now();
        let mut pieces = Vec::with_capacity(parts.len());
        let mut audio_tokens = 0;
        for p in parts {
            match p {
                Part::Audio(pcm) => {
                    let v = self.virtual_tokens(pcm)?;
                    audio_tokens += v.dim(1)?;
                    pieces.push(v.to_dtype(self.llm.dtype)?);
                }
                Part::Virtual(v) => {
                    audio_tokens += v.dim(1)?;
                    pieces.push(v.to_dtype(self.llm.dtype)?);
                }
                Part::Text(t) => {
                    let ids = self.tokenizer.encode(t, false)?;
                    if !ids.is_empty() {
                        pieces.push(self.llm.embed_ids(&ids)?);
                    }
                }
            }
        }
        if pieces.is_empty() {
            return Err(Error::Config("a user message needs text or audio".into()));
        }
        Ok(UserInput {
            middle: Tensor::cat(&pieces, 1)?,
            input_seconds: if audio_tokens > 0 {
                t0.elapsed().as_secs_f64()
            } else {
                0.0
            },
            audio_tokens,
        })
    }

    /// Answer a user message of `parts`, streaming into `sink`.
    pub fn reply_parts(
        &self,
        conv: &mut Conversation,
        input: &UserInput,
        params: &SamplingParams,
        sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Reply> {
        self.answer(conv, &input.middle, input.input_seconds, params, sink)
    }

    /// Prefill a user message and return its reply's decoder, for a caller
    /// that drives the decode itself: alone, or batched with other
    /// conversations' replies by [`Self::feed_rows`] (`diva serve`'s
    /// continuous batching). [`Self::reply_parts`] is the same reply in one
    /// call.
    pub fn begin_reply(
        &self,
        conv: &mut Conversation,
        input: &UserInput,
        params: &SamplingParams,
    ) -> Result<Decoder<'_>> {
        let prompt = self.turn_prompt(conv, &input.middle)?;
        let d = TextGenerator::new(&self.llm, &self.tokenizer).start(
            &prompt,
            &mut conv.cache,
            params,
        )?;
        conv.turns += 1;
        Ok(d)
    }

    /// One decode step of several replies begun by [`Self::begin_reply`]:
    /// `ids[i]` (what `decoders[i].next` chose) continues `convs[i]`, all in
    /// one batched forward.
    pub fn feed_rows<'s>(
        &'s self,
        ids: &[u32],
        convs: &mut [&mut Conversation],
        decoders: &mut [&mut Decoder<'s>],
    ) -> Result<()> {
        let mut caches: Vec<&mut KvCache> = convs.iter_mut().map(|c| &mut c.cache).collect();
        TextGenerator::new(&self.llm, &self.tokenizer).feed_rows(ids, &mut caches, decoders)
    }

    /// An earlier user message of the history: into the cache, no reply
    /// generated (the history's assistant message follows with
    /// [`Self::push_reply`]).
    pub fn prefill(&self, conv: &mut Conversation, input: &UserInput) -> Result<()> {
        let prompt = self.turn_prompt(conv, &input.middle)?;
        self.llm.forward_embeds(
            &prompt,
            None,
            Some(&mut conv.cache),
            crate::models::Exec::Fused,
        )?;
        conv.turns += 1;
        Ok(())
    }

    /// An earlier assistant reply of the history, as if it had been generated.
    pub fn push_reply(&self, conv: &mut Conversation, text: &str) -> Result<()> {
        let ids = self.tokenizer.encode(text, false)?;
        if !ids.is_empty() {
            self.llm.forward_embeds(
                &self.llm.embed_ids(&ids)?,
                None,
                Some(&mut conv.cache),
                crate::models::Exec::Fused,
            )?;
        }
        Ok(())
    }

    fn turn_prompt(&self, conv: &Conversation, middle: &Tensor) -> Result<Tensor> {
        let split = conv.split.as_ref().unwrap_or(&self.split);
        Ok(if conv.turns == 0 {
            split.after_prefix(&self.llm, middle)?
        } else {
            split.next_turn(&self.llm, middle)?
        })
    }

    /// Tokens of the cached template prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.prefix_kv.len()
    }

    /// Whether the loaded Whisper transcribes English only (a `.en` model).
    pub fn english_only(&self) -> bool {
        self.transcriber
            .as_ref()
            .is_some_and(|t| !t.tokenizer.multilingual)
    }

    /// Whether audio turns go through a connector (false: the cascade).
    pub fn hears_audio(&self) -> bool {
        self.connector.is_some()
    }

    /// Queries of the connector (virtual tokens per audio turn).
    pub fn num_queries(&self) -> Option<usize> {
        self.connector.as_ref().map(Connector::num_queries)
    }

    /// Whisper's transcript of `pcm` (any length) and the seconds it took.
    pub fn transcribe(&self, pcm: &[f32]) -> Result<(String, f64)> {
        let t = self
            .transcriber
            .as_ref()
            .ok_or_else(|| Error::Config("this session was loaded without a transcriber".into()))?;
        let t0 = Instant::now();
        let text = t.transcribe_pcm(pcm)?.text;
        Ok((text, t0.elapsed().as_secs_f64()))
    }

    /// Whisper's transcript of `pcm`, one text per 30 s window (for
    /// subtitle formats; join them for the whole text).
    pub fn transcript(&self, pcm: &[f32]) -> Result<Vec<String>> {
        let t = self
            .transcriber
            .as_ref()
            .ok_or_else(|| Error::Config("this session was loaded without a transcriber".into()))?;
        let out = t.transcribe_pcm(pcm)?;
        out.tokens
            .iter()
            .map(|ids| Ok(t.tokenizer.decode(ids)?.trim().to_string()))
            .collect()
    }

    /// Audio (its first 30 s, or the window of [`AssistantOptions::audio_ctx`])
    /// → virtual tokens `[1, N, d_llm]`.
    pub fn virtual_tokens(&self, pcm: &[f32]) -> Result<Tensor> {
        let (Some(encoder), Some(connector)) = (&self.encoder, &self.connector) else {
            return Err(Error::Config(
                "the cascade has no connector: transcribe the audio and send the text".into(),
            ));
        };
        let frames = 2 * self.audio_ctx.encoder_frames(pcm.len());
        if pcm.len() > frames * audio::mel::HOP_LENGTH {
            tracing::debug!(
                "audio context {}: {:.1} s of {:.1} s heard",
                self.audio_ctx,
                (frames * audio::mel::HOP_LENGTH) as f64 / f64::from(audio::SAMPLE_RATE),
                pcm.len() as f64 / f64::from(audio::SAMPLE_RATE)
            );
        }
        let mel = audio::log_mel_window(pcm, &self.filters, frames);
        let mel = Tensor::from_vec(mel, (1, self.filters.n_mels(), frames), &self.device)?;
        Ok(connector.forward(&encoder.forward(&mel)?, Exec::Fused)?)
    }

    /// Answer an audio turn, streaming the reply into `sink`.
    pub fn reply_audio(
        &self,
        conv: &mut Conversation,
        pcm: &[f32],
        params: &SamplingParams,
        sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Reply> {
        let t0 = Instant::now();
        let middle = self.virtual_tokens(pcm)?;
        let input_seconds = t0.elapsed().as_secs_f64();
        self.answer(conv, &middle, input_seconds, params, sink)
    }

    /// Answer a text turn (typed, or a transcript), streaming into `sink`.
    pub fn reply_text(
        &self,
        conv: &mut Conversation,
        text: &str,
        params: &SamplingParams,
        sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Reply> {
        let middle = self.llm.embed_ids(&self.tokenizer.encode(text, false)?)?;
        self.answer(conv, &middle, 0.0, params, sink)
    }

    fn answer(
        &self,
        conv: &mut Conversation,
        middle: &Tensor,
        input_seconds: f64,
        params: &SamplingParams,
        sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Reply> {
        let prompt = self.turn_prompt(conv, middle)?;
        let g = TextGenerator::new(&self.llm, &self.tokenizer);
        let generation = g.try_generate_embeds(&prompt, &mut conv.cache, params, sink)?;
        conv.turns += 1;
        Ok(Reply {
            generation,
            input_seconds,
        })
    }
}
