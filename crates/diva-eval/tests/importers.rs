//! `diva eval import` on small synthetic parquet files written here, in the
//! schemas of the HF exports (nested `answers {text}`, `audio {bytes, path}`
//! structs, ClassLabel metadata), read back by `diva eval run`'s manifest
//! loader and scorer.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use diva_eval::import::{import, Format, ImportOptions};
use diva_eval::tasks::{read_manifest, Scorer, Task};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::Value;

/// A 16 kHz mono 16-bit WAV of `n` samples of a tone.
fn wav(n: usize, freq: f32) -> Vec<u8> {
    let data = (n * 2) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&32000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for i in 0..n {
        let x = 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / 16000.0).sin();
        b.extend_from_slice(&((x * 32767.0) as i16).to_le_bytes());
    }
    b
}

#[derive(Clone)]
enum V {
    S(&'static str),
    B(Vec<u8>),
    I(i64),
    T(bool),
}

/// One leaf column's values with its definition and repetition levels.
struct Leaf {
    vals: Vec<V>,
    def: Option<Vec<i16>>,
    rep: Option<Vec<i16>>,
}

/// An optional leaf with every value present.
fn present(vals: Vec<V>) -> Leaf {
    opt(vals.into_iter().map(Some).collect())
}

/// A leaf one optional level deep (`None` is null).
fn opt(vals: Vec<Option<V>>) -> Leaf {
    let def = vals.iter().map(|v| i16::from(v.is_some())).collect();
    Leaf {
        vals: vals.into_iter().flatten().collect(),
        def: Some(def),
        rep: None,
    }
}

/// The element leaf of a required 3-level LIST (one repeated level).
fn list(rows: Vec<Vec<V>>) -> Leaf {
    let (mut vals, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        if r.is_empty() {
            def.push(0);
            rep.push(0);
        }
        for (i, v) in r.into_iter().enumerate() {
            vals.push(v);
            def.push(1);
            rep.push(i16::from(i > 0));
        }
    }
    Leaf {
        vals,
        def: Some(def),
        rep: Some(rep),
    }
}

fn strs(v: &[&'static str]) -> Vec<V> {
    v.iter().map(|s| V::S(s)).collect()
}

/// Writes a parquet file of `schema` (a message type) whose leaf columns,
/// in schema order, hold `leaves`; `hf` is the `huggingface` metadata.
fn write_parquet(path: &Path, schema: &str, leaves: Vec<Leaf>, hf: Option<&str>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let props = WriterProperties::builder()
        .set_key_value_metadata(
            hf.map(|h| vec![KeyValue::new("huggingface".into(), h.to_string())]),
        )
        .build();
    let mut w =
        SerializedFileWriter::new(File::create(path).unwrap(), schema, Arc::new(props)).unwrap();
    let mut g = w.next_row_group().unwrap();
    let mut leaves = leaves.into_iter();
    while let Some(mut c) = g.next_column().unwrap() {
        let leaf = leaves.next().expect("a leaf per column");
        let (d, r) = (leaf.def.as_deref(), leaf.rep.as_deref());
        match c.untyped() {
            ColumnWriter::ByteArrayColumnWriter(t) => {
                let v: Vec<ByteArray> = leaf
                    .vals
                    .iter()
                    .map(|v| match v {
                        V::S(s) => ByteArray::from(*s),
                        V::B(b) => ByteArray::from(b.clone()),
                        _ => panic!("not binary"),
                    })
                    .collect();
                t.write_batch(&v, d, r).unwrap();
            }
            ColumnWriter::Int64ColumnWriter(t) => {
                let v: Vec<i64> = leaf
                    .vals
                    .iter()
                    .map(|v| match v {
                        V::I(i) => *i,
                        _ => panic!("not int"),
                    })
                    .collect();
                t.write_batch(&v, d, r).unwrap();
            }
            ColumnWriter::Int32ColumnWriter(t) => {
                let v: Vec<i32> = leaf
                    .vals
                    .iter()
                    .map(|v| match v {
                        V::I(i) => *i as i32,
                        _ => panic!("not int"),
                    })
                    .collect();
                t.write_batch(&v, d, r).unwrap();
            }
            ColumnWriter::BoolColumnWriter(t) => {
                let v: Vec<bool> = leaf
                    .vals
                    .iter()
                    .map(|v| match v {
                        V::T(b) => *b,
                        _ => panic!("not bool"),
                    })
                    .collect();
                t.write_batch(&v, d, r).unwrap();
            }
            _ => panic!("unsupported column type"),
        }
        c.close().unwrap();
    }
    assert!(leaves.next().is_none(), "more leaves than columns");
    g.close().unwrap();
    w.close().unwrap();
}

/// HF's `Audio` feature: `audio {bytes, path}` (path may be null).
const AUDIO: &str = "optional group audio { optional binary bytes; optional binary path (UTF8); }";

fn audio_leaves(clips: Vec<Option<Vec<u8>>>, paths: Vec<Option<&'static str>>) -> [Leaf; 2] {
    // bytes: def 2 = present, 1 = struct present but bytes null, 0 = no struct.
    let def = clips
        .iter()
        .map(|c| if c.is_some() { 2 } else { 1 })
        .collect();
    let bytes = Leaf {
        vals: clips.into_iter().flatten().map(V::B).collect(),
        def: Some(def),
        rep: None,
    };
    let pdef = paths
        .iter()
        .map(|p| if p.is_some() { 2 } else { 1 })
        .collect();
    let path = Leaf {
        vals: paths.into_iter().flatten().map(V::S).collect(),
        def: Some(pdef),
        rep: None,
    };
    [bytes, path]
}

fn lines(manifest: &Path) -> Vec<Value> {
    std::fs::read_to_string(manifest)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().to_path_buf();
    (t, p)
}

/// HeySQuAD: `id`, `title`, `context`, `question`, `answers {text, answer_start}`,
/// `audio {bytes, path}`.
fn heysquad(path: &Path) {
    let schema = format!(
        "message hf {{ optional binary id (UTF8); optional binary title (UTF8); \
         optional binary context (UTF8); optional binary question (UTF8); \
         required group answers {{ required group text (LIST) {{ repeated group list {{ \
         required binary element (UTF8); }} }} required group answer_start (LIST) {{ \
         repeated group list {{ required int32 element; }} }} }} {AUDIO} }}"
    );
    let [b, p] = audio_leaves(
        vec![Some(wav(1600, 440.0)), Some(wav(800, 220.0)), None],
        vec![Some("q1.wav"), None, None],
    );
    write_parquet(
        path,
        &schema,
        vec![
            opt(vec![
                Some(V::S("5733be28")),
                Some(V::S("5733be29")),
                Some(V::S("x")),
            ]),
            present(strs(&["Notre Dame", "Notre Dame", "Notre Dame"])),
            present(strs(&["ctx", "ctx", "ctx"])),
            present(strs(&[
                "To whom did the Virgin Mary appear?",
                "What is in front of the Main Building?",
                "Where?",
            ])),
            list(vec![
                strs(&["Saint Bernadette Soubirous", "Bernadette"]),
                strs(&["a copper statue of Christ"]),
                strs(&["here"]),
            ]),
            list(vec![
                vec![V::I(515), V::I(521)],
                vec![V::I(188)],
                vec![V::I(0)],
            ]),
            b,
            p,
        ],
        None,
    );
}

#[test]
fn heysquad_imports_to_a_spoken_qa_manifest_and_reruns_skip_audio() {
    let (_t, dir) = tmp();
    let src = dir.join("heysquad/validation-00000-of-00001.parquet");
    heysquad(&src);
    let out = dir.join("out");
    let r = import(&src, &out, &ImportOptions::new(Format::HeySquad)).unwrap();
    assert_eq!((r.items, r.written, r.reused), (2, 2, 0));
    assert_eq!(r.task, Some("spoken-qa"));
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert!(
        r.skipped[0].ends_with("[2]: skipped: no audio bytes in `audio`"),
        "{:?}",
        r.skipped
    );
    let l = lines(&r.manifest);
    assert_eq!(l[0]["id"], "5733be28");
    assert_eq!(l[0]["audio"], "audio/5733be28.wav");
    assert_eq!(l[0]["text"], "To whom did the Virgin Mary appear?");
    assert_eq!(l[0]["question"], l[0]["text"]);
    assert_eq!(
        l[0]["answers"],
        serde_json::json!(["Saint Bernadette Soubirous", "Bernadette"])
    );
    assert_eq!(l[0]["split"], "validation");
    // The bytes are written as they were: the clip decodes to its 1,600 samples.
    let pcm = diva_core::audio::load_pcm_16k(&out.join("audio/5733be28.wav")).unwrap();
    assert_eq!(pcm.len(), 1600);
    assert_eq!(
        std::fs::read(out.join("audio/5733be29.wav")).unwrap(),
        wav(800, 220.0)
    );

    // What `diva eval run --task spoken-qa` reads, and scores.
    let items = read_manifest(&r.manifest, Task::SpokenQa).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].audio, out.join("audio/5733be29.wav"));
    let s = Scorer::new(Task::SpokenQa, &items, &Default::default()).unwrap();
    let sc = s.score(&items[0], "It was Bernadette.").unwrap();
    assert_eq!(sc.stats[0], vec![100.0, 1.0]);

