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
pub fn fetch_repo(id: &str, files: &[&str]) -> Result<PathBuf> {
    let api = hf_hub::api::sync::Api::new()
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
                    "cannot download {f} of {id} from the hub: {e}"
                )))
            }
        }
    }
    dir.ok_or_else(|| Error::Config(format!("hub repo {id}: nothing downloaded")))
}

/// Whether a string looks like a hub id (`owner/name`) rather than a path.
pub fn looks_like_hub_id(s: &str) -> bool {
    let p = Path::new(s);
    !p.exists() && !s.starts_with('.') && !s.starts_with('/') && s.split('/').count() == 2
}
