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
        let mut on_text = |t: &str| sink(t).map_err(|e| Error::io("writing the generated text", e));
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
        let mut logits = self.llm.logits(&hidden.narrow(1, prompt_tokens - 1, 1)?)?;
        let prompt_seconds = t0.elapsed().as_secs_f64();

        let mut sampler = Sampler::new(params.clone());
        let mut stream = TokenStream::new(self.tokenizer, true);
        let (mut ids, mut text) = (Vec::new(), String::new());
        let mut stop_reason = StopReason::MaxTokens;
        let t1 = Instant::now();
        while ids.len() < params.max_tokens && cache.len() < window {
            let next = if sampler.is_plain_greedy() && !logits.device().is_cpu() {
                logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?
            } else {
                let mut row = logits.flatten_all()?.to_vec1::<f32>()?;
                sampler.sample(&mut row, &ids)
            };
            if self.tokenizer.is_stop(next) {
                stop_reason = StopReason::EndOfTurn;
                break;
            }
            ids.push(next);
            if let Some(piece) = stream.push(next)? {
                text.push_str(&piece);
                if let Some(cut) = stop_string_cut(&text, &params.stop_strings) {
                    // Emit only what precedes the stop string.
                    let emitted = text.len() - piece.len();
                    if cut > emitted {
                        on_text(&text[emitted..cut])?;
                    }
                    text.truncate(cut);
                    stop_reason = StopReason::StopString;
                    break;
                }
                on_text(&piece)?;
            }
            let x = self.llm.embed(&Tensor::new(&[[next]], &self.llm.device)?)?;
            let h = self
                .llm
                .forward_embeds(&x, None, Some(cache), Exec::Fused)?;
            logits = self.llm.logits(&h)?;
        }
        if stop_reason != StopReason::StopString {
            if let Some(rest) = stream.finish()? {
                text.push_str(&rest);
                on_text(&rest)?;
            }
        }
        let decode_seconds = t1.elapsed().as_secs_f64();
        Ok(Generation {
            text,
            ids,
            prompt_tokens,
            stop_reason,
            prompt_seconds,
            decode_seconds,
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