    // A rerun writes no audio again and the same manifest.
    let before = std::fs::read_to_string(&r.manifest).unwrap();
    let r2 = import(&src, &out, &ImportOptions::new(Format::HeySquad)).unwrap();
    assert_eq!((r2.items, r2.written, r2.reused), (2, 0, 2));
    assert_eq!(std::fs::read_to_string(&r2.manifest).unwrap(), before);
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .chain(std::fs::read_dir(out.join("audio")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // A truncated clip (an interrupted write under the final name) is rewritten.
    std::fs::write(out.join("audio/5733be28.wav"), b"RIFF").unwrap();
    let r3 = import(&src, &out, &ImportOptions::new(Format::HeySquad)).unwrap();
    assert_eq!((r3.written, r3.reused), (1, 1));
    assert_eq!(
        diva_core::audio::load_pcm_16k(&out.join("audio/5733be28.wav"))
            .unwrap()
            .len(),
        1600
    );
}

#[test]
fn a_missing_column_names_it_and_lists_the_columns() {
    let (_t, dir) = tmp();
    let src = dir.join("x.parquet");
    let schema = format!(
        "message hf {{ optional binary id (UTF8); optional binary question (UTF8); {AUDIO} }}"
    );
    let [b, p] = audio_leaves(vec![Some(wav(100, 440.0))], vec![None]);
    write_parquet(
        &src,
        &schema,
        vec![
            opt(vec![Some(V::S("a"))]),
            opt(vec![Some(V::S("q?"))]),
            b,
            p,
        ],
        None,
    );
    let e = import(&src, &dir.join("o"), &ImportOptions::new(Format::HeySquad))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no answers column")
            && e.contains("`answers`")
            && e.contains("id, question, audio"),
        "{e}"
    );
    assert!(e.contains("--label-column"), "{e}");
    // An override naming an absent column is an error too.
    let mut o = ImportOptions::new(Format::HeySquad);
    o.label_column = Some("golds".into());
    let e = import(&src, &dir.join("o"), &o).unwrap_err().to_string();
    assert!(
        e.contains("no column `golds`") && e.contains("id, question, audio"),
        "{e}"
    );
    // MELD without `Emotion`.
    let e = import(&src, &dir.join("o"), &ImportOptions::new(Format::Meld))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`Emotion`") && e.contains("columns present"),
        "{e}"
    );
    // Not parquet.
    std::fs::write(dir.join("bad.parquet"), b"not parquet").unwrap();
    let e = import(
        &dir.join("bad.parquet"),
        &dir.join("o"),
        &ImportOptions::new(Format::Meld),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("bad.parquet") && e.contains("not a readable parquet"),
        "{e}"
    );
}

