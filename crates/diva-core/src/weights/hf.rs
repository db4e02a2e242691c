//! Hugging Face model directories and hub ids.

use std::path::{Path, PathBuf};

use super::safetensors_io;
use super::TensorMap;
use crate::{Error, Result};
use candle_core::Device;

/// The weight files of a local HF directory: `model.safetensors`, or the
/// shards named by `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return safetensors_io::shards_from_index(&index);
    }
    Err(Error::model(
        dir,
        "no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported: convert them to safetensors)",
    ))
}

/// Load all weights of a local HF directory.
pub fn load_dir(dir: &Path, device: &Device) -> Result<TensorMap> {
    safetensors_io::load_files(&weight_files(dir)?, device)
}

/// Resolve `id` (e.g. `openai/whisper-tiny.en`) to a local snapshot directory
/// through hf-hub, downloading config, tokenizer and weights as needed.
///
/// Files already in the Hugging Face cache are used without network access.
/// The cache and endpoint follow `HF_HOME` and `HF_ENDPOINT`, as Python's
/// `huggingface_hub` does; with `HF_HUB_OFFLINE=1` only the cache is read.
pub fn fetch_repo(id: &str, files: &[&str]) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    if offline() {
        return from_cache(&cache, id, files);
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the Hugging Face hub client: {e}")))?;
    let repo = api.model(id.to_string());
    let mut dir = None;
    for f in files {
        match repo.get(f) {
            Ok(p) => dir = p.parent().map(Path::to_path_buf),
            Err(e) if *f == "model.safetensors" => {
                // Sharded repos have an index instead.
                let idx = repo.get("model.safetensors.index.json").map_err(|_| {
                    Error::Config(format!("cannot download {f} of {id} from the hub: {e}"))
                })?;
                for shard in safetensors_io::shards_from_index(&idx)? {
                    let name = shard
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string();
                    repo.get(&name).map_err(|e| {
                        Error::Config(format!("cannot download {name} of {id}: {e}"))
                    })?;
                }
                dir = idx.parent().map(Path::to_path_buf);
            }
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot download {f} of {id} from the hub: {e} (a copy in the Hugging Face \
                     cache, {}, is used without network access)",
                    cache.path().display()
                )))
            }
        }
    }
    dir.ok_or_else(|| Error::Config(format!("hub repo {id}: nothing downloaded")))
}

/// `HF_HUB_OFFLINE` set to a true value, as `huggingface_hub` reads it.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The snapshot directory of `id` in the cache, when it holds all of `files`
/// (or the shards of `model.safetensors.index.json` in place of `model.safetensors`).
fn from_cache(cache: &hf_hub::Cache, id: &str, files: &[&str]) -> Result<PathBuf> {
    let repo = cache.model(id.to_string());
    let missing = |f: &str| {
        Error::Config(format!(
            "{f} of {id} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set: \
             unset it to download, or point HF_HOME at a cache that has the repo",
            cache.path().display()
        ))
    };
    let mut dir = None;
    for f in files {
        let path = match repo.get(f) {
            Some(p) => p,
            None if *f == "model.safetensors" => {
                let idx = repo
                    .get("model.safetensors.index.json")
                    .ok_or_else(|| missing(f))?;
                for shard in safetensors_io::shards_from_index(&idx)? {
                    if !shard.is_file() {
                        return Err(missing(&shard.display().to_string()));
                    }
                }
                idx
            }
            None => return Err(missing(f)),
        };
        dir = path.parent().map(Path::to_path_buf);
    }
    dir.ok_or_else(|| Error::Config(format!("hub repo {id}: no files asked for")))
}

/// Whether a string looks like a hub id (`owner/name`) rather than a path.
pub fn looks_like_hub_id(s: &str) -> bool {
    let p = Path::new(s);
    !p.exists() && !s.starts_with('.') && !s.starts_with('/') && s.split('/').count() == 2
}
