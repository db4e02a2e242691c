//! The model cache (`$DIVA_HOME`, default `~/.cache/diva`) and how a model
//! argument (`tiny.en`, a directory, or a hub id) resolves to a directory.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Models the fetch script knows, by short name → directory under `models/`.
pub const KNOWN_MODELS: &[(&str, &str)] = &[
    ("tiny.en", "whisper-tiny.en"),
    ("base", "whisper-base"),
    ("smollm2", "smollm2-135m-instruct"),
];

/// The default Whisper for transcription.
pub const DEFAULT_WHISPER: &str = "tiny.en";

/// The default text LLM.
pub const DEFAULT_LLM: &str = "smollm2";

/// Files an LLM hub repository must provide.
const LLM_HUB_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors",
];

/// Resolve an LLM argument: a fetched name (`smollm2`), a `.gguf` file, an HF
/// directory, or a hub id. Returns a GGUF file or an HF directory.
pub fn resolve_llm(arg: &str) -> Result<PathBuf> {
    if let Some((_, dir)) = KNOWN_MODELS
        .iter()
        .find(|(n, d)| *n == arg && !d.starts_with("whisper"))
    {
        let path = models_dir().join(dir);
        if !is_complete(&path) {
            return Err(Error::MissingCache {
                what: format!("model `{arg}`"),
                path,
            });
        }
        return Ok(path.join("model.gguf"));
    }
    let p = Path::new(arg);
    if p.is_file() || p.is_dir() {
        return Ok(p.to_path_buf());
    }
    if super::hf::looks_like_hub_id(arg) {
        return super::hf::fetch_repo(arg, LLM_HUB_FILES);
    }
    Err(Error::Config(format!(
        "LLM `{arg}` is neither a fetched name (smollm2), a .gguf file, an HF directory, nor a hub id like HuggingFaceTB/SmolLM2-135M-Instruct"
    )))
}

/// Files a Whisper hub repository must provide.
const WHISPER_HUB_FILES: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];

pub fn diva_home() -> PathBuf {
    if let Some(h) = std::env::var_os("DIVA_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("diva")
}

pub fn models_dir() -> PathBuf {
    diva_home().join("models")
}

/// Whether the fetch script finished installing `dir` (it writes the marker last).
pub fn is_complete(dir: &Path) -> bool {
    dir.join(".diva-complete").is_file()
}

/// Resolve a model argument to a local directory:
/// 1. a short name from [`KNOWN_MODELS`] → the cache (error if not fetched);
/// 2. an existing directory → itself;
/// 3. `owner/name` → downloaded through hf-hub.
pub fn resolve_whisper(arg: &str) -> Result<PathBuf> {
    if let Some((_, dir)) = KNOWN_MODELS.iter().find(|(n, _)| *n == arg) {
        let path = models_dir().join(dir);
        if !is_complete(&path) {
            return Err(Error::MissingCache {
                what: format!("model `{arg}`"),
                path,
            });
        }
        return Ok(path);
    }
    let p = Path::new(arg);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    if super::hf::looks_like_hub_id(arg) {
        return super::hf::fetch_repo(arg, WHISPER_HUB_FILES);
    }
    let names: Vec<&str> = KNOWN_MODELS.iter().map(|(n, _)| *n).collect();
    Err(Error::Config(format!(
        "model `{arg}` is neither a known name ({}), a directory, nor a hub id like openai/whisper-tiny.en",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_argument_is_explained() {
        let e = resolve_whisper("./definitely/not/here")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither a known name"), "{e}");
    }
}