#[test]
fn sdqa_gives_one_item_per_dialect_column() {
    let (_t, dir) = tmp();
    let src = dir.join("sdqa/dev.parquet");
    let a = "optional group {} { optional binary bytes; optional binary path (UTF8); }";
    let schema = format!(
        "message hf {{ optional binary id (UTF8); optional binary question (UTF8); \
         required group answers (LIST) {{ repeated group list {{ required binary element (UTF8); }} }} \
         {} {} }}",
        a.replace("{}", "eng_aus"),
        a.replace("{}", "eng_ind_s")
    );
    let [b1, p1] = audio_leaves(vec![Some(wav(160, 300.0))], vec![Some("dev/aus/1.wav")]);
    let [b2, p2] = audio_leaves(vec![Some(wav(320, 500.0))], vec![None]);
    write_parquet(
        &src,
        &schema,
        vec![
            opt(vec![Some(V::S("-1001"))]),
            opt(vec![Some(V::S("Who wrote Hamlet?"))]),
            list(vec![strs(&["William Shakespeare", "Shakespeare"])]),
            b1,
            p1,
            b2,
            p2,
        ],
        None,
    );
    let out = dir.join("out");
    let r = import(&src, &out, &ImportOptions::new(Format::SdQa)).unwrap();
    let l = lines(&r.manifest);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0]["id"], "-1001-eng_aus");
    assert_eq!(l[0]["dialect"], "eng_aus");
    assert_eq!(l[1]["id"], "-1001-eng_ind_s");
    assert_eq!(l[1]["audio"], "audio/-1001-eng_ind_s.wav");
    assert_eq!(
        l[1]["answers"],
        serde_json::json!(["William Shakespeare", "Shakespeare"])
    );
    assert_eq!(l[1]["text"], "Who wrote Hamlet?");
    assert_eq!(
        std::fs::read(out.join("audio/-1001-eng_ind_s.wav")).unwrap(),
        wav(320, 500.0)
    );
    let items = read_manifest(&r.manifest, Task::SpokenQa).unwrap();
    assert_eq!(items[0].accepted(), ["William Shakespeare", "Shakespeare"]);
}

