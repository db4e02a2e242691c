//! Whisper's tokenizer (`tokenizer.json`) and its special tokens.

use std::path::Path;

use crate::{Error, Result};

#[derive(Clone)]
pub struct WhisperTokenizer {
    tok: tokenizers::Tokenizer,
    pub eot: u32,
    pub sot: u32,
    pub sot_prev: Option<u32>,
    pub sot_lm: Option<u32>,
    pub transcribe: Option<u32>,
    pub translate: Option<u32>,
    pub no_speech: Option<u32>,
    pub no_timestamps: u32,
    /// `<|0.00|>`, the first timestamp token; every id from here up is a timestamp.
    pub timestamp_begin: Option<u32>,
    /// Multilingual models take `<|lang|><|transcribe|>` after
    /// `<|startoftranscript|>`. English-only vocabularies contain those tokens
    /// too, so this comes from the model (`vocab_size >= 51865`), not the tokenizer.
    pub multilingual: bool,
}

impl std::fmt::Debug for WhisperTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTokenizer")
            .field("eot", &self.eot)
            .field("sot", &self.sot)
            .finish()
    }
}

impl WhisperTokenizer {
    pub fn from_file(path: &Path, multilingual: bool) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::model(
                path,
                "tokenizer.json not found next to the Whisper weights",
            ));
        }
        let tok = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::model(path, format!("not a valid tokenizer.json: {e}")))?;
        let id = |s: &str| tok.token_to_id(s);
        let need = |s: &str| {
            id(s).ok_or_else(|| {
                Error::model(path, format!("no `{s}` token: not a Whisper tokenizer"))
            })
        };
        let eot = need("<|endoftext|>")?;
        let sot = need("<|startoftranscript|>")?;
        let no_timestamps = need("<|notimestamps|>")?;
        Ok(Self {
            eot,
            sot,
            sot_prev: id("<|startofprev|>"),
            sot_lm: id("<|startoflm|>"),
            transcribe: id("<|transcribe|>"),
            translate: id("<|translate|>"),
            no_speech: id("<|nospeech|>").or_else(|| id("<|nocaptions|>")),
            no_timestamps,
            timestamp_begin: id("<|0.00|>"),
            multilingual,
            tok,
        })
    }

    pub fn language_token(&self, lang: &str) -> Option<u32> {
        self.tok.token_to_id(&format!("<|{lang}|>"))
    }

    /// The decoder prompt for plain transcription without timestamps:
    /// `<|startoftranscript|>` (+ `<|lang|><|transcribe|>` for multilingual
    /// models) + `<|notimestamps|>`.
    pub fn transcription_prompt(&self, language: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.sot];
        if self.multilingual {
            let lang = self.language_token(language).ok_or_else(|| {
                Error::Config(format!(
                    "unknown language code `{language}` for this Whisper model"
                ))
            })?;
            ids.push(lang);
            ids.extend(self.transcribe);
        }
        ids.push(self.no_timestamps);
        Ok(ids)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tok
            .encode(text, false)
            .map_err(|e| Error::Config(format!("tokenizer: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, dropping special and timestamp tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text_ids: Vec<u32> = ids.iter().copied().filter(|&t| t < self.eot).collect();
        self.tok
            .decode(&text_ids, true)
            .map_err(|e| Error::Config(format!("tokenizer: {e}")))
    }

    /// Tokens that are never speech (music notes, brackets, speaker-turn
    /// dashes…), the same set as OpenAI's `Tokenizer.non_speech_tokens`, which
    /// `suppress_tokens=[-1]` expands to in openai-whisper and faster-whisper.
    pub fn non_speech_tokens(&self) -> Result<Vec<u32>> {
        let mut symbols: Vec<String> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
            .chars()
            .map(String::from)
            .collect();
        symbols.extend(
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
                .split(' ')
                .map(String::from),
        );
        let misc: Vec<String> = "♩♪♫♬♭♮♯".chars().map(String::from).collect();
        let mut out = std::collections::BTreeSet::new();
        for s in [" -", " '"] {
            if let Some(&t) = self.encode(s)?.first() {
                out.insert(t);
            }
        }
        for s in symbols.iter().chain(&misc) {
            let is_misc = misc.contains(s);
            for variant in [s.clone(), format!(" {s}")] {
                let ids = self.encode(&variant)?;
                if ids.len() == 1 || (is_misc && !ids.is_empty()) {
                    out.insert(ids[0]);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// What faster-whisper/openai-whisper suppress at every step by default.
    pub fn default_suppressed(&self) -> Result<Vec<u32>> {
        let mut s = self.non_speech_tokens()?;
        s.push(self.sot);
        s.extend(
            [
                self.transcribe,
                self.translate,
                self.sot_prev,
                self.sot_lm,
                self.no_speech,
            ]
            .into_iter()
            .flatten(),
        );
        s.sort_unstable();
        s.dedup();
        Ok(s)
    }
}
