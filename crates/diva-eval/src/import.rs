//! `diva eval import`: Hugging Face `datasets` parquet exports of the paper's
//! evaluation sets (HeySQuAD, SD-QA, MELD, IEMOCAP, MUStARD, CoVoST 2) and of
//! VoiceBench turned into manifests that `diva eval run` reads.
//!
//! Every row's embedded audio (an `Audio` feature: a `{bytes, path}` struct,
//! or a plain binary column) is written to `OUT/audio/<id>.<ext>` (`ext` from
//! `audio.path`, else sniffed from the bytes) and the row's fields to one line
//! of `OUT/manifest.jsonl`, with `audio` relative to it. A file already there
//! with the bytes' size is left alone, so an interrupted import is simply run
//! again; every file is written to a temporary name and renamed.
//!
//! The columns each format reads (first of the names listed that is present;
//! `--text-column`, `--label-column`, `--audio-column` name others) are in
//! [`Format::columns`] and docs/evaluation.md. A missing column is an error
//! naming it and listing the file's columns. A row without audio bytes or
//! without what its task scores against is skipped and reported.
//!
//! Class labels: integer labels are named by the `ClassLabel` names HF writes
//! into the file's `huggingface` key-value metadata; every item carries the
//! dataset's label set (`labels`), so the classify prompt lists all classes
//! even where a small slice lacks some.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
pub use diva_core::audio::container::sniff_ext as sniff_audio_ext;
use diva_core::audio::container::{ext_from_path, safe_stem as sanitize};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::TypePtr;
use serde_json::{json, Map, Value};

/// The datasets `diva eval import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    HeySquad,
    SdQa,
    Meld,
    Iemocap,
    Mustard,
    Covost2,
    VoiceBench,
}

/// MELD's seven emotions (its `Emotion` column, lower-cased).
pub const MELD_LABELS: [&str; 7] = [
    "anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise",
];
/// MUStARD's two classes (its boolean `sarcasm` column).
pub const MUSTARD_LABELS: [&str; 2] = ["not sarcastic", "sarcastic"];
/// VoiceBench's subsets (its HF configs).
pub const VOICEBENCH_SUBSETS: [&str; 9] = [
    "alpacaeval",
    "alpacaeval_full",
    "commoneval",
    "wildvoice",
    "sd-qa",
    "ifeval",
    "advbench",
    "openbookqa",
    "mmsu",
];

impl Format {
    pub const ALL: [Format; 7] = [
        Format::HeySquad,
        Format::SdQa,
        Format::Meld,
        Format::Iemocap,
        Format::Mustard,
        Format::Covost2,
        Format::VoiceBench,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::HeySquad => "heysquad",
            Format::SdQa => "sdqa",
            Format::Meld => "meld",
            Format::Iemocap => "iemocap",
            Format::Mustard => "mustard",
            Format::Covost2 => "covost2",
            Format::VoiceBench => "voicebench",
        }
    }

    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .with_context(|| {
                format!(
                    "unknown format `{s}`: use one of {}",
                    Self::ALL.map(Format::name).join(", ")
                )
            })
    }

    /// The `diva eval run` task of the manifest (VoiceBench: `voicebench`
    /// for every subset; sd-qa's items also carry `answers` for `spoken-qa`).
    pub fn task(self, subset: Option<&str>) -> Option<&'static str> {
        match self {
            Format::HeySquad | Format::SdQa => Some("spoken-qa"),
            Format::Meld | Format::Iemocap | Format::Mustard => Some("classify"),
            Format::Covost2 => Some("translate"),
            Format::VoiceBench => {
                let _ = subset;
                Some("voicebench")
            }
        }
    }

    /// The columns read, as `(role, candidates)`; the first present wins.
    pub fn columns(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Format::HeySquad => &[
                ("id", &["id"]),
                ("question", &["question"]),
                ("answers", &["answers"]),
            ],
            Format::SdQa => &[
                ("id", &["id"]),
                ("question", &["question", "text"]),
                ("answers", &["answers", "answer"]),
            ],
            Format::Meld => &[
                ("label", &["Emotion", "emotion", "label"]),
                ("text", &["Utterance", "utterance", "text"]),
            ],
            Format::Iemocap => &[
                ("id", &["id", "file"]),
                ("label", &["emotion", "major_emotion", "label"]),
                ("text", &["transcription", "text", "utterance"]),
            ],
            Format::Mustard => &[
                ("id", &["id", "key"]),
                ("label", &["sarcasm", "sarcastic", "label"]),
                ("text", &["utterance", "text"]),
            ],
            Format::Covost2 => &[
                ("id", &["id", "file", "path"]),
                ("text", &["sentence"]),
                ("translation", &["translation"]),
            ],
            Format::VoiceBench => &[("id", &["id"]), ("text", &["prompt"])],
        }
    }
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub format: Format,
    /// The text column (question, utterance, sentence, prompt) instead of the
    /// format's.
    pub text_column: Option<String>,
    /// The label column (classification) or answers column (spoken QA) or
    /// translation column (CoVoST 2) instead of the format's.
    pub label_column: Option<String>,
    /// The audio column instead of `audio` (SD-QA: the dialect columns).
    pub audio_column: Option<String>,
    /// CoVoST 2: the target language (else a `target_lang`/`tgt_lang` column,
    /// else a path component `en_de`).
    pub target_lang: Option<String>,
    /// VoiceBench: the subset (else a path component naming one).
    pub subset: Option<String>,
}

