//! `diva eval import` end to end: a MELD-style parquet export written here
//! (flat columns and an HF `audio {bytes, path}` struct holding a real
//! clip), imported, imported again (no audio rewritten), refused with the
//! columns listed when a column is missing, and the manifest evaluated by
//! `diva eval run --task classify --cascade --limit 1` on the shipped model.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

mod common;
use common::{repo_root as root, run_diva as diva, text};

/// A row: utterance, emotion, audio bytes.
type Row<'a> = (&'a str, &'a str, Vec<u8>);

/// MELD's columns (`Utterance`, `Emotion`, `Dialogue_ID`, `Utterance_ID`,
/// `audio`), one row per clip; `emotion: false` leaves `Emotion` out.
fn write_meld(path: &Path, rows: &[Row], emotion: bool) {
    let schema = format!(
        "message hf {{ optional binary Utterance (UTF8); {} optional int64 Dialogue_ID; \
         optional int64 Utterance_ID; optional group audio {{ optional binary bytes; \
         optional binary path (UTF8); }} }}",
        if emotion {
            "optional binary Emotion (UTF8);"
        } else {
            ""
        }
    );
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let mut w = SerializedFileWriter::new(
        File::create(path).unwrap(),
        schema,
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut g = w.next_row_group().unwrap();
    let ones = vec![1i16; rows.len()];
    let twos = vec![2i16; rows.len()];
    let strings =
        |f: &dyn Fn(&Row) -> ByteArray| -> Vec<ByteArray> { rows.iter().map(f).collect() };
    let mut cols: Vec<(Vec<ByteArray>, &[i16])> = vec![(strings(&|r| ByteArray::from(r.0)), &ones)];
    if emotion {
        cols.push((strings(&|r| ByteArray::from(r.1)), &ones));
    }
    for (vals, def) in cols {
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&vals, Some(def), None)
            .unwrap();
        c.close().unwrap();
    }
    for k in [0i64, 1] {
        let ids: Vec<i64> = (0..rows.len() as i64).map(|i| i * k).collect();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<Int64Type>()
            .write_batch(&ids, Some(&ones), None)
            .unwrap();
        c.close().unwrap();
    }
    let bytes = strings(&|r| ByteArray::from(r.2.clone()));
    let mut c = g.next_column().unwrap().unwrap();
    c.typed::<ByteArrayType>()
        .write_batch(&bytes, Some(&twos), None)
        .unwrap();
    c.close().unwrap();
    // Null `path` (def 1: the struct is there, the path is not).
    let mut c = g.next_column().unwrap().unwrap();
    c.typed::<ByteArrayType>()
        .write_batch(&[], Some(&ones), None)
        .unwrap();
    c.close().unwrap();
    assert!(g.next_column().unwrap().is_none());
    g.close().unwrap();
    w.close().unwrap();
}

#[test]
fn meld_export_imports_resumes_and_runs() {
    let t = tempfile::tempdir().unwrap();
    let clip =
        std::fs::read(root().join("tests/fixtures/audio/demo/say-please-in-italian.wav")).unwrap();
    let src = t.path().join("meld/test-00000-of-00001.parquet");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    write_meld(
        &src,
        &[
            ("How do you say please in Italian?", "Neutral", clip.clone()),
            ("Why?", "Surprise", clip.clone()),
        ],
        true,
    );
    let out = t.path().join("out");
    let (src_s, out_s) = (src.display().to_string(), out.display().to_string());
    let args = [
        "eval", "import", "--format", "meld", "--in", &src_s, "--out", &out_s,
    ];
    let o = diva(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let manifest = out.join("manifest.jsonl");
    assert_eq!(text(&o.stdout).trim(), manifest.display().to_string());
    let err = text(&o.stderr);
    assert!(
        err.contains("2 items (2 audio files written, 0 already there"),
        "{err}"
    );
    assert!(err.contains("diva eval run --task classify"), "{err}");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&manifest)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["id"], "dia0_utt0");
    assert_eq!(first["label"], "neutral");
    assert_eq!(first["audio"], "audio/dia0_utt0.wav");
    assert_eq!(
        std::fs::read(out.join("audio/dia0_utt0.wav")).unwrap(),
        clip
    );

    let o = diva(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("(0 audio files written, 2 already there"),
        "{}",
        text(&o.stderr)
    );

    // A file without `Emotion`: the error names it and lists the columns.
    let bad = t.path().join("bad.parquet");
    write_meld(&bad, &[("Hi.", "", clip.clone())], false);
    let bad_s = bad.display().to_string();
    let o = diva(&[
        "eval", "import", "--format", "meld", "--in", &bad_s, "--out", &out_s,
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("`Emotion`")
            && err.contains("Utterance, Dialogue_ID, Utterance_ID, audio")
            && err.contains("--label-column"),
        "{err}"
    );

    // The manifest is what `diva eval run` consumes.
    let run_dir = t.path().join("run").display().to_string();
    let man_s = manifest.display().to_string();
    let model = root().join("models/diva-tiny").display().to_string();
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "classify",
        "--data",
        &man_s,
        "--model",
        &model,
        "--cascade",
        "--limit",
        "1",
        "--max-tokens",
        "8",
        "--rounds",
        "100",
        "--threads",
        "1",
        "--out",
        &run_dir,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("run/results.json")).unwrap())
            .unwrap();
    assert_eq!(r["task"], "classify");
    assert_eq!(r["scored_items"], 1);
    assert_eq!(
        r["labels"],
        serde_json::json!(["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"])
    );
    let systems: Vec<&str> = r["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["diva", "cascade"]);
}