#[test]
fn meld_labels_are_its_seven_emotions() {
    let (_t, dir) = tmp();
    let src = dir.join("meld/test-00000-of-00001.parquet");
    let schema = format!(
        "message hf {{ optional int64 Sr_No; optional binary Utterance (UTF8); \
         optional binary Speaker (UTF8); optional binary Emotion (UTF8); \
         optional binary Sentiment (UTF8); optional int64 Dialogue_ID; optional int64 Utterance_ID; {AUDIO} }}"
    );
    let [b, p] = audio_leaves(
        vec![
            Some(wav(100, 300.0)),
            Some(wav(120, 300.0)),
            Some(wav(140, 300.0)),
        ],
        vec![None, None, None],
    );
    write_parquet(
        &src,
        &schema,
        vec![
            opt(vec![Some(V::I(1)), Some(V::I(2)), Some(V::I(3))]),
            opt(vec![
                Some(V::S("Oh my God!")),
                Some(V::S("Okay.")),
                Some(V::S("Hi")),
            ]),
            opt(vec![
                Some(V::S("Rachel")),
                Some(V::S("Ross")),
                Some(V::S("Joey")),
            ]),
            opt(vec![Some(V::S("Surprise")), Some(V::S("neutral")), None]),
            opt(vec![
                Some(V::S("positive")),
                Some(V::S("neutral")),
                Some(V::S("neutral")),
            ]),
            opt(vec![Some(V::I(0)), Some(V::I(0)), Some(V::I(1))]),
            opt(vec![Some(V::I(3)), Some(V::I(4)), Some(V::I(0))]),
            b,
            p,
        ],
        None,
    );
    let r = import(&src, &dir.join("out"), &ImportOptions::new(Format::Meld)).unwrap();
    assert_eq!(r.task, Some("classify"));
    assert_eq!(r.skipped.len(), 1, "a row without Emotion: {:?}", r.skipped);
    assert!(
        r.skipped[0].contains("[2]: skipped: no label"),
        "{:?}",
        r.skipped
    );
    let l = lines(&r.manifest);
    assert_eq!(l[0]["id"], "dia0_utt3");
    assert_eq!(l[0]["label"], "surprise");
    assert_eq!(l[0]["text"], "Oh my God!");
    assert_eq!(
        l[1]["labels"],
        serde_json::json!(["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"])
    );
    // The runner's label set is the full seven, not the two gold labels seen.
    let items = read_manifest(&r.manifest, Task::Classify).unwrap();
    let s = Scorer::new(Task::Classify, &items, &Default::default()).unwrap();
    assert_eq!(s.labels.as_ref().unwrap().len(), 7);
    assert_eq!(
        s.score(&items[0], "Surprise!").unwrap().stats[1],
        vec![100.0, 1.0]
    );
}