impl ImportOptions {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            text_column: None,
            label_column: None,
            audio_column: None,
            target_lang: None,
            subset: None,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub manifest: PathBuf,
    pub items: usize,
    /// Audio files written by this run (the others were already there).
    pub written: usize,
    pub reused: usize,
    /// `FILE[row]: reason` of rows left out.
    pub skipped: Vec<String>,
    /// The task of `diva eval run` the manifest is for, if any.
    pub task: Option<&'static str>,
    pub labels: Option<Vec<String>>,
    pub target_lang: Option<String>,
}

/// The parquet files under `input` (itself if a file), sorted.
pub fn parquet_files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        bail!(
            "--in {}: no such file or directory (a .parquet file or a directory of them)",
            input.display()
        );
    }
    let mut out = Vec::new();
    let mut stack = vec![input.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("--in {}: no .parquet files in it", input.display());
    }
    Ok(out)
}

/// A path's file stem (`clips/a.wav` → `a`).
fn stem_of(path: &str) -> String {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_string(),
        _ => name.to_string(),
    }
}

/// Writes `bytes` to `path` unless a file of that size is there; via a
/// temporary file and rename. `true` if written.
fn write_file(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".import-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(true)
}

/// A scalar cell as text: strings, numbers and booleans; `None` for null and
/// nested values.
fn scalar_text(f: &Field) -> Option<String> {
    Some(match f {
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
        Field::Float(v) => v.to_string(),
        Field::Double(v) => v.to_string(),
        _ => return None,
    })
}

