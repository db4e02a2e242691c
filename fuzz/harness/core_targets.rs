//! The fuzz targets over diva-core's readers of untrusted files. Each takes the
//! fuzzer's bytes and feeds them to the same entry points diva uses on a file
//! from disk or an upload; results are ignored: an error is a pass, a panic (or
//! a hang, or an allocation the input cannot justify) is a finding.
//!
//! Shared by the cargo-fuzz crate (`fuzz/`, nightly) and the stable replay test
//! `crates/diva-core/tests/fuzz_replay.rs`, which runs every committed corpus
//! and regression file through [`TARGETS`].

use std::io::Cursor;
use std::path::Path;

use candle_core::Device;
use diva_core::audio::{load_pcm_16k_bytes, resample::resample};
use diva_core::models::checkpoint::DivaConfig;
use diva_core::models::llm::LlmConfig;
use diva_core::models::whisper::{ct2_names, WhisperConfig};
use diva_core::text::chat_template::{ChatTemplate, Message};
use diva_core::text::gguf_tokenizer::QWEN2_SPLIT;
use diva_core::text::tiktoken::{parse_ranks, tokenizer_from_ranks, TiktokenSpec};
use diva_core::text::LlmTokenizer;
use diva_core::weights::gguf::{read_content, GgufFile};
use diva_core::weights::{ct2, safetensors_io};

/// A target: (name, entry point).
pub type Target = (&'static str, fn(&[u8]));

/// Every target of this file: (name, entry point). The name is the folder under
/// `fuzz/corpus/` and `fuzz/regressions/`, and the cargo-fuzz binary.
pub const TARGETS: &[Target] = &[
    ("audio", audio),
    ("gguf", gguf),
    ("ct2", ct2_model),
    ("safetensors", safetensors),
    ("json_config", json_config),
    ("hf_tokenizer", hf_tokenizer),
    ("tiktoken", tiktoken),
    ("chat_template", chat_template),
];

/// Separates the files of a multi-file input (`hf_tokenizer`).
pub const FILE_SEPARATOR: &[u8] = b"\n#####\n";

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A fixed little conversation to render templates with.
fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a helpful assistant."),
        Message::user("Hello! <|im_start|> {{ not a tag }}"),
        Message::assistant("Hi."),
        Message::user("Bye"),
    ]
}

/// Exercise a tokenizer the way generation does: encode, decode, render its template.
fn use_tokenizer(tok: &LlmTokenizer) {
    if let Ok(ids) = tok.encode("Hello world! <|im_start|>user\n¿Qué tal? 你好 🎧", true) {
        let _ = tok.decode(&ids, true);
        let _ = tok.decode(&ids, false);
    }
    let _ = tok.decode(&[0, 1, 2, u32::MAX], true);
    if let Ok(chat) = tok.chat() {
        let _ = chat.render(&conversation(), true, &());
        let _ = chat.split_at_user_placeholder("<|DIVA_AUDIO|>");
    }
}

/// Audio: byte 0 picks the extension hint and a second output rate; the rest is the
/// file, decoded as an upload is (`load_pcm_16k_bytes`: decode, downmix, resample to
/// 16 kHz, silence check), then resampled once more.
pub fn audio(data: &[u8]) {
    let Some((&sel, file)) = data.split_first() else {
        return;
    };
    const HINTS: [Option<&str>; 8] = [
        None,
        Some("wav"),
        Some("flac"),
        Some("mp3"),
        Some("ogg"),
        Some("opus"),
        Some("oga"),
        Some("bin"),
    ];
    const RATES: [u32; 8] = [16_000, 8_000, 22_050, 44_100, 48_000, 11_025, 1, 1_024_000];
    let hint = HINTS[usize::from(sel & 7)];
    let Ok(pcm) = load_pcm_16k_bytes(file.to_vec(), hint, Path::new("fuzz.audio")) else {
        return;
    };
    let _ = resample(&pcm, 16_000, RATES[usize::from(sel >> 3) & 7]);
}

