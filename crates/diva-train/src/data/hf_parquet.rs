//! Hugging Face `datasets` parquet exports with embedded audio (`ds.to_parquet()`, the hub's
//! `refs/convert/parquet`, `data/train-00000-of-00004.parquet` uploads).
//!
//! Such a file has an `audio` column that is a struct `{bytes: binary, path: string}` (`bytes`
//! is the encoded file, `path` its original name or null) and a transcript column whose name
//! depends on the dataset ([`TEXT_COLUMNS`]). Manifests reference audio by path, so every row's
//! bytes are written to `OUT_DIR/audio/<row-id>.<ext>`; a file already there with the same size
//! is left alone, so an interrupted import can simply be rerun.
//!
//! Reading uses the `parquet` crate's row API (no arrow), one row group at a time, and only the
//! columns that are used.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::TreeBuilder;
use parquet::record::Field;
use parquet::schema::types::{SchemaDescriptor, Type, TypePtr};

use super::manifest::{Item, SkipReason, Skipped};
pub use diva_core::audio::container::sniff_ext as sniff_audio_ext;
use diva_core::audio::container::{ext_from_path, safe_stem as sanitize};

/// Transcript columns tried, in this order, when none is named: CommonVoice (`sentence`),
/// LibriSpeech (`text`), FLEURS / others (`transcription`, `normalized_text`,
/// `raw_transcription`).
pub const TEXT_COLUMNS: &[&str] = &[
    "sentence",
    "text",
    "transcription",
    "normalized_text",
    "raw_transcription",
];
/// The audio column HF's `Audio` feature is stored in.
pub const AUDIO_COLUMN: &str = "audio";
const SPEAKER_COLUMNS: &[&str] = &["client_id", "speaker_id"];
const LANG_COLUMNS: &[&str] = &["locale", "language"];
const ID_COLUMN: &str = "id";
/// Split names recognised in file names (`train-00000-of-00002.parquet`, `test/0000.parquet`).
const SPLITS: &[&str] = &["train", "validation", "valid", "dev", "test"];
/// Rows decoded per column batch. HF writes audio in row groups of ~100 rows; a small batch
/// keeps the decoded audio bytes held at once bounded.
const BATCH_ROWS: usize = 64;

/// The last component of a path written on any OS.
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// The split named by an HF parquet file path: `train.parquet`,
/// `train-00000-of-00002.parquet`, `dataset-test.parquet`, or `validation/0000.parquet`.
fn split_from_path(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|p| p.to_str());
    let is_shard_suffix = |s: &str| {
        // "-00000-of-00002"
        let mut parts = s.split('-');
        parts.next() == Some("")
            && parts
                .next()
                .is_some_and(|n| n.bytes().all(|c| c.is_ascii_digit()))
            && parts.next() == Some("of")
            && parts
                .next()
                .is_some_and(|n| n.bytes().all(|c| c.is_ascii_digit()))
            && parts.next().is_none()
    };
    SPLITS
        .iter()
        .find(|split| {
            stem == **split
                || stem.strip_prefix(**split).is_some_and(is_shard_suffix)
                || stem
                    .strip_suffix(**split)
                    .is_some_and(|rest| rest.ends_with('-'))
                || (parent == Some(**split)
                    && !stem.is_empty()
                    && stem.bytes().all(|c| c.is_ascii_digit()))
        })
        .map(|s| s.to_string())
}

/// A scalar cell as text: strings as they are, numbers printed; null, binary that is not UTF-8
/// and nested values give `None`.
fn scalar_text(field: &Field) -> Option<String> {
    Some(match field {
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => std::str::from_utf8(b.data()).ok()?.to_string(),
        Field::Bool(v) => v.to_string(),
        Field::Byte(v) => v.to_string(),
        Field::Short(v) => v.to_string(),
        Field::Int(v) => v.to_string(),
        Field::Long(v) => v.to_string(),
        Field::UByte(v) => v.to_string(),
        Field::UShort(v) => v.to_string(),
        Field::UInt(v) => v.to_string(),
        Field::ULong(v) => v.to_string(),
        _ => return None,
    })
}

/// Audio bytes and original path of an `audio` cell: a `{bytes, path}` struct, or a plain
/// binary column.
fn audio_cell(field: Field) -> (Option<Vec<u8>>, Option<String>) {
    match field {
        Field::Bytes(b) => (Some(b.data().to_vec()), None),
        Field::Group(row) => {
            let mut bytes = None;
            let mut path = None;
            for (name, value) in row.into_columns() {
                match (name.as_str(), value) {
                    ("bytes", Field::Bytes(b)) => bytes = Some(b.data().to_vec()),
                    ("path", value) => path = scalar_text(&value).filter(|p| !p.is_empty()),
                    _ => {}
                }
            }
            (bytes, path)
        }
        _ => (None, None),
    }
}

