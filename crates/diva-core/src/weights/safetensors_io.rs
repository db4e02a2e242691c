//! safetensors files (single or sharded) with errors that name the file.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::TensorMap;
use crate::{Error, Result};

/// Load one safetensors file. Refuses empty or truncated files with a clear
/// message instead of candle's generic header error.
pub fn load_file(path: &Path, device: &Device) -> Result<TensorMap> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::model(path, format!("cannot read: {e}")))?;
    if meta.len() < 8 {
        return Err(Error::model(
            path,
            "file is empty or truncated (no safetensors header)",
        ));
    }
    candle_core::safetensors::load(path, device).map_err(|e| {
        Error::model(
            path,
            format!("not a valid safetensors file ({e}); re-download or re-export it"),
        )
    })
}

/// [`load_file`] for a file already in memory; `name` is only used in error messages.
pub fn load_bytes(bytes: &[u8], name: &Path, device: &Device) -> Result<TensorMap> {
    if bytes.len() < 8 {
        return Err(Error::model(
            name,
            "file is empty or truncated (no safetensors header)",
        ));
    }
    candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
        Error::model(
            name,
            format!("not a valid safetensors file ({e}); re-download or re-export it"),
        )
    })
}

/// The shard list of a `*.safetensors.index.json`, in a stable order.
pub fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| Error::model(index, format!("cannot read: {e}")))?;
    shards_from_index_json(&text, index)
}

/// [`shards_from_index`] on the index's text; `index` is its path (the shards lie beside it).
pub fn shards_from_index_json(text: &str, index: &Path) -> Result<Vec<PathBuf>> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::model(index, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(index, "no \"weight_map\" object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::model(index, "weight_map lists no shard files"));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Load several files into one map; a name present twice is an error.
pub fn load_files(paths: &[PathBuf], device: &Device) -> Result<TensorMap> {
    let mut all = TensorMap::new();
    for p in paths {
        for (k, v) in load_file(p, device)? {
            if all.insert(k.clone(), v).is_some() {
                return Err(Error::model(
                    p,
                    format!("tensor {k} appears in more than one shard"),
                ));
            }
        }
    }
    Ok(all)
}
