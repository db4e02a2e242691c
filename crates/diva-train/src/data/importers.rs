//! Importers from common dataset layouts into manifest [`Item`]s. Each returns
//! the items plus the skipped entries (missing audio, empty transcript, ...).
//! Audio files are only checked for existence, never decoded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::manifest::{Item, SkipReason, Skipped};

/// Audio extensions recognised by [`import_folder`].
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg"];

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

/// Pushes `item` if its audio exists and its text is non-empty, otherwise
/// records why it was skipped.
fn accept(item: Item, location: String, items: &mut Vec<Item>, skipped: &mut Vec<Skipped>) {
    let reason = if item.text.trim().is_empty() {
        Some(SkipReason::EmptyTranscript)
    } else if !item.audio.is_file() {
        Some(SkipReason::MissingAudio(item.audio.clone()))
    } else {
        None
    };
    match reason {
        None => items.push(item),
        Some(reason) => {
            tracing::warn!("{location}: skipped: {reason}");
            skipped.push(Skipped::new(location, reason));
        }
    }
}

fn malformed(location: String, msg: &str, skipped: &mut Vec<Skipped>) {
    tracing::warn!("{location}: skipped: malformed: {msg}");
    skipped.push(Skipped::new(location, SkipReason::Malformed(msg.into())));
}

/// Mozilla CommonVoice: `dir/clips/*` plus `train.tsv`, `dev.tsv`, `test.tsv`
/// (whichever exist; at least one must). Each TSV has a header row with at
/// least `client_id`, `path`, `sentence` and optionally `locale`. `split`
/// comes from the TSV name, `speaker` from `client_id`, `lang` from `locale`.
pub fn import_commonvoice(dir: impl AsRef<Path>) -> Result<(Vec<Item>, Vec<Skipped>)> {
    let dir = dir.as_ref();
    let clips = dir.join("clips");
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut found = false;
    for split in ["train", "dev", "test"] {
        let tsv = dir.join(format!("{split}.tsv"));
        if !tsv.is_file() {
            continue;
        }
        found = true;
        let content = read_text(&tsv)?;
        let mut lines = content.lines().enumerate();
        let Some((_, header)) = lines.next() else {
            continue;
        };
        let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
        let col = |name: &str| cols.iter().position(|c| *c == name);
        let (Some(ci), Some(pi), Some(si)) = (col("client_id"), col("path"), col("sentence"))
        else {
            bail!(
                "{}: header lacks client_id/path/sentence columns",
                tsv.display()
            );
        };
        let li = col("locale");
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let location = format!("{}:{}", tsv.display(), i + 1);
            let fields: Vec<&str> = line.split('\t').collect();
            let needed = ci.max(pi).max(si);
            if fields.len() <= needed {
                malformed(location, "too few columns", &mut skipped);
                continue;
            }
            let clip = fields[pi].trim();
            if clip.is_empty() {
                malformed(location, "empty path", &mut skipped);
                continue;
            }
            let item = Item {
                audio: clips.join(clip),
                text: fields[si].trim().to_string(),
                id: Some(
                    Path::new(clip)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| clip.to_string()),
                ),
                speaker: Some(fields[ci].trim().to_string()).filter(|s| !s.is_empty()),
                lang: li
                    .and_then(|li| fields.get(li))
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
                split: Some(split.to_string()),
            };
            accept(item, location, &mut items, &mut skipped);
        }
    }
    if !found {
        bail!("{}: no train.tsv, dev.tsv or test.tsv found", dir.display());
    }
    Ok((items, skipped))
}

