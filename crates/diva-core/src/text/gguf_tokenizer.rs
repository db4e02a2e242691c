//! A `tokenizers::Tokenizer` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! A GGUF carries no `tokenizer.json`: llama.cpp stores the vocabulary, the merges, the token
//! types and the special token ids as metadata. This module rebuilds the same fast tokenizer
//! transformers (5.24) builds from them (`integrations/gguf/gguf_tokenizer_mapping.py`:
//! `byte_level_tokenizer`, `add_gguf_special_tokens`, `set_split_regex`), so ids match
//! `AutoTokenizer.from_pretrained(dir, gguf_file=...)` exactly:
//!
//! - model: byte-level BPE over the file's tokens and merges, no unk token, no byte fallback.
//!   A token spelled outside the byte-level alphabet is respelled byte by byte, as transformers does.
//! - pre-tokenizer: for the `tokenizer.ggml.pre` names transformers maps to a split regex
//!   (llama-bpe, qwen2, tekken, gpt-4o, …) `Split(regex, isolated)` then `ByteLevel` without its
//!   own regex; otherwise GPT-2's `ByteLevel` with its built-in regex (see [`pre_tokenizer_regex`]).
//! - decoder: `ByteLevel`.
//! - added tokens: token type 3 (control) → special; type 4 (user-defined) → plain added token.
//! - post-processor: `[bos] $A [eos]` following `tokenizer.ggml.add_bos_token` / `add_eos_token`.
//!
//! Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is supported; SentencePiece (`llama`)
//! and unigram (`t5`) vocabularies are refused with an error naming the model type.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Model, SplitDelimiterBehavior, Tokenizer};

use crate::{Error, Result};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split (transformers `_LLAMA3_SPLIT`): letters, numbers in groups of up to three, …
pub const LLAMA3_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
/// Qwen2's split (`models/qwen2/tokenization_qwen2.py` `PRETOKENIZE_REGEX`): single digits.
pub const QWEN2_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
/// Qwen3.5's split (`models/qwen3_5/tokenization_qwen3_5.py`): marks join letters.
pub const QWEN35_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}",
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
/// Mistral's Tekken split (transformers `_TEKKEN_SPLIT`).
pub const TEKKEN_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
/// GPT-4o's split (transformers `_GPT4O_SPLIT`), also Llama 4's.
pub const GPT4O_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// `tokenizer.ggml.pre` names for which transformers keeps GPT-2's `ByteLevel` regex
/// (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`).
///
/// `smollm`, `starcoder` and `refact` are here because transformers has no split for them and
/// falls back to GPT-2's. llama.cpp (and SmolLM2's own `tokenizer.json`) isolate every digit
/// first; the two agree on SmolLM2's vocabulary except where a run of two or more blanks precedes
/// a digit (`"a  1"`: GPT-2 gives `a Ġ Ġ 1`, digit isolation `a ĠĠ 1`). We follow transformers.
const GPT2_PRE: &[&str] = &[
    "default",
    "gpt2",
    "gpt-2",
    "phi-2",
    "olmo",
    "roberta-bpe",
    "smollm",
    "starcoder",
    "refact",
];

/// The split regex transformers uses for a `tokenizer.ggml.pre` name: `Ok(None)` means GPT-2's
/// built-in `ByteLevel` regex, `Err` lists what is supported.
pub fn pre_tokenizer_regex(pre: Option<&str>) -> std::result::Result<Option<&'static str>, String> {
    let Some(pre) = pre else { return Ok(None) };
    let regex = match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        p if GPT2_PRE.contains(&p) => return Ok(None),
        other => {
            return Err(format!(
                "unsupported pre-tokenizer `{other}` (tokenizer.ggml.pre); supported: {}, \
                 llama-bpe/llama3 and its aliases, qwen2, qwen35, tekken, gpt-4o/llama4",
                GPT2_PRE.join(", ")
            ))
        }
    };
    Ok(Some(regex))
}