#[test]
fn iemocap_int_labels_are_named_by_the_class_label_metadata() {
    let (_t, dir) = tmp();
    let src = dir.join("iemocap/session1.parquet");
    let schema =
        format!("message hf {{ optional binary file (UTF8); {AUDIO} optional int64 label; }}");
    let hf = r#"{"info": {"features": {"file": {"dtype": "string", "_type": "Value"},
        "audio": {"sampling_rate": 16000, "_type": "Audio"},
        "label": {"names": ["ang", "hap", "neu", "sad"], "_type": "ClassLabel"}}}}"#;
    let [b, p] = audio_leaves(
        vec![Some(wav(100, 300.0)), Some(wav(100, 350.0))],
        vec![
            Some("Ses01F_impro01_F000.wav"),
            Some("Ses01F_impro01_M001.wav"),
        ],
    );
    write_parquet(
        &src,
        &schema,
        vec![
            opt(vec![
                Some(V::S("Ses01F_impro01/Ses01F_impro01_F000.wav")),
                Some(V::S("Ses01F_impro01/Ses01F_impro01_M001.wav")),
            ]),
            b,
            p,
            opt(vec![Some(V::I(3)), Some(V::I(0))]),
        ],
        Some(hf),
    );
    let r = import(&src, &dir.join("out"), &ImportOptions::new(Format::Iemocap)).unwrap();
    assert_eq!(
        r.labels.as_deref(),
        Some(&["angry", "happy", "neutral", "sad"].map(String::from)[..])
    );
    let l = lines(&r.manifest);
    assert_eq!(l[0]["id"], "Ses01F_impro01_F000");
    assert_eq!(l[0]["label"], "sad");
    assert_eq!(l[1]["label"], "angry");
    assert_eq!(l[0].get("text"), None, "no transcription column");
    let items = read_manifest(&r.manifest, Task::Classify).unwrap();
    let s = Scorer::new(Task::Classify, &items, &Default::default()).unwrap();
    assert_eq!(
        s.labels.as_ref().unwrap().labels(),
        ["angry", "happy", "neutral", "sad"]
    );

    // A string label column chosen with --label-column.
    let src2 = dir.join("iemocap2/test.parquet");
    let schema = format!(
        "message hf {{ optional binary id (UTF8); optional binary transcription (UTF8); \
         optional binary major_emotion (UTF8); optional binary emo (UTF8); {AUDIO} }}"
    );
    let [b, p] = audio_leaves(vec![Some(wav(100, 300.0))], vec![None]);
    write_parquet(
        &src2,
        &schema,
        vec![
            opt(vec![Some(V::S("u1"))]),
            opt(vec![Some(V::S("Excuse me."))]),
            opt(vec![Some(V::S("neu"))]),
            opt(vec![Some(V::S("Frustrated"))]),
            b,
            p,
        ],
        None,
    );
    let mut o = ImportOptions::new(Format::Iemocap);
    o.label_column = Some("emo".into());
    let r = import(&src2, &dir.join("out2"), &o).unwrap();
    let l = lines(&r.manifest);
    assert_eq!(l[0]["label"], "frustrated");
    assert_eq!(l[0]["text"], "Excuse me.");
    let r = import(
        &src2,
        &dir.join("out3"),
        &ImportOptions::new(Format::Iemocap),
    )
    .unwrap();
    assert_eq!(
        lines(&r.manifest)[0]["label"],
        "neutral",
        "major_emotion by default"
    );
}

