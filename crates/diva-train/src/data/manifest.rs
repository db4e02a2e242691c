//! The one manifest format: JSONL, one object per line with `audio` (path,
//! absolute or relative to the manifest's directory), `text` and optional
//! `id`, `speaker`, `lang`, `split`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One training utterance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Audio file path (absolute once read through [`read_manifest`]).
    pub audio: PathBuf,
    /// Transcript.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

impl Item {
    /// An item with only the required fields set.
    pub fn new(audio: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            audio: audio.into(),
            text: text.into(),
            id: None,
            speaker: None,
            lang: None,
            split: None,
        }
    }
}

/// Why an entry was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The row or entry could not be parsed.
    Malformed(String),
    /// A manifest line that is not a valid entry (bad JSON, no audio path).
    MalformedLine { line: usize, error: String },
    /// The audio file exists (or should) but cannot be decoded.
    UnreadableAudio { path: PathBuf, problem: String },
    /// A well-formed entry this run cannot use (e.g. a transcript longer than
    /// the virtual tokens).
    Unusable(String),
    /// The referenced audio file does not exist.
    MissingAudio(PathBuf),
    /// An audio file has no transcript file.
    MissingTranscript(PathBuf),
    /// The transcript is empty (after cleaning).
    EmptyTranscript,
    /// Embedded audio (a parquet row's `audio.bytes`) is null or empty.
    EmptyAudio,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Malformed(e) => write!(f, "malformed: {e}"),
            SkipReason::MalformedLine { line, error } => {
                write!(f, "malformed line {line}: {error}")
            }
            SkipReason::UnreadableAudio { path, problem } => {
                write!(f, "cannot decode audio {}: {problem}", path.display())
            }
            SkipReason::Unusable(why) => write!(f, "{why}"),
            SkipReason::MissingAudio(p) => write!(f, "missing audio file {}", p.display()),
            SkipReason::MissingTranscript(p) => {
                write!(f, "missing transcript file {}", p.display())
            }
            SkipReason::EmptyTranscript => write!(f, "empty transcript"),
            SkipReason::EmptyAudio => write!(f, "no audio data (null or empty bytes)"),
        }
    }
}

/// A skipped entry: where it came from (`file:line` or a path / key) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub location: String,
    pub reason: SkipReason,
}

impl Skipped {
    pub fn new(location: impl Into<String>, reason: SkipReason) -> Self {
        Self {
            location: location.into(),
            reason,
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

fn manifest_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a JSONL manifest. Malformed lines are skipped and returned in the
/// second vector (located `FILE:LINE`; the caller reports them); blank lines
/// are ignored. Relative audio paths are resolved against the manifest's
/// directory. A missing or unreadable file is an error.
pub fn read_manifest(path: impl AsRef<Path>) -> Result<(Vec<Item>, Vec<Skipped>)> {
    let m = read_manifest_lines(path)?;
    Ok((
        m.items.into_iter().map(|(_, it)| it).collect(),
        m.bad.into_iter().map(|(_, s)| s).collect(),
    ))
}

/// A manifest's entries and rejected lines, each with its 1-based line number.
#[derive(Debug, Clone, Default)]
pub struct ManifestLines {
    pub items: Vec<(usize, Item)>,
    pub bad: Vec<(usize, Skipped)>,
}

impl ManifestLines {
    /// Keep the first `n` items and the rejected lines before the last one kept.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.items.len() {
            return;
        }
        self.items.truncate(n);
        let last = self.items.last().map_or(0, |(l, _)| *l);
        self.bad.retain(|(l, _)| *l < last);
    }
}

/// [`read_manifest`] with line numbers.
pub fn read_manifest_lines(path: impl AsRef<Path>) -> Result<ManifestLines> {
    let path = path.as_ref();
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    Ok(parse_manifest_lines(&content, path))
}

/// [`read_manifest_lines`] on a manifest's text; `path` locates rejected lines and is the
/// base of relative audio paths.
pub fn parse_manifest_lines(content: &str, path: &Path) -> ManifestLines {
    let dir = manifest_dir(path);
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let lineno = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Item>(line) {
            Ok(mut item) if !item.audio.as_os_str().is_empty() => {
                if item.audio.is_relative() {
                    item.audio = dir.join(&item.audio);
                }
                items.push((lineno, item));
            }
            parsed => {
                let error = match parsed {
                    Ok(_) => "empty audio path".to_string(),
                    Err(e) => e.to_string(),
                };
                skipped.push((
                    lineno,
                    Skipped::new(
                        format!("{}:{lineno}", path.display()),
                        SkipReason::MalformedLine {
                            line: lineno,
                            error,
                        },
                    ),
                ));
            }
        }
    }
    ManifestLines {
        items,
        bad: skipped,
    }
}

/// Writes a JSONL manifest atomically (temp file in the same directory, then
/// rename). Audio paths under the manifest's directory are written relative
/// to it, so the manifest and its data can be moved together.
pub fn write_manifest(path: impl AsRef<Path>, items: &[Item]) -> Result<()> {
    let path = path.as_ref();
    let dir = manifest_dir(path);
    let file_name = path
        .file_name()
        .with_context(|| format!("manifest path {} has no file name", path.display()))?;
    let mut buf = Vec::new();
    for item in items {
        let mut item = item.clone();
        if let Ok(rel) = item.audio.strip_prefix(&dir) {
            if !rel.as_os_str().is_empty() {
                item.audio = rel.to_path_buf();
            }
        }
        serde_json::to_writer(&mut buf, &item)?;
        buf.push(b'\n');
    }
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
