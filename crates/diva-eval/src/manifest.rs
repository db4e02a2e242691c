//! JSONL manifests: one `{"id", "audio", "text"}` object per line. Relative
//! audio paths are relative to the manifest's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    #[serde(default)]
    pub id: String,
    pub audio: PathBuf,
    pub text: String,
}

/// Read a manifest; a malformed line is an error naming the line.
pub fn read(path: &Path) -> Result<Vec<Item>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut item: Item = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: bad manifest line: {e}", path.display(), n + 1))?;
        if item.audio.is_relative() {
            item.audio = base.join(&item.audio);
        }
        if item.id.is_empty() {
            item.id = item.audio.display().to_string();
        }
        items.push(item);
    }
    Ok(items)
}