#[test]
fn mustard_sarcasm_becomes_two_classes() {
    let (_t, dir) = tmp();
    let src = dir.join("mustard.parquet");
    let schema = format!(
        "message hf {{ optional binary id (UTF8); optional binary utterance (UTF8); \
         optional binary speaker (UTF8); optional binary show (UTF8); optional boolean sarcasm; {AUDIO} }}"
    );
    let [b, p] = audio_leaves(
        vec![Some(wav(100, 300.0)), Some(wav(100, 300.0))],
        vec![None, None],
    );
    write_parquet(
        &src,
        &schema,
        vec![
            opt(vec![Some(V::S("1_60")), Some(V::S("1_70"))]),
            opt(vec![
                Some(V::S("Oh, great.")),
                Some(V::S("It's on the table.")),
            ]),
            opt(vec![Some(V::S("CHANDLER")), Some(V::S("ROSS"))]),
            opt(vec![Some(V::S("FRIENDS")), Some(V::S("FRIENDS"))]),
            opt(vec![Some(V::T(true)), Some(V::T(false))]),
            b,
            p,
        ],
        None,
    );
    let r = import(&src, &dir.join("out"), &ImportOptions::new(Format::Mustard)).unwrap();
    let l = lines(&r.manifest);
    assert_eq!(l[0]["label"], "sarcastic");
    assert_eq!(l[1]["label"], "not sarcastic");
    assert_eq!(
        l[0]["labels"],
        serde_json::json!(["not sarcastic", "sarcastic"])
    );
    let items = read_manifest(&r.manifest, Task::Classify).unwrap();
    let s = Scorer::new(Task::Classify, &items, &Default::default()).unwrap();
    assert_eq!(
        s.score(&items[1], "Not sarcastic.").unwrap().stats[1],
        vec![100.0, 1.0]
    );
}

#[test]
fn covost2_takes_the_target_language_from_the_config_directory() {
    let (_t, dir) = tmp();
    let src = dir.join("covost2/en_de/test-00000-of-00001.parquet");
    let schema = format!(
        "message hf {{ optional binary client_id (UTF8); optional binary file (UTF8); {AUDIO} \
         optional binary sentence (UTF8); optional binary translation (UTF8); optional binary id (UTF8); }}"
    );
    let [b, p] = audio_leaves(
        vec![
            Some(wav(100, 300.0)),
            Some(vec![0xFF, 0xFB, 0x90, 0x00, 1, 2]),
        ],
        vec![None, Some("common_voice_en_2.mp3")],
    );
    write_parquet(
        &src,
        &schema,
        vec![
            opt(vec![Some(V::S("c1")), Some(V::S("c2"))]),
            opt(vec![
                Some(V::S("/data/clips/common_voice_en_1.mp3")),
                Some(V::S("/data/clips/common_voice_en_2.mp3")),
            ]),
            b,
            p,
            opt(vec![
                Some(V::S("The house is small.")),
                Some(V::S("Hello.")),
            ]),
            opt(vec![
                Some(V::S("Das Haus ist klein.")),
                Some(V::S("Hallo.")),
            ]),
            opt(vec![
                Some(V::S("common_voice_en_1")),
                Some(V::S("common_voice_en_2")),
            ]),
        ],
        None,
    );
    let out = dir.join("out");
    let r = import(
        &dir.join("covost2"),
        &out,
        &ImportOptions::new(Format::Covost2),
    )
    .unwrap();
    assert_eq!(r.target_lang.as_deref(), Some("de"));
    assert_eq!(r.task, Some("translate"));
    let l = lines(&r.manifest);
    assert_eq!(l[0]["translation"], "Das Haus ist klein.");
    assert_eq!(l[0]["target_lang"], "de");
    assert_eq!(l[0]["lang"], "en");
    assert_eq!(l[0]["text"], "The house is small.");
    assert_eq!(l[0]["audio"], "audio/common_voice_en_1.wav", "sniffed RIFF");
    assert_eq!(l[1]["audio"], "audio/common_voice_en_2.mp3");
    let items = read_manifest(&r.manifest, Task::Translate).unwrap();
    let s = Scorer::new(Task::Translate, &items, &Default::default()).unwrap();
    assert_eq!(s.target_lang.as_deref(), Some("de"));
    let sc = s.score(&items[0], "Das Haus ist klein.").unwrap();
    assert!((s.metrics[0].aggregate.score(&sc.stats[0]) - 100.0).abs() < 1e-9);

    // Without a config directory and without --target-lang: an error saying so.
    let flat = dir.join("flat.parquet");
    std::fs::copy(&src, &flat).unwrap();
    let e = import(&flat, &dir.join("o2"), &ImportOptions::new(Format::Covost2))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--target-lang") && e.contains("flat.parquet"),
        "{e}"
    );
    let mut o = ImportOptions::new(Format::Covost2);
    o.target_lang = Some("ja".into());
    let r = import(&flat, &dir.join("o2"), &o).unwrap();
    assert_eq!(lines(&r.manifest)[1]["target_lang"], "ja");
}