/// LibriSpeech: `root/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`
/// (lines `ID TRANSCRIPT`) with `ID.flac` beside it. `lang` is `en`.
pub fn import_librispeech(root: impl AsRef<Path>) -> Result<(Vec<Item>, Vec<Skipped>)> {
    let root = root.as_ref();
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for speaker_dir in sorted_entries(root)? {
        if !speaker_dir.is_dir() {
            continue;
        }
        let speaker = speaker_dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for chapter_dir in sorted_entries(&speaker_dir)? {
            if !chapter_dir.is_dir() {
                continue;
            }
            let chapter = chapter_dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let trans = chapter_dir.join(format!("{speaker}-{chapter}.trans.txt"));
            if !trans.is_file() {
                continue;
            }
            for (i, line) in read_text(&trans)?.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let location = format!("{}:{}", trans.display(), i + 1);
                let (id, text) = match line.split_once(char::is_whitespace) {
                    Some((id, text)) => (id, text.trim()),
                    None => (line, ""),
                };
                let item = Item {
                    audio: chapter_dir.join(format!("{id}.flac")),
                    text: text.to_string(),
                    id: Some(id.to_string()),
                    speaker: Some(speaker.clone()),
                    lang: Some("en".to_string()),
                    split: None,
                };
                accept(item, location, &mut items, &mut skipped);
            }
        }
    }
    Ok((items, skipped))
}

/// A folder of audio files (wav/flac/mp3/ogg), each with a `.txt` transcript
/// of the same stem. Not recursive. Audio without a transcript is skipped
/// ([`SkipReason::MissingTranscript`]), and so is a transcript without audio
/// ([`SkipReason::MissingAudio`]).
pub fn import_folder(dir: impl AsRef<Path>) -> Result<(Vec<Item>, Vec<Skipped>)> {
    let dir = dir.as_ref();
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let entries = sorted_entries(dir)?;
    let mut audio_stems = BTreeSet::new();
    for path in &entries {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !path.is_file() || !AUDIO_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        audio_stems.insert(stem.clone());
        let txt = path.with_extension("txt");
        let location = path.display().to_string();
        if !txt.is_file() {
            tracing::warn!("{location}: skipped: missing transcript");
            skipped.push(Skipped::new(location, SkipReason::MissingTranscript(txt)));
            continue;
        }
        let item = Item {
            audio: path.clone(),
            text: read_text(&txt)?.trim().to_string(),
            id: Some(stem),
            speaker: None,
            lang: None,
            split: None,
        };
        accept(item, location, &mut items, &mut skipped);
    }
    for path in &entries {
        let is_txt = path.extension().is_some_and(|e| e == "txt");
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_txt && path.is_file() && !audio_stems.contains(&stem) {
            let location = path.display().to_string();
            let reason = SkipReason::MissingAudio(dir.join(format!("{stem}.*")));
            tracing::warn!("{location}: skipped: {reason}");
            skipped.push(Skipped::new(location, reason));
        }
    }
    Ok((items, skipped))
}

/// Removes `[...]`, `<...>` and `(...)` annotations and collapses whitespace.
pub fn strip_annotations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' | '<' | '(' => depth += 1,
            ']' | '>' | ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Asterisk sound prompts: a transcripts file in `core-sounds-en.txt` format
/// (lines `key: transcript`, `;` comments, keys may contain subdirectories
/// such as `digits/1`) plus a sounds dir holding `<key>.wav`. Annotations in
/// brackets are stripped; items whose remaining text is empty are skipped.
pub fn import_asterisk(
    transcripts: impl AsRef<Path>,
    sounds_dir: impl AsRef<Path>,
) -> Result<(Vec<Item>, Vec<Skipped>)> {
    let transcripts = transcripts.as_ref();
    let sounds_dir = sounds_dir.as_ref();
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in read_text(transcripts)?.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let location = format!("{}:{}", transcripts.display(), i + 1);
        let Some((key, text)) = line.split_once(':') else {
            malformed(location, "no `key:` prefix", &mut skipped);
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            malformed(location, "empty key", &mut skipped);
            continue;
        }
        let item = Item {
            audio: sounds_dir.join(format!("{key}.wav")),
            text: strip_annotations(text),
            id: Some(key.to_string()),
            speaker: None,
            lang: None,
            split: None,
        };
        accept(item, location, &mut items, &mut skipped);
    }
    Ok((items, skipped))
}