/// The columns of one file that the importer reads.
struct Columns {
    audio: String,
    text: String,
    id: Option<String>,
    speaker: Option<String>,
    lang: Option<String>,
}

fn pick_columns(fields: &[TypePtr], text_column: Option<&str>, file: &Path) -> Result<Columns> {
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let find = |name: &str| fields.iter().find(|f| f.name() == name);
    let listing = names.join(", ");
    let text = match text_column {
        Some(name) => {
            if find(name).is_none() {
                bail!(
                    "{}: no column `{name}`; columns present: {listing}",
                    file.display()
                );
            }
            name.to_string()
        }
        None => match TEXT_COLUMNS.iter().find(|c| find(c).is_some()) {
            Some(c) => c.to_string(),
            None => bail!(
                "{}: no transcript column found (looked for {}); columns present: {listing}; \
                 name the column explicitly (--text-column)",
                file.display(),
                TEXT_COLUMNS.join(", ")
            ),
        },
    };
    if find(&text).is_some_and(|f| f.is_group()) {
        bail!(
            "{}: transcript column `{text}` is nested, not a string column",
            file.display()
        );
    }
    // `audio`, else the first struct column with a binary `bytes` child (a renamed Audio column).
    let has_bytes = |f: &TypePtr| {
        f.is_group()
            && f.get_fields()
                .iter()
                .any(|c| c.name() == "bytes" && c.is_primitive())
    };
    let audio = match find(AUDIO_COLUMN) {
        Some(f) if has_bytes(f) || f.is_primitive() => AUDIO_COLUMN.to_string(),
        Some(_) => bail!(
            "{}: column `{AUDIO_COLUMN}` is not a {{bytes, path}} struct or a binary column \
             (was the dataset exported with decoded audio?)",
            file.display()
        ),
        None => match fields.iter().find(|f| has_bytes(f)) {
            Some(f) => f.name().to_string(),
            None => bail!(
                "{}: no audio column (a struct with `bytes`, normally `{AUDIO_COLUMN}`); \
                 columns present: {listing}",
                file.display()
            ),
        },
    };
    let optional = |candidates: &[&str]| {
        candidates
            .iter()
            .find(|c| find(c).is_some_and(|f| f.is_primitive()) && **c != text)
            .map(|c| c.to_string())
    };
    let (id, speaker, lang) = (
        optional(&[ID_COLUMN]),
        optional(SPEAKER_COLUMNS),
        optional(LANG_COLUMNS),
    );
    Ok(Columns {
        audio,
        text,
        id,
        speaker,
        lang,
    })
}