#[test]
fn voicebench_keeps_each_subsets_fields() {
    let (_t, dir) = tmp();
    // sd-qa (hlt-lab/voicebench's card: `audio`, `prompt`, `reference: string`), one split
    // per dialect (`sd-qa/usa-00000-of-00001.parquet`).
    let sd = dir.join("voicebench/sd-qa/usa-00000-of-00001.parquet");
    let schema = format!(
        "message hf {{ {AUDIO} optional binary prompt (UTF8); optional binary reference (UTF8); }}"
    );
    let [b, p] = audio_leaves(vec![Some(wav(100, 300.0))], vec![Some("usa_0.wav")]);
    write_parquet(
        &sd,
        &schema,
        vec![
            b,
            p,
            present(strs(&["who sang thriller"])),
            present(strs(&["Michael Jackson"])),
        ],
        None,
    );
    let r = import(
        &sd,
        &dir.join("sd"),
        &ImportOptions::new(Format::VoiceBench),
    )
    .unwrap();
    assert_eq!(r.task, Some("voicebench"));
    let l = lines(&r.manifest);
    assert_eq!(l[0]["id"], "usa_0");
    assert_eq!(l[0]["subset"], "sd-qa");
    assert_eq!(l[0]["dialect"], "usa");
    assert_eq!(l[0]["text"], "who sang thriller");
    assert_eq!(l[0]["answers"], serde_json::json!(["Michael Jackson"]));
    assert_eq!(l[0]["reference"], "Michael Jackson");
    let items = read_manifest(&r.manifest, Task::SpokenQa).unwrap();
    assert_eq!(items[0].accepted(), ["Michael Jackson"]);
    let items = read_manifest(&r.manifest, Task::VoiceBench).unwrap();
    assert_eq!(
        items[0].reference_text().as_deref(),
        Some("Michael Jackson")
    );

    // ifeval: `key`, `prompt`, `instruction_id_list`, `kwargs` kept as they are.
    let ie = dir.join("vb/test.parquet");
    let schema = format!(
        "message hf {{ {AUDIO} optional int64 key; optional binary prompt (UTF8); \
         required group instruction_id_list (LIST) {{ repeated group list {{ required binary element (UTF8); }} }} \
         optional binary kwargs (UTF8); }}"
    );
    let [b, p] = audio_leaves(vec![Some(wav(100, 300.0))], vec![None]);
    write_parquet(
        &ie,
        &schema,
        vec![
            b,
            p,
            opt(vec![Some(V::I(1000))]),
            opt(vec![Some(V::S("Write a haiku in lowercase."))]),
            list(vec![strs(&["change_case:english_lowercase"])]),
            opt(vec![Some(V::S("[{}]"))]),
        ],
        None,
    );
    let e = import(
        &ie,
        &dir.join("ie"),
        &ImportOptions::new(Format::VoiceBench),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--subset") && e.contains("ifeval"), "{e}");
    let mut o = ImportOptions::new(Format::VoiceBench);
    o.subset = Some("ifeval".into());
    let r = import(&ie, &dir.join("ie"), &o).unwrap();
    assert_eq!(r.task, Some("voicebench"));
    let l = lines(&r.manifest);
    assert_eq!(l[0]["subset"], "ifeval");
    assert_eq!(l[0]["key"], 1000);
    assert_eq!(
        l[0]["instruction_id_list"],
        serde_json::json!(["change_case:english_lowercase"])
    );
    assert_eq!(l[0]["kwargs"], "[{}]");
    assert_eq!(l[0]["text"], "Write a haiku in lowercase.");
    assert_eq!(l[0]["audio"], "audio/test-000000.wav");
    // The voicebench task reads it, kwargs given as a JSON string.
    let items = read_manifest(&r.manifest, Task::VoiceBench).unwrap();
    assert_eq!(items[0].subset.as_deref(), Some("ifeval"));
    assert_eq!(items[0].kwargs_list().unwrap(), [serde_json::json!({})]);
}
