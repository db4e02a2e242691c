//! Autoregressive generation with the LLM: prompt prefill, KV-cached decode,
//! sampling, stop conditions, and streaming text with correct UTF-8.
//!
//! The prompt may be token ids (text chat) or embeddings (DiVA's virtual
//! tokens spliced into a template), so both paths share one decode loop.

use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use super::sampling::{Sampler, SamplingParams};
use crate::models::llm::{KvCache, Llm};
use crate::models::Exec;
use crate::text::{LlmTokenizer, TokenStream};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfTurn,
    StopString,
    MaxTokens,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub stop_reason: StopReason,
    /// Prefill time, i.e. time to the first token's logits.
    pub prompt_seconds: f64,
    pub decode_seconds: f64,
}

impl Generation {
    pub fn decode_tokens_per_second(&self) -> f64 {
        if self.decode_seconds > 0.0 {
            self.ids.len().saturating_sub(1) as f64 / self.decode_seconds
        } else {
            0.0
        }
    }
}

pub struct TextGenerator<'a> {
    pub llm: &'a Llm,
    pub tokenizer: &'a LlmTokenizer,
}

impl<'a> TextGenerator<'a> {
    pub fn new(llm: &'a Llm, tokenizer: &'a LlmTokenizer) -> Self {
        Self { llm, tokenizer }
    }

    /// Generate a reply to prompt token ids (continuing `cache`).
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        cache: &mut KvCache,
        params: &SamplingParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        self.try_generate_ids(prompt, cache, params, |t| {
            on_text(t);
            Ok(())
        })
    }

    /// [`Self::generate_ids`] with a sink that can fail (see
    /// [`Self::try_generate_embeds`]).
    pub fn try_generate_ids(
        &self,
        prompt: &[u32],
        cache: &mut KvCache,
        params: &SamplingParams,
        sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::Config("empty prompt".into()));
        }
        let ids = Tensor::new(prompt, &self.llm.device)?.unsqueeze(0)?;
        let embeds = self.llm.embed(&ids)?;
        self.try_generate_embeds(&embeds, cache, params, sink)
    }

    /// Generate after prompt embeddings `[1, t, hidden]` (continuing `cache`).
    pub fn generate_embeds(
        &self,
        prompt: &Tensor,
        cache: &mut KvCache,
        params: &SamplingParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        self.try_generate_embeds(prompt, cache, params, |t| {
            on_text(t);
            Ok(())
        })
    }

    /// [`Self::generate_embeds`] with a sink that can fail (stdout closed):
    /// generation stops at its first error, returned as [`Error::Io`].
    pub fn try_generate_embeds(
        &self,
        prompt: &Tensor,
        cache: &mut KvCache,
        params: &SamplingParams,
        mut sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Generation> {
        let mut d = self.start(prompt, cache, params)?;
        while let Some(next) = d.next(cache.len(), &mut sink)? {
            let x = self.llm.embed(&Tensor::new(&[[next]], &self.llm.device)?)?;
            let h = self
                .llm
                .forward_embeds(&x, None, Some(cache), Exec::Fused)?;
            d.set_logits(self.llm.logits(&h)?);
        }
        d.finish(&mut sink)
    }

    /// Prefill `prompt` `[1, t, hidden]` after `cache` and return the reply's
    /// decoder with the first token's logits ready. The caller drives it:
    /// [`Decoder::next`] picks a token, the caller runs it through the LLM
    /// (alone, or batched with other replies' tokens by
    /// [`Self::feed_rows`]) and hands the logits back with
    /// [`Decoder::set_logits`].
    pub fn start(
        &self,
        prompt: &Tensor,
        cache: &mut KvCache,
        params: &SamplingParams,
    ) -> Result<Decoder<'a>> {
        let prompt_tokens = prompt.dim(1)?;
        let window = self.llm.config.max_position_embeddings;
        if cache.len() + prompt_tokens >= window {
            return Err(Error::Config(format!(
                "prompt of {} tokens (plus {} in the conversation so far) does not fit the model's context window of {window} tokens",
                prompt_tokens,
                cache.len()
            )));
        }
        let t0 = Instant::now();
        let hidden = self
            .llm
            .forward_embeds(prompt, None, Some(cache), Exec::Fused)?;
        let logits = self.llm.logits(&hidden.narrow(1, prompt_tokens - 1, 1)?)?;
        Ok(Decoder {
            tokenizer: self.tokenizer,
            sampler: Sampler::new(params.clone()),
            stream: TokenStream::new(self.tokenizer, true),
            ids: Vec::new(),
            text: String::new(),
            stop_reason: StopReason::MaxTokens,
            done: false,
            logits,
            window,
            prompt_tokens,
            prompt_seconds: t0.elapsed().as_secs_f64(),
            t1: Instant::now(),
        })
    }

    /// One decode step of several replies at once: `ids[i]` (what
    /// `decoders[i].next` returned) continues `caches[i]`; each decoder gets
    /// its logits. The projections run once for the whole batch.
    pub fn feed_rows(
        &self,
        ids: &[u32],
        caches: &mut [&mut KvCache],
        decoders: &mut [&mut Decoder<'a>],
    ) -> Result<()> {
        let h = self.llm.forward_rows(ids, caches)?;
        let logits = self.llm.logits(&h)?;
        for (i, d) in decoders.iter_mut().enumerate() {
            d.set_logits(logits.narrow(0, i, 1)?);
        }
        Ok(())
    }
}

