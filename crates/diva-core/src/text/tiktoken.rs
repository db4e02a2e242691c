//! A `tokenizers::Tokenizer` built from a tiktoken rank file (`*.tiktoken`: one
//! `base64(token bytes) rank` per line), as Qwen and OpenAI ship their byte-level BPE.
//!
//! A rank file has no merge list: tiktoken merges, within each pre-tokenized piece, the
//! adjacent pair whose concatenation has the lowest rank. A BPE model reproduces that when each
//! token of two or more bytes gets merges for every way of splitting it into two tokens of the
//! vocabulary, ordered by the token's rank (ties by the ranks of the halves). transformers'
//! `TikTokenConverter` derives merges the same way; this is our own implementation of the idea.
//!
//! The rest of the tokenizer is what the model family adds around its ranks: the split regex,
//! the special tokens (ids after the ranks) and, for Qwen2, NFC normalisation.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf_tokenizer::{byte_to_char, QWEN2_SPLIT};
use crate::{Error, Result};

/// What a model family adds to its tiktoken ranks.
#[derive(Debug, Clone)]
pub struct TiktokenSpec {
    /// The pre-tokenizer's split regex.
    pub split: &'static str,
    /// Special tokens and their ids (after the last rank).
    pub special: Vec<(String, u32)>,
    /// The end-of-sequence token, one of `special`.
    pub eos: String,
    /// Whether text is NFC-normalised before splitting.
    pub nfc: bool,
}

/// Qwen2 and Qwen2.5's special tokens, ids 151643.. (Qwen2.5's `tokenizer_config.json`).
const QWEN2_SPECIAL: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];
const QWEN2_FIRST_SPECIAL: u32 = 151_643;

impl TiktokenSpec {
    /// Qwen2 / Qwen2.5 (Instruct: eos `<|im_end|>`), for Qwen's `qwen.tiktoken`.
    pub fn qwen2_instruct() -> Self {
        Self {
            split: QWEN2_SPLIT,
            special: QWEN2_SPECIAL
                .iter()
                .zip(QWEN2_FIRST_SPECIAL..)
                .map(|(t, id)| (t.to_string(), id))
                .collect(),
            eos: "<|im_end|>".into(),
            nfc: true,
        }
    }
}

/// The `(token bytes, rank)` pairs of a rank file, in file order.
pub fn read_ranks(path: &Path) -> Result<Vec<(Vec<u8>, u32)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    parse_ranks(&text, path)
}

/// [`read_ranks`] on a rank file already read; `path` is only used in error messages.
pub fn parse_ranks(text: &str, path: &Path) -> Result<Vec<(Vec<u8>, u32)>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ranks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            Error::model(
                path,
                format!(
                    "line {}: {why}; a tiktoken rank file has `base64 rank` per line",
                    n + 1
                ),
            )
        };
        let (token, rank) = line
            .split_once(' ')
            .ok_or_else(|| bad("no space between token and rank"))?;
        let bytes = b64
            .decode(token)
            .map_err(|_| bad("the token is not base64"))?;
        let rank: u32 = rank.parse().map_err(|_| bad("the rank is not a number"))?;
        ranks.push((bytes, rank));
    }
    if ranks.is_empty() {
        return Err(Error::model(path, "the rank file is empty"));
    }
    Ok(ranks)
}

/// The byte-level BPE tokenizer of a tiktoken rank file.
pub fn tokenizer_from_tiktoken(path: &Path, spec: &TiktokenSpec) -> Result<Tokenizer> {
    tokenizer_from_ranks(&read_ranks(path)?, path, spec)
}

/// [`tokenizer_from_tiktoken`] on ranks already read ([`parse_ranks`]); `path` is only used
/// in error messages.
pub fn tokenizer_from_ranks(
    ranks: &[(Vec<u8>, u32)],
    path: &Path,
    spec: &TiktokenSpec,
) -> Result<Tokenizer> {
    let by_bytes: HashMap<&[u8], u32> = ranks.iter().map(|(b, r)| (b.as_slice(), *r)).collect();
    if by_bytes.len() != ranks.len() {
        return Err(Error::model(path, "a token appears twice in the rank file"));
    }
    let mut seen_ranks: Vec<u32> = ranks.iter().map(|(_, r)| *r).collect();
    seen_ranks.sort_unstable();
    if seen_ranks.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::model(path, "two tokens share a rank"));
    }
    let Some(&max_rank) = seen_ranks.last() else {
        return Err(Error::model(path, "the rank file is empty"));
    };
    if let Some((t, id)) = spec.special.iter().find(|(_, id)| *id <= max_rank) {
        return Err(Error::model(
            path,
            format!(
                "special token {t} has id {id}, which a rank already uses (max rank {max_rank})"
            ),
        ));
    }

    let table = byte_to_char();
    let spell = |b: &[u8]| -> String { b.iter().map(|&x| table[x as usize]).collect() };
    // Merges: every split of a token into two vocabulary tokens, by the token's rank, then by
    // the halves' ranks (the order tiktoken's lowest-rank-first merging implies).
    let mut merges: Vec<(u32, u32, u32, usize, usize)> = Vec::new();
    for (i, (bytes, rank)) in ranks.iter().enumerate() {
        for cut in 1..bytes.len() {
            let (l, r) = bytes.split_at(cut);
            if let (Some(&rl), Some(&rr)) = (by_bytes.get(l), by_bytes.get(r)) {
                merges.push((*rank, rl, rr, i, cut));
            }
        }
    }
    merges.sort_unstable();
    let merges: Vec<(String, String)> = merges
        .into_iter()
        .map(|(_, _, _, i, cut)| {
            let (l, r) = ranks[i].0.split_at(cut);
            (spell(l), spell(r))
        })
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = ranks.iter().map(|(b, r)| (spell(b), *r)).collect();

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(false)
        .build()
        .map_err(|e| Error::model(path, format!("cannot build BPE from the ranks: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    if spec.nfc {
        tok.with_normalizer(Some(NFC));
    }
    let split = Split::new(
        SplitPattern::Regex(spec.split.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Config(format!("bad split regex: {e}")))?;
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Specials are added in id order, so each lands on its declared id; checked below.
    let mut special = spec.special.clone();
    special.sort_by_key(|(_, id)| *id);
    for (k, (t, id)) in special.iter().enumerate() {
        let expected = u64::from(max_rank) + 1 + k as u64;
        if u64::from(*id) != expected {
            return Err(Error::Config(format!(
                "special token {t} has id {id}; special ids must follow the ranks without gaps \
                 (expected {expected})"
            )));
        }
    }
    let added: Vec<AddedToken> = special
        .iter()
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tok.add_special_tokens(&added);
    for (t, id) in &special {
        if tok.token_to_id(t) != Some(*id) {
            return Err(Error::Config(format!(
                "special token {t} did not get id {id}"
            )));
        }
    }
    Ok(tok)
}
