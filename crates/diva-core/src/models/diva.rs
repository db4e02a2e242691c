//! The assembled speech LLM: Whisper encoder → connector → virtual tokens
//! spliced into the LLM's own chat template.
//!
//! The prompt is split the way the official code does it: render the template
//! with one placeholder user message and `add_generation_prompt`, split at the
//! placeholder, tokenize both halves without adding special tokens. The
//! student's input is `E(prefix) ⧺ virtual tokens ⧺ E(suffix)`; the teacher's
//! is `E(prefix ⧺ transcript ⧺ suffix)`. Both go through [`PromptSplit::assemble`]
//! so the two paths cannot drift apart.
//!
//! An optional text instruction ("Translate this to French") goes into a
//! system message rendered before the user turn — the slot the official code
//! uses — so the audio stays the whole user message and the split is unchanged.

use candle_core::{Result as CResult, Tensor};
use serde_json::json;

use super::exec::Exec;
use super::llm::{KvCache, Llm};
use crate::text::{LlmTokenizer, Message};
use crate::{Error, Result};

/// The placeholder the official implementation renders and splits at.
pub const PLACEHOLDER: &str = "PLACEHOLDER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSplit {
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
    /// What the template puts between an assistant reply's last token and the
    /// next user message's content (end of turn + user header), for later
    /// turns of a conversation whose earlier turns are already in the cache.
    pub between_turns: Vec<u32>,
}

impl PromptSplit {
    /// Split the tokenizer's chat template around the user's content.
    pub fn from_template(tok: &LlmTokenizer, instruction: Option<&str>) -> Result<Self> {
        let template = tok.chat()?;
        let mut messages = Vec::new();
        if let Some(i) = instruction {
            messages.push(Message::system(i));
        }
        messages.push(Message::user(PLACEHOLDER));
        let text = template.render(&messages, true, &json!({}))?;
        let mut parts = text.split(PLACEHOLDER);
        let (prefix, suffix) = match (parts.next(), parts.next(), parts.next()) {
            (Some(p), Some(s), None) => (p, s),
            _ => {
                return Err(Error::Config(
                    "the chat template does not render the user message exactly once".into(),
                ))
            }
        };
        // Render user/assistant/user with markers to find the turn boundary.
        const REPLY: &str = "REPLYMARKER";
        const NEXT: &str = "NEXTMARKER";
        messages.pop();
        messages.extend([
            Message::user(PLACEHOLDER),
            Message::assistant(REPLY),
            Message::user(NEXT),
        ]);
        let two = template.render(&messages, true, &json!({}))?;
        let between = two
            .split_once(REPLY)
            .and_then(|(_, rest)| rest.split_once(NEXT))
            .map(|(b, _)| b.to_string())
            .ok_or_else(|| {
                Error::Config("the chat template does not render a multi-turn conversation".into())
            })?;
        Ok(Self {
            prefix: tok.encode(prefix, false)?,
            suffix: tok.encode(suffix, false)?,
            between_turns: tok.encode(&between, false)?,
        })
    }

    /// A later turn: `E(between_turns) ⧺ middle ⧺ E(suffix)`, appended after
    /// the cache that holds the conversation so far (ending with a reply).
    pub fn next_turn(&self, llm: &Llm, middle: &Tensor) -> CResult<Tensor> {
        wrap(llm, &self.between_turns, middle, &self.suffix)
    }

    /// `E(prefix) ⧺ middle ⧺ E(suffix)` for `middle` `[1, m, d]`.
    pub fn assemble(&self, llm: &Llm, middle: &Tensor) -> CResult<Tensor> {
        wrap(llm, &self.prefix, middle, &self.suffix)
    }

    /// The constant prefix's keys and values (system prompt, user header),
    /// computed once and shared by every request, which then starts at the
    /// virtual tokens ([`Self::after_prefix`]). Exact, not an approximation:
    /// under causal attention the prefix positions never see what follows.
    /// Fork it per request with `clone()` (the tensors are shared, appends
    /// make new ones).
    pub fn prefix_cache(&self, llm: &Llm) -> CResult<KvCache> {
        let mut kv = llm.new_cache();
        if !self.prefix.is_empty() {
            llm.forward_embeds(
                &llm.embed_ids(&self.prefix)?,
                None,
                Some(&mut kv),
                Exec::Fused,
            )?;
        }
        Ok(kv)
    }

    /// `middle ⧺ E(suffix)`: the prompt after a [`Self::prefix_cache`].
    pub fn after_prefix(&self, llm: &Llm, middle: &Tensor) -> CResult<Tensor> {
        wrap(llm, &[], middle, &self.suffix)
    }

    /// The teacher's input for a transcript's token ids.
    pub fn teacher(&self, llm: &Llm, transcript: &[u32]) -> CResult<Tensor> {
        self.assemble(llm, &llm.embed_ids(transcript)?)
    }
}

fn wrap(llm: &Llm, before: &[u32], middle: &Tensor, after: &[u32]) -> CResult<Tensor> {
    let embed = |v: &[u32]| -> CResult<Option<Tensor>> {
        if v.is_empty() {
            return Ok(None);
        }
        llm.embed_ids(v).map(Some)
    };
    let middle = middle.to_dtype(llm.dtype)?;
    let parts: Vec<Tensor> = [embed(before)?, Some(middle), embed(after)?]
        .into_iter()
        .flatten()
        .collect();
    Tensor::cat(&parts, 1)
}