/// One reply in progress: sampling state, the streamed text and the stop
/// conditions, between decode steps.
pub struct Decoder<'a> {
    tokenizer: &'a LlmTokenizer,
    sampler: Sampler,
    stream: TokenStream<'a>,
    ids: Vec<u32>,
    text: String,
    stop_reason: StopReason,
    done: bool,
    /// The next token's logits `[1, 1, vocab]` (or `[1, vocab]`), f32.
    logits: Tensor,
    window: usize,
    prompt_tokens: usize,
    prompt_seconds: f64,
    t1: Instant,
}

impl Decoder<'_> {
    /// Choose the next token from the current logits and stream its text
    /// into `sink`. `Some(id)`: the reply goes on, and `id` must go through
    /// the LLM before the next call (then [`Self::set_logits`]). `None`: the
    /// reply is over (end of turn, a stop string, `max_tokens`, or the
    /// context window at `cache_len` tokens); call [`Self::finish`].
    pub fn next(
        &mut self,
        cache_len: usize,
        mut sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Option<u32>> {
        let mut on_text = |t: &str| sink(t).map_err(|e| Error::io("writing the generated text", e));
        if self.done
            || self.ids.len() >= self.sampler.params().max_tokens
            || cache_len >= self.window
        {
            self.done = true;
            return Ok(None);
        }
        let next = if self.sampler.is_plain_greedy() && !self.logits.device().is_cpu() {
            self.logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?
        } else {
            let mut row = self.logits.flatten_all()?.to_vec1::<f32>()?;
            self.sampler.sample(&mut row, &self.ids)
        };
        if self.tokenizer.is_stop(next) {
            self.stop_reason = StopReason::EndOfTurn;
            self.done = true;
            return Ok(None);
        }
        self.ids.push(next);
        if let Some(piece) = self.stream.push(next)? {
            self.text.push_str(&piece);
            if let Some(cut) = stop_string_cut(&self.text, &self.sampler.params().stop_strings) {
                // Emit only what precedes the stop string.
                let emitted = self.text.len() - piece.len();
                if cut > emitted {
                    on_text(&self.text[emitted..cut])?;
                }
                self.text.truncate(cut);
                self.stop_reason = StopReason::StopString;
                self.done = true;
                return Ok(None);
            }
            on_text(&piece)?;
        }
        Ok(Some(next))
    }

    /// The logits after the token [`Self::next`] returned.
    pub fn set_logits(&mut self, logits: Tensor) {
        self.logits = logits;
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.ids.len()
    }

    /// Flush the text held back for UTF-8 (unless a stop string ended the
    /// reply) and return the whole generation.
    pub fn finish(
        mut self,
        mut sink: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Generation> {
        if self.stop_reason != StopReason::StopString {
            if let Some(rest) = self.stream.finish()? {
                self.text.push_str(&rest);
                sink(&rest).map_err(|e| Error::io("writing the generated text", e))?;
            }
        }
        Ok(Generation {
            text: self.text,
            ids: self.ids,
            prompt_tokens: self.prompt_tokens,
            stop_reason: self.stop_reason,
            prompt_seconds: self.prompt_seconds,
            decode_seconds: self.t1.elapsed().as_secs_f64(),
        })
    }
}

/// Byte offset where the first stop string starts, if any occurs.
fn stop_string_cut(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stop_strings_cut_at_the_earliest_match() {
        let stops = vec!["\nUser:".to_string(), "###".to_string()];
        assert_eq!(
            super::stop_string_cut("Paris.### more\nUser:", &stops),
            Some(6)
        );
        assert_eq!(super::stop_string_cut("Paris.", &stops), None);
    }
}
