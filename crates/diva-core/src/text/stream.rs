//! Incremental detokenisation for streaming output.
//!
//! Byte-level BPE tokens can end in the middle of a multi-byte UTF-8 character (an emoji is
//! often three tokens), and some decoders treat the start of a sequence specially. So each new
//! token is decoded together with the tokens since the last emitted piece, and text is released
//! only once that decode no longer ends in U+FFFD (an incomplete character). The concatenation of
//! everything [`TokenStream::push`] and [`TokenStream::finish`] return equals
//! `decode(all ids)`.

use super::LlmTokenizer;
use crate::Result;

const REPLACEMENT: char = '\u{FFFD}';

pub struct TokenStream<'a> {
    tok: &'a LlmTokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the window decoded for context: ids before `read` whose text is already out.
    prefix: usize,
    /// Ids before this have been emitted.
    read: usize,
}

impl<'a> TokenStream<'a> {
    /// A stream decoding with `tok`; `skip_special` drops special tokens (`<|im_end|>`) as
    /// `decode(.., true)` does.
    pub fn new(tok: &'a LlmTokenizer, skip_special: bool) -> Self {
        Self {
            tok,
            skip_special,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Feeds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let prefix_text = self.decode(self.prefix, self.read)?;
        let text = self.decode(self.prefix, self.ids.len())?;
        if text.len() > prefix_text.len()
            && !text.ends_with(REPLACEMENT)
            && text.is_char_boundary(prefix_text.len())
            && text.starts_with(&prefix_text)
        {
            let new = text[prefix_text.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(Some(new))
        } else {
            Ok(None)
        }
    }

    /// Flushes whatever is held back (an incomplete character decodes to U+FFFD) and resets
    /// the stream for the next sequence.
    pub fn finish(&mut self) -> Result<Option<String>> {
        let prefix_text = self.decode(self.prefix, self.read)?;
        let text = self.decode(self.prefix, self.ids.len())?;
        let rest = if text.starts_with(&prefix_text) {
            text[prefix_text.len()..].to_string()
        } else {
            // Not expected with byte-level decoders; fall back to the whole tail.
            self.decode(self.read, self.ids.len())?
        };
        self.reset();
        Ok((!rest.is_empty()).then_some(rest))
    }

    /// Forgets every id fed so far.
    pub fn reset(&mut self) {
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
    }

    /// The ids fed since the last reset.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    fn decode(&self, from: usize, to: usize) -> Result<String> {
        if from >= to {
            return Ok(String::new());
        }
        self.tok.decode(&self.ids[from..to], self.skip_special)
    }
}
