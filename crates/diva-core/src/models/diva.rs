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

use super::llm::Llm;
use crate::text::{LlmTokenizer, Message};
use crate::{Error, Result};

/// The placeholder the official implementation renders and splits at.
pub const PLACEHOLDER: &str = "PLACEHOLDER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSplit {
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
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
        Ok(Self {
            prefix: tok.encode(prefix, false)?,
            suffix: tok.encode(suffix, false)?,
        })
    }

    /// `E(prefix) ⧺ middle ⧺ E(suffix)` for `middle` `[1, m, d]`.
    pub fn assemble(&self, llm: &Llm, middle: &Tensor) -> CResult<Tensor> {
        let dev = &llm.device;
        let ids = |v: &[u32]| Tensor::new(v, dev).and_then(|t| t.unsqueeze(0));
        let pre = llm.embed(&ids(&self.prefix)?)?;
        let suf = llm.embed(&ids(&self.suffix)?)?;
        Tensor::cat(&[&pre, &middle.to_dtype(pre.dtype())?, &suf], 1)
    }

    /// The teacher's input for a transcript's token ids.
    pub fn teacher(&self, llm: &Llm, transcript: &[u32]) -> CResult<Tensor> {
        let t = Tensor::new(transcript, &llm.device)?.unsqueeze(0)?;
        self.assemble(llm, &llm.embed(&t)?)
    }
}