/// Writes `bytes` to `path` unless a file of the same size is already there (a previous run);
/// otherwise via a temp file and rename, so a crash never leaves a truncated file under the
/// final name.
fn write_audio(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
        return Ok(false);
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Imports HF `datasets` parquet files whose `audio` column holds the encoded audio. Each row's
/// audio is extracted to `out_dir/audio/<id>.<ext>` and the returned [`Item`]s point there.
///
/// * `text_column`: the transcript column; `None` picks the first of [`TEXT_COLUMNS`] present.
///   A file without it is an error that lists the columns it has.
/// * `<id>`: the `id` column, else the stem of `audio.path`, else `<file-stem>-<row>`; made
///   file-name safe and unique across the import (`-2`, `-3`, … appended). It is also the
///   item's `id`.
/// * `<ext>`: from `audio.path`'s extension, else sniffed from the bytes ([`sniff_audio_ext`]).
/// * `speaker` from `client_id`/`speaker_id`, `lang` from `locale`/`language`, `split` from the
///   file name (`train-00000-of-00001.parquet`, `test/0000.parquet`, …) when it names one.
///
/// Rows with null or empty audio bytes or an empty transcript are skipped (location
/// `FILE[row]`, rows counted from 0 across row groups). A file that cannot be read as parquet is
/// an error naming it. An already extracted file of the same size is not rewritten, so rerunning
/// an interrupted import is cheap.
pub fn import_hf_parquet(
    files: &[PathBuf],
    out_dir: &Path,
    text_column: Option<&str>,
) -> Result<(Vec<Item>, Vec<Skipped>)> {
    let audio_dir = out_dir.join("audio");
    std::fs::create_dir_all(&audio_dir)
        .with_context(|| format!("creating {}", audio_dir.display()))?;
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut used_stems = HashSet::new();
    for file in files {
        import_file(
            file,
            &audio_dir,
            text_column,
            &mut used_stems,
            &mut items,
            &mut skipped,
        )?;
    }
    Ok((items, skipped))
}

fn import_file(
    file: &Path,
    audio_dir: &Path,
    text_column: Option<&str>,
    used_stems: &mut HashSet<String>,
    items: &mut Vec<Item>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    let handle = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let reader = SerializedFileReader::new(handle)
        .with_context(|| format!("{}: not a readable parquet file", file.display()))?;
    let root = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema_ptr();
    let cols = pick_columns(root.get_fields(), text_column, file)?;
    tracing::info!(
        "{}: {} rows; audio `{}`, text `{}`",
        file.display(),
        reader.metadata().file_metadata().num_rows(),
        cols.audio,
        cols.text
    );
    // Project onto the used columns only (in file order): other columns are never decoded.
    let wanted = [
        Some(&cols.audio),
        Some(&cols.text),
        cols.id.as_ref(),
        cols.speaker.as_ref(),
        cols.lang.as_ref(),
    ];
    let projected: Vec<TypePtr> = root
        .get_fields()
        .iter()
        .filter(|f| wanted.iter().flatten().any(|w| w.as_str() == f.name()))
        .cloned()
        .collect();
    let projection = Type::group_type_builder(root.name())
        .with_fields(projected)
        .build()
        .with_context(|| format!("{}: building the column projection", file.display()))?;
    let descr = Arc::new(SchemaDescriptor::new(Arc::new(projection)));
    let tree = TreeBuilder::new().with_batch_size(BATCH_ROWS);

    let file_stem = file
        .file_stem()
        .map(|s| sanitize(&s.to_string_lossy()))
        .unwrap_or_else(|| "row".to_string());
    let split = split_from_path(file);
    let mut row_no = 0usize;
    for g in 0..reader.num_row_groups() {
        let group = reader
            .get_row_group(g)
            .with_context(|| format!("{}: reading row group {g}", file.display()))?;
        let rows = tree
            .as_iter(descr.clone(), group.as_ref())
            .with_context(|| format!("{}: reading row group {g}", file.display()))?;
        for row in rows {
            let row = row.with_context(|| format!("{}: decoding row {row_no}", file.display()))?;
            let location = format!("{}[{row_no}]", file.display());
            let this_row = row_no;
            row_no += 1;

            let mut audio = (None, None);
            let mut text = None;
            let mut id = None;
            let mut speaker = None;
            let mut lang = None;
            for (name, value) in row.into_columns() {
                if name == cols.audio {
                    audio = audio_cell(value);
                } else if name == cols.text {
                    text = scalar_text(&value);
                } else if Some(&name) == cols.id.as_ref() {
                    id = scalar_text(&value);
                } else if Some(&name) == cols.speaker.as_ref() {
                    speaker = scalar_text(&value);
                } else if Some(&name) == cols.lang.as_ref() {
                    lang = scalar_text(&value);
                }
            }
            let (bytes, audio_path) = audio;
            let text = text.unwrap_or_default().trim().to_string();
            let reason = match &bytes {
                None => Some(SkipReason::EmptyAudio),
                Some(b) if b.is_empty() => Some(SkipReason::EmptyAudio),
                _ if text.is_empty() => Some(SkipReason::EmptyTranscript),
                _ => None,
            };
            if let Some(reason) = reason {
                tracing::warn!("{location}: skipped: {reason}");
                skipped.push(Skipped::new(location, reason));
                continue;
            }
            let bytes = bytes.unwrap_or_default();

            let raw_id = id
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    audio_path.as_deref().map(|p| {
                        let name = file_name(p);
                        match name.rsplit_once('.') {
                            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
                            _ => name.to_string(),
                        }
                    })
                })
                .map(|s| sanitize(&s))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("{file_stem}-{this_row:06}"));
            let mut stem = raw_id.clone();
            let mut n = 2;
            while !used_stems.insert(stem.clone()) {
                stem = format!("{raw_id}-{n}");
                n += 1;
            }
            let ext = audio_path
                .as_deref()
                .and_then(ext_from_path)
                .unwrap_or_else(|| sniff_audio_ext(&bytes).to_string());
            let target = audio_dir.join(format!("{stem}.{ext}"));
            write_audio(&target, &bytes)?;
            items.push(Item {
                audio: target,
                text,
                id: Some(stem),
                speaker: speaker.filter(|s| !s.trim().is_empty()),
                lang: lang.filter(|s| !s.trim().is_empty()),
                split: split.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize("a/b c.d"), "a_b_c.d");
        assert_eq!(sanitize(".x"), "_x");
    }

    #[test]
    fn split_names() {
        let s = |p: &str| split_from_path(Path::new(p));
        assert_eq!(
            s("data/train-00000-of-00002.parquet").as_deref(),
            Some("train")
        );
        assert_eq!(s("default/test/0000.parquet").as_deref(), Some("test"));
        assert_eq!(
            s("plain/ds-validation.parquet").as_deref(),
            Some("validation")
        );
        assert_eq!(s("dev.parquet").as_deref(), Some("dev"));
        assert_eq!(s("my-test-data.parquet"), None);
        assert_eq!(s("trainee.parquet"), None);
        assert_eq!(s("commonvoice_style.parquet"), None);
    }
}