/// GGUF: header, metadata and tensor infos (`read_content`), every tensor (bounded by
/// the file), and the tokenizer and chat template built from the metadata.
pub fn gguf(data: &[u8]) {
    let path = Path::new("fuzz.gguf");
    let mut reader = Cursor::new(data);
    let Ok(content) = read_content(&mut reader, path) else {
        return;
    };
    let g = GgufFile {
        path: path.to_path_buf(),
        content,
    };
    for key in [
        "llama.context_length",
        "llama.embedding_length",
        "llama.attention.head_count",
        "general.alignment",
    ] {
        let _ = g.u64(key);
    }
    let _ = g.f64("llama.rope.freq_base");
    let _ = g.string("general.architecture");
    let mut names: Vec<&String> = g.content.tensor_infos.keys().collect();
    names.sort();
    for name in names.into_iter().take(8) {
        if let Ok(t) = g.tensor_from(&mut reader, name, &Device::Cpu) {
            let _ = t.dequantize(&Device::Cpu);
        }
    }
    if let Ok(tok) = LlmTokenizer::from_gguf_content(&g.content, path) {
        use_tokenizer(&tok);
    }
}

/// CTranslate2 `model.bin`, and (for a Whisper spec) its tensors renamed to HF's.
pub fn ct2_model(data: &[u8]) {
    if let Ok((header, tensors)) = ct2::parse(data, &Device::Cpu) {
        if header.spec.contains("Whisper") {
            let _ = ct2_names::to_hf(tensors);
        }
    }
}

/// safetensors: header and tensors, as a checkpoint's `model.safetensors` is read.
pub fn safetensors(data: &[u8]) {
    let _ = safetensors_io::load_bytes(data, Path::new("fuzz.safetensors"), &Device::Cpu);
}

/// The JSON configs: an HF LLM `config.json`, an HF Whisper `config.json`, the DiVA
/// checkpoint's `config.json`, a `model.safetensors.index.json`.
pub fn json_config(data: &[u8]) {
    let text = text(data);
    let _ = LlmConfig::from_hf_json(&text);
    let _ = serde_json::from_str::<WhisperConfig>(&text);
    let _ = DivaConfig::from_json(&text, Path::new("fuzz/config.json"));
    let _ = safetensors_io::shards_from_index_json(
        &text,
        Path::new("fuzz/model.safetensors.index.json"),
    );
}

/// An HF tokenizer directory: `tokenizer.json`, then (separated by [`FILE_SEPARATOR`])
/// `tokenizer_config.json`, `generation_config.json` and `chat_template.jinja`.
pub fn hf_tokenizer(data: &[u8]) {
    let mut parts = split(data, FILE_SEPARATOR);
    let tokenizer_json = parts.next().unwrap_or_default();
    let files: Vec<Option<String>> = (0..3).map(|_| parts.next().map(text)).collect();
    let read = |name: &str| {
        Ok(match name {
            "tokenizer_config.json" => files[0].clone(),
            "generation_config.json" => files[1].clone(),
            "chat_template.jinja" => files[2].clone(),
            _ => None,
        })
    };
    if let Ok(tok) = LlmTokenizer::from_hf_files(Path::new("fuzz"), tokenizer_json, read) {
        use_tokenizer(&tok);
    }
}

/// A tiktoken rank file, with two special tokens right after its last rank.
pub fn tiktoken(data: &[u8]) {
    let path = Path::new("fuzz.tiktoken");
    let Ok(ranks) = parse_ranks(&text(data), path) else {
        return;
    };
    let max = ranks.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let spec = TiktokenSpec {
        split: QWEN2_SPLIT,
        special: vec![
            ("<|endoftext|>".into(), max.wrapping_add(1)),
            ("<|im_end|>".into(), max.wrapping_add(2)),
        ],
        eos: "<|im_end|>".into(),
        nfc: true,
    };
    if let Ok(tok) = tokenizer_from_ranks(&ranks, path, &spec) {
        if let Ok(enc) = tok.encode_fast("Hello world! ¿Qué tal? 你好<|im_end|>", true) {
            let _ = tok.decode(enc.get_ids(), false);
        }
    }
}

/// An untrusted chat template (as a GGUF's `tokenizer.chat_template`), compiled and
/// rendered on a fixed conversation, with and without the generation prompt.
pub fn chat_template(data: &[u8]) {
    let Ok(t) = ChatTemplate::new(text(data), Some("<s>"), Some("</s>")) else {
        return;
    };
    let _ = t.render(&conversation(), true, &());
    let _ = t.render(
        &conversation()[..1],
        false,
        &serde_json::json!({"tools": [{"name": "f"}]}),
    );
    let _ = t.split_at_user_placeholder("<|DIVA_AUDIO|>");
}

/// `data` cut at every `sep`.
fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}