/// The byte-level BPE tokenizer a GGUF describes, as transformers builds it. `path` is only
/// used in error messages.
pub fn tokenizer_from_gguf(content: &Content, path: &Path) -> Result<Tokenizer> {
    let md = Meta { content, path };
    let model = md.string("tokenizer.ggml.model")?.ok_or_else(|| {
        md.err("no tokenizer.ggml.model in the metadata: the file carries no tokenizer")
    })?;
    if model != "gpt2" {
        let kind = match model {
            "llama" => " (SentencePiece BPE)",
            "t5" => " (unigram)",
            "bert" => " (WordPiece)",
            _ => "",
        };
        return Err(md.err(format!(
            "unsupported tokenizer model `{model}`{kind} (tokenizer.ggml.model); \
             only byte-level BPE (`gpt2`) is supported"
        )));
    }
    let pre = md.string("tokenizer.ggml.pre")?;
    let split = pre_tokenizer_regex(pre).map_err(|e| md.err(e))?;

    let tokens = md
        .strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| md.err("no tokenizer.ggml.tokens in the metadata"))?;
    let merges = md
        .strings("tokenizer.ggml.merges")?
        .ok_or_else(|| md.err("no tokenizer.ggml.merges in the metadata (needed for BPE)"))?;
    let token_types = md.ints("tokenizer.ggml.token_type")?.unwrap_or_default();

    // The vocabulary, with any token outside the byte-level alphabet respelled byte by byte.
    let alphabet = ByteLevel::alphabet();
    let bytes_char = byte_to_char();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        let key = if in_alphabet(token) {
            token.to_string()
        } else {
            token.bytes().map(|b| bytes_char[b as usize]).collect()
        };
        vocab.insert(key, id as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    md.err(format!(
                        "merge `{m}` is not two tokens separated by a space"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| {
            md.err(format!(
                "cannot build the BPE model from the vocabulary: {e}"
            ))
        })?;

    let mut tok = Tokenizer::new(bpe);
    let pre_tokenizer: PreTokenizerWrapper = match split {
        None => ByteLevel::new(false, true, true).into(),
        Some(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| md.err(format!("bad split regex for `{pre:?}`: {e}")))?;
            Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into()
        }
    };
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(ByteLevelDecoder::default()));

    // Control tokens are special (skipped by `decode(.., skip_special = true)` and never split);
    // one spelled outside the byte alphabet is a llama.cpp mislabel and skipped, as transformers does.
    let type_of = |i: usize| token_types.get(i).copied().unwrap_or(1);
    let control: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, t)| type_of(i) == TOKEN_TYPE_CONTROL && in_alphabet(t))
        .map(|(_, t)| AddedToken::from(t.to_string(), true))
        .collect();
    tok.add_special_tokens(&control);
    // transformers also registers the bos/eos/unk/pad tokens as special; they are nearly always
    // control tokens already. Only ones the model vocabulary has as spelled are added (no new ids).
    let special_ids = [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
    ];
    let mut named = Vec::new();
    for key in special_ids {
        if let Some(t) = md.token_at(key, &tokens)? {
            if tok.get_model().token_to_id(t).is_some() && in_alphabet(t) {
                named.push(AddedToken::from(t.to_string(), true));
            }
        }
    }
    tok.add_special_tokens(&named);
    let user: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, t)| {
            type_of(i) == TOKEN_TYPE_USER_DEFINED && tok.get_model().token_to_id(t).is_some()
        })
        .map(|(_, t)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tok.add_tokens(&user);

    // `[bos] $A [eos]`, as transformers' `update_post_processor` writes it.
    let bos = md.token_at("tokenizer.ggml.bos_token_id", &tokens)?;
    let eos = md.token_at("tokenizer.ggml.eos_token_id", &tokens)?;
    let add_bos = md.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false) && bos.is_some();
    let add_eos = md.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false) && eos.is_some();
    let processor = post_processor(
        bos.filter(|_| add_bos).map(|t| (t, tok.token_to_id(t))),
        eos.filter(|_| add_eos).map(|t| (t, tok.token_to_id(t))),
        path,
    )?;
    tok.with_post_processor(Some(processor));
    Ok(tok)
}

/// `[bos:0] $A:0 [eos:0]` / `[bos:0] $A:0 [eos:0] [bos:1] $B:1 [eos:1]`.
fn post_processor(
    bos: Option<(&str, Option<u32>)>,
    eos: Option<(&str, Option<u32>)>,
    path: &Path,
) -> Result<TemplateProcessing> {
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Vec::new();
    for (seq, type_id) in [("$A", 0), ("$B", 1)] {
        let list = if type_id == 0 { &mut single } else { &mut pair };
        if let Some((t, _)) = bos {
            list.push(format!("{t}:{type_id}"));
        }
        list.push(format!("{seq}:{type_id}"));
        if let Some((t, _)) = eos {
            list.push(format!("{t}:{type_id}"));
        }
    }
    let pair = [single.clone(), pair].concat();
    for (t, id) in [bos, eos].into_iter().flatten() {
        let id = id.ok_or_else(|| Error::model(path, format!("special token `{t}` has no id")))?;
        specials.push((t.to_string(), id));
    }
    let bad = |e: String| Error::model(path, format!("post-processor template: {e}"));
    let mut builder = TemplateProcessing::builder();
    builder.try_single(single.join(" ")).map_err(bad)?;
    builder.try_pair(pair.join(" ")).map_err(bad)?;
    builder.special_tokens(specials);
    builder
        .build()
        .map_err(|e| Error::model(path, format!("post-processor: {e}")))
}

/// GPT-2's `bytes_to_unicode`: the printable character standing for each byte.
pub(crate) fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            // unwrap-ok: 255 + n ≤ 255 + 256 is a valid scalar value, not from the file.
            char::from_u32(255 + n).expect("valid code point")
        };
    }
    table
}

/// Typed access to GGUF metadata, with errors naming the file and key.
pub(crate) struct Meta<'a> {
    pub content: &'a Content,
    pub path: &'a Path,
}

impl<'a> Meta<'a> {
    pub fn err(&self, problem: impl Into<String>) -> Error {
        Error::model(self.path, problem.into())
    }

    pub fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.err(format!("{key} is {:?}, expected a string", v.value_type()))),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(v) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.err(format!("{key} is not an array")));
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(self.err(format!("{key} holds a non-string"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.err(format!("{key} is not an array")));
        };
        items
            .iter()
            .map(|v| int(v).ok_or_else(|| self.err(format!("{key} holds a non-integer"))))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn uint(&self, key: &str) -> Result<Option<u32>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(v) => int(v)
                .and_then(|i| u32::try_from(i).ok())
                .map(Some)
                .ok_or_else(|| self.err(format!("{key} is not a token id"))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => int(v)
                .map(|i| Some(i != 0))
                .ok_or_else(|| self.err(format!("{key} is not a boolean"))),
        }
    }

    /// The token a `*_token_id` key points at.
    pub fn token_at<'t>(&self, key: &str, tokens: &[&'t str]) -> Result<Option<&'t str>> {
        match self.uint(key)? {
            None => Ok(None),
            Some(id) => tokens.get(id as usize).copied().map(Some).ok_or_else(|| {
                self.err(format!(
                    "{key} = {id} is outside the vocabulary ({} tokens)",
                    tokens.len()
                ))
            }),
        }
    }
}

fn int(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x as i64,
        Value::I8(x) => x as i64,
        Value::U16(x) => x as i64,
        Value::I16(x) => x as i64,
        Value::U32(x) => x as i64,
        Value::I32(x) => x as i64,
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}