fn scalar_int(f: &Field) -> Option<i64> {
    match f {
        Field::Byte(v) => Some(i64::from(*v)),
        Field::Short(v) => Some(i64::from(*v)),
        Field::Int(v) => Some(i64::from(*v)),
        Field::Long(v) => Some(*v),
        Field::UByte(v) => Some(i64::from(*v)),
        Field::UShort(v) => Some(i64::from(*v)),
        Field::UInt(v) => Some(i64::from(*v)),
        Field::ULong(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A cell as JSON (binary that is not UTF-8 becomes null).
fn to_json(f: &Field) -> Value {
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => json!(b),
        Field::Float(v) => json!(v),
        Field::Double(v) => json!(v),
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Field::ListInternal(l) => Value::Array(l.elements().iter().map(to_json).collect()),
        Field::MapInternal(m) => Value::Object(
            m.entries()
                .iter()
                .map(|(k, v)| (scalar_text(k).unwrap_or_default(), to_json(v)))
                .collect(),
        ),
        f => match scalar_int(f) {
            Some(i) => json!(i),
            None => scalar_text(f).map_or(Value::Null, Value::String),
        },
    }
}

/// A list of strings from a cell: a list, a SQuAD-style `{text: [...]}`
/// struct, a JSON array in a string, or one string.
fn strings(f: &Field) -> Vec<String> {
    let v = to_json(f);
    let v = match v {
        Value::Object(mut o) => o.remove("text").unwrap_or(Value::Null),
        Value::String(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        v => v,
    };
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let all: Vec<String> = match &v {
        Value::Array(a) => a.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    };
    let mut out: Vec<String> = Vec::new();
    for s in all {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Audio bytes and original path of an audio cell.
fn audio_cell(f: &Field) -> (Option<Vec<u8>>, Option<String>) {
    match f {
        Field::Bytes(b) => (Some(b.data().to_vec()), None),
        Field::Group(row) => {
            let mut bytes = None;
            let mut path = None;
            for (name, value) in row.get_column_iter() {
                match (name.as_str(), value) {
                    ("bytes", Field::Bytes(b)) => bytes = Some(b.data().to_vec()),
                    ("path", v) => path = scalar_text(v).filter(|p| !p.is_empty()),
                    _ => {}
                }
            }
            (bytes, path)
        }
        _ => (None, None),
    }
}

fn is_audio_type(t: &TypePtr) -> bool {
    t.is_group()
        && t.get_fields()
            .iter()
            .any(|c| c.name() == "bytes" && c.is_primitive())
}

/// `ClassLabel` names per column from HF's `huggingface` metadata.
fn class_labels(reader: &SerializedFileReader<File>, column: &str) -> Option<Vec<String>> {
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let meta = kv.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let v: Value = serde_json::from_str(meta).ok()?;
    let features = v.pointer("/info/features").or_else(|| v.get("features"))?;
    let names = features.get(column)?.get("names")?.as_array()?;
    Some(
        names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
    )
}

/// IEMOCAP's abbreviated emotions as words (what a model can say).
fn iemocap_label(l: &str) -> String {
    let l = l.trim().to_lowercase();
    match l.as_str() {
        "ang" => "angry",
        "hap" => "happy",
        "exc" => "excited",
        "neu" => "neutral",
        "sad" => "sad",
        "fru" => "frustrated",
        "sur" => "surprised",
        "fea" => "fearful",
        "dis" => "disgusted",
        "oth" => "other",
        _ => return l,
    }
    .to_string()
}

/// A binary label as MUStARD's class name.
fn sarcasm_label(f: &Field) -> Option<String> {
    let yes = match f {
        Field::Bool(b) => *b,
        f => match scalar_text(f)?.trim().to_lowercase().as_str() {
            "true" | "1" | "yes" | "sarcastic" => true,
            "false" | "0" | "no" | "not sarcastic" | "not_sarcastic" => false,
            _ => return None,
        },
    };
    Some(MUSTARD_LABELS[usize::from(yes)].to_string())
}

/// A CoVoST 2 config (`en_de`, `covost2-fr_en`) named by the file or one of
/// its two parent directories.
fn covost_config(path: &Path) -> Option<(String, String)> {
    path.components().rev().take(3).find_map(|c| {
        let s = c.as_os_str().to_str()?;
        let s = s.strip_suffix(".parquet").unwrap_or(s);
        let tail = s.rsplit(['-', '.']).next().unwrap_or(s);
        let (a, b) = tail.split_once('_')?;
        let lang =
            |x: &str| (2..=3).contains(&x.len()) && x.bytes().all(|c| c.is_ascii_lowercase());
        let b = b.split('_').next().unwrap_or(b);
        (lang(a) && lang(b)).then(|| (a.to_string(), b.to_string()))
    })
}

/// A path component naming a VoiceBench subset.
fn voicebench_subset(path: &Path) -> Option<String> {
    path.components().rev().find_map(|c| {
        let s = c.as_os_str().to_str()?;
        VOICEBENCH_SUBSETS
            .iter()
            .find(|n| **n == s || s.strip_prefix(**n).is_some_and(|r| r.starts_with('-')))
            .map(|n| n.to_string())
    })
}

/// The split of an HF file name (`usa-00000-of-00001.parquet` → `usa`,
/// `test/0000.parquet` → `test`).
fn split_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let first = stem.split('-').next().unwrap_or(stem);
    if !first.is_empty() && !first.bytes().all(|c| c.is_ascii_digit()) {
        return Some(first.to_string());
    }
    path.parent()?.file_name()?.to_str().map(str::to_string)
}

/// Per file: the columns resolved.
struct Cols {
    id: Option<String>,
    text: Option<String>,
    /// label / answers / translation.
    target: Option<String>,
    /// `(column, dialect)`: SD-QA has one audio column per dialect.
    audio: Vec<(String, Option<String>)>,
    class_names: Option<Vec<String>>,
    target_lang_col: Option<String>,
}

fn resolve(o: &ImportOptions, reader: &SerializedFileReader<File>, file: &Path) -> Result<Cols> {
    let root = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema_ptr();
    let fields = root.get_fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let listing = names.join(", ");
    let has = |n: &str| names.contains(&n);
    let fmt = o.format.name();
    let pick = |role: &str, given: Option<&String>, flag: &str| -> Result<Option<String>> {
        if let Some(g) = given {
            if !has(g) {
                bail!(
                    "{}: no column `{g}` (given with {flag}); columns present: {listing}",
                    file.display()
                );
            }
            return Ok(Some(g.clone()));
        }
        let cands = o
            .format
            .columns()
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(&[][..], |(_, c)| *c);
        Ok(cands.iter().find(|c| has(c)).map(|c| c.to_string()))
    };
    let need = |col: Option<String>, role: &str, flag: &str| -> Result<String> {
        col.with_context(|| {
            let cands = o
                .format
                .columns()
                .iter()
                .find(|(r, _)| *r == role)
                .map_or(&[][..], |(_, c)| *c);
            format!(
                "{}: no {role} column for {fmt} (looked for {}); columns present: {listing}; \
                 name it with {flag}",
                file.display(),
                cands
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    let id = pick("id", None, "")?;
    let mut text = pick("text", o.text_column.as_ref(), "--text-column")?;
    if text.is_none() {
        text = pick("question", o.text_column.as_ref(), "--text-column")?;
    }
    let target_role = match o.format {
        Format::HeySquad | Format::SdQa => Some("answers"),
        Format::Meld | Format::Iemocap | Format::Mustard => Some("label"),
        Format::Covost2 => Some("translation"),
        Format::VoiceBench => None,
    };
    let target = match target_role {
        Some(role) => Some(need(
            pick(role, o.label_column.as_ref(), "--label-column")?,
            role,
            "--label-column",
        )?),
        None => None,
    };
    // The text a task cannot do without.
    match o.format {
        Format::HeySquad => {
            text = Some(need(text, "question", "--text-column")?);
        }
        Format::Covost2 | Format::VoiceBench => {
            text = Some(need(text, "text", "--text-column")?);
        }
        _ => {}
    }
    let audio_cols: Vec<&TypePtr> = fields
        .iter()
        .filter(|f| is_audio_type(f) || (f.name() == "audio" && f.is_primitive()))
        .collect();
    let audio = match &o.audio_column {
        Some(a) => {
            if !has(a) {
                bail!(
                    "{}: no column `{a}` (given with --audio-column); columns present: {listing}",
                    file.display()
                );
            }
            vec![(a.clone(), None)]
        }
        None if has("audio") => vec![("audio".to_string(), None)],
        None if o.format == Format::SdQa && !audio_cols.is_empty() => audio_cols
            .iter()
            .map(|f| (f.name().to_string(), Some(f.name().to_string())))
            .collect(),
        None => match audio_cols.first() {
            Some(f) => vec![(f.name().to_string(), None)],
            None => bail!(
                "{}: no audio column (a struct with `bytes`, normally `audio`); columns \
                 present: {listing}; name it with --audio-column",
                file.display()
            ),
        },
    };
    for (a, _) in &audio {
        if let Some(f) = fields.iter().find(|f| f.name() == a) {
            if f.is_group() && !is_audio_type(f) {
                bail!(
                    "{}: column `{a}` is not a {{bytes, path}} struct or a binary column (was \
                     the dataset exported with decoded audio arrays?)",
                    file.display()
                );
            }
        }
    }
    let class_names = target.as_deref().and_then(|t| class_labels(reader, t));
    let target_lang_col = ["target_lang", "tgt_lang"]
        .iter()
        .find(|c| has(c))
        .map(|c| c.to_string());
    Ok(Cols {
        id,
        text,
        target,
        audio,
        class_names,
        target_lang_col,
    })
}

/// Imports `input` (a parquet file or a directory of them) in `o.format`
/// into `out/manifest.jsonl` and `out/audio/`.
pub fn import(input: &Path, out: &Path, o: &ImportOptions) -> Result<ImportReport> {
    let files = parquet_files(input)?;
    let audio_dir = out.join("audio");
    std::fs::create_dir_all(&audio_dir)
        .with_context(|| format!("creating {}", audio_dir.display()))?;
    let mut lines: Vec<Map<String, Value>> = Vec::new();
    let mut skipped = Vec::new();
    let mut used = HashSet::new();
    let (mut written, mut reused) = (0, 0);
    let mut label_set: Option<Vec<String>> = None;
    let mut seen_labels = BTreeSet::new();
    let mut target_lang = o.target_lang.clone();
    let mut subset = o.subset.clone();
    if o.format == Format::VoiceBench && subset.is_none() {
        subset = files.iter().find_map(|f| voicebench_subset(f));
        if subset.is_none() {
            bail!(
                "--in {}: which VoiceBench subset is this? No path component names one ({}): \
                 pass --subset",
                input.display(),
                VOICEBENCH_SUBSETS.join(", ")
            );
        }
    }
    for file in &files {
        let handle = File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let reader = SerializedFileReader::new(handle)
            .with_context(|| format!("{}: not a readable parquet file", file.display()))?;
        let cols = resolve(o, &reader, file)?;
        if let Some(names) = &cols.class_names {
            let names: Vec<String> = names.iter().map(|n| normalize_label(o.format, n)).collect();
            label_set.get_or_insert(names);
        }
        let file_lang = match o.format {
            Format::Covost2 if o.target_lang.is_none() && cols.target_lang_col.is_none() => {
                Some(covost_config(file).map(|(_, t)| t).with_context(|| {
                    format!(
                        "{}: no target language: no `target_lang`/`tgt_lang` column and no path \
                         component like `en_de`: pass --target-lang",
                        file.display()
                    )
                })?)
            }
            _ => None,
        };
        let source_lang = covost_config(file).map(|(s, _)| s);
        let split = split_name(file);
        let file_stem = file
            .file_stem()
            .map(|s| sanitize(&s.to_string_lossy()))
            .unwrap_or_else(|| "row".into());
        let rows = reader
            .get_row_iter(None)
            .with_context(|| format!("{}: reading rows", file.display()))?;
        for (n, row) in rows.enumerate() {
            let row = row.with_context(|| format!("{}: decoding row {n}", file.display()))?;
            let at = format!("{}[{n}]", file.display());
            let cells: Vec<(String, Field)> = row.into_columns();
            let get = |c: &Option<String>| {
                c.as_ref()
                    .and_then(|c| cells.iter().find(|(k, _)| k == c))
                    .map(|(_, v)| v)
                    .filter(|v| !matches!(v, Field::Null))
            };
            let text = get(&cols.text)
                .and_then(scalar_text)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty());
            let mut base = Map::new();
            if let Some(t) = &text {
                base.insert("text".into(), json!(t));
            }
            // What the task scores against.
            let target = get(&cols.target);
            let missing = |what: &str| format!("{at}: skipped: no {what}");
            match o.format {
                Format::HeySquad | Format::SdQa => {
                    let answers = target.map(strings).unwrap_or_default();
                    if answers.is_empty() {
                        skipped.push(missing("answers"));
                        continue;
                    }
                    if let Some(t) = &text {
                        base.insert("question".into(), json!(t));
                    }
                    base.insert("answers".into(), json!(answers));
                }
                Format::Meld | Format::Iemocap | Format::Mustard => {
                    let label = target.and_then(|f| match (o.format, f) {
                        (Format::Mustard, f) => sarcasm_label(f),
                        (_, f) => match (scalar_int(f), &cols.class_names) {
                            (Some(i), Some(names)) => usize::try_from(i)
                                .ok()
                                .and_then(|i| names.get(i))
                                .map(|n| normalize_label(o.format, n)),
                            _ => scalar_text(f).map(|l| normalize_label(o.format, &l)),
                        },
                    });
                    let Some(label) = label.filter(|l| !l.is_empty()) else {
                        skipped.push(missing("label"));
                        continue;
                    };
                    seen_labels.insert(label.clone());
                    base.insert("label".into(), json!(label));
                }
                Format::Covost2 => {
                    let Some(tr) = target
                        .and_then(scalar_text)
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                    else {
                        skipped.push(missing("translation"));
                        continue;
                    };
                    let lang = o
                        .target_lang
                        .clone()
                        .or_else(|| file_lang.clone())
                        .or_else(|| get(&cols.target_lang_col).and_then(scalar_text));
                    let Some(lang) = lang else {
                        skipped.push(missing("target language"));
                        continue;
                    };
                    if o.target_lang.is_none() {
                        target_lang.get_or_insert(lang.clone());
                    }
                    base.insert("translation".into(), json!(tr));
                    base.insert("target_lang".into(), json!(lang));
                    if let Some(s) = &source_lang {
                        base.insert("lang".into(), json!(s));
                    }
                }
                Format::VoiceBench => {
                    let audio_names: Vec<&String> = cols.audio.iter().map(|(a, _)| a).collect();
                    for (k, v) in &cells {
                        if audio_names.contains(&k) || Some(k) == cols.text.as_ref() {
                            continue;
                        }
                        // Names that `diva eval run` reads with a meaning of its own
                        // keep the value under `source_NAME`.
                        let reserved = [
                            "id",
                            "audio",
                            "text",
                            "answers",
                            "answer",
                            "label",
                            "labels",
                            "translation",
                            "translations",
                            "target_lang",
                            "tgt_lang",
                        ];
                        let value = to_json(v);
                        let plain_question = k == "question" && value.is_string();
                        let key = if reserved.contains(&k.as_str())
                            || (k == "question" && !plain_question)
                        {
                            format!("source_{k}")
                        } else {
                            k.clone()
                        };
                        base.insert(key, value);
                    }
                    let sub = subset.clone().unwrap_or_default();
                    if sub == "sd-qa" {
                        if let Some((_, r)) = cells.iter().find(|(k, _)| k == "reference") {
                            base.insert("answers".into(), json!(strings(r)));
                        }
                        if let Some(s) = &split {
                            base.insert("dialect".into(), json!(s));
                        }
                    }
                    base.insert("subset".into(), json!(sub));
                }
            }
            if let Some(s) = &split {
                base.entry("split").or_insert_with(|| json!(s));
            }
            let raw_id = get(&cols.id)
                .and_then(scalar_text)
                .map(|s| stem_of(s.trim()))
                .filter(|s| !s.is_empty())
                .or_else(|| meld_id(&cells));
            for (acol, dialect) in &cols.audio {
                let (bytes, apath) = cells
                    .iter()
                    .find(|(k, _)| k == acol)
                    .map_or((None, None), |(_, v)| audio_cell(v));
                let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
                    skipped.push(format!("{at}: skipped: no audio bytes in `{acol}`"));
                    continue;
                };
                let mut id = raw_id
                    .clone()
                    .or_else(|| apath.as_deref().map(stem_of))
                    .map(|s| sanitize(&s))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("{file_stem}-{n:06}"));
                if let Some(d) = dialect {
                    id = format!("{id}-{}", sanitize(d));
                }
                let mut stem = id.clone();
                let mut k = 2;
                while !used.insert(stem.clone()) {
                    stem = format!("{id}-{k}");
                    k += 1;
                }
                let ext = apath
                    .as_deref()
                    .and_then(ext_from_path)
                    .unwrap_or_else(|| sniff_audio_ext(&bytes).to_string());
                let name = format!("{stem}.{ext}");
                if write_file(&audio_dir.join(&name), &bytes)? {
                    written += 1;
                } else {
                    reused += 1;
                }
                let mut line = Map::new();
                line.insert("id".into(), json!(stem));
                line.insert("audio".into(), json!(format!("audio/{name}")));
                line.extend(base.clone());
                if let Some(d) = dialect {
                    line.insert("dialect".into(), json!(d));
                }
                lines.push(line);
            }
        }
    }
    if lines.is_empty() {
        bail!(
            "--in {}: no row could be imported ({} skipped{})",
            input.display(),
            skipped.len(),
            skipped
                .first()
                .map(|s| format!(", e.g. {s}"))
                .unwrap_or_default()
        );
    }
    // The label set: the file's ClassLabel names, else the dataset's known
    // classes, with any other gold label seen appended; else the labels seen.
    let labels = match o.format {
        Format::Meld | Format::Iemocap | Format::Mustard => {
            let mut set = label_set.unwrap_or_else(|| match o.format {
                Format::Meld => MELD_LABELS.map(String::from).to_vec(),
                Format::Mustard => MUSTARD_LABELS.map(String::from).to_vec(),
                _ => Vec::new(),
            });
            for l in &seen_labels {
                if !set.contains(l) {
                    set.push(l.clone());
                }
            }
            for line in &mut lines {
                line.insert("labels".into(), json!(set));
            }
            Some(set)
        }
        _ => None,
    };
    let mut text = String::new();
    for l in &lines {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    let manifest = out.join("manifest.jsonl");
    let mut tmp = tempfile::Builder::new()
        .prefix(".manifest-")
        .tempfile_in(out)
        .with_context(|| format!("creating a temporary file in {}", out.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", manifest.display()))?;
    tmp.persist(&manifest)
        .with_context(|| format!("renaming into {}", manifest.display()))?;
    Ok(ImportReport {
        manifest,
        items: lines.len(),
        written,
        reused,
        skipped,
        task: o.format.task(subset.as_deref()),
        labels,
        target_lang: if o.format == Format::Covost2 {
            target_lang
        } else {
            None
        },
    })
}

fn normalize_label(format: Format, l: &str) -> String {
    match format {
        Format::Iemocap => iemocap_label(l),
        _ => l.trim().to_lowercase(),
    }
}

/// MELD's utterance id: `dia{Dialogue_ID}_utt{Utterance_ID}` (its clips'
/// names).
fn meld_id(cells: &[(String, Field)]) -> Option<String> {
    let get = |k: &str| {
        cells
            .iter()
            .find(|(c, _)| c == k)
            .and_then(|(_, v)| scalar_text(v))
    };
    Some(format!(
        "dia{}_utt{}",
        get("Dialogue_ID")?,
        get("Utterance_ID")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers() {
        assert_eq!(
            covost_config(Path::new("covost2/en_de/test-00000-of-00001.parquet")),
            Some(("en".into(), "de".into()))
        );
        assert_eq!(
            covost_config(Path::new("x/covost2-fr_en.parquet")),
            Some(("fr".into(), "en".into()))
        );
        assert_eq!(covost_config(Path::new("x/test.parquet")), None);
        assert_eq!(
            voicebench_subset(Path::new("vb/sd-qa/usa-00000-of-00001.parquet")).as_deref(),
            Some("sd-qa")
        );
        assert_eq!(
            voicebench_subset(Path::new("vb/mmsu-test.parquet")).as_deref(),
            Some("mmsu")
        );
        assert_eq!(
            split_name(Path::new("sd-qa/usa-00000-of-00001.parquet")).as_deref(),
            Some("usa")
        );
        assert_eq!(
            split_name(Path::new("x/test/0000.parquet")).as_deref(),
            Some("test")
        );
        assert_eq!(iemocap_label("Ang"), "angry");
        assert_eq!(stem_of("clips/a.b.wav"), "a.b");
    }
}
