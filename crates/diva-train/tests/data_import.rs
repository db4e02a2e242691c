//! Data layer: manifest read/write and dataset importers on fake datasets.

use std::fs;
use std::path::Path;

use diva_train::data::{
    import_asterisk, import_commonvoice, import_folder, import_librispeech, read_manifest,
    write_manifest, Item, SkipReason,
};

fn touch(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
}

#[test]
fn manifest_relative_paths_and_malformed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = dir.join("m.jsonl");
    touch(
        &manifest,
        concat!(
            r#"{"audio": "a/one.wav", "text": "hello", "id": "1", "speaker": "s1"}"#,
            "\n",
            "this is not json\n",
            "\n",
            r#"{"audio": "/abs/two.wav", "text": "world", "lang": "en", "split": "dev"}"#,
            "\n",
            r#"{"text": "no audio field"}"#,
            "\n",
        ),
    );
    let (items, skipped) = read_manifest(&manifest).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].audio, dir.join("a/one.wav"));
    assert_eq!(items[0].text, "hello");
    assert_eq!(items[0].id.as_deref(), Some("1"));
    assert_eq!(items[0].speaker.as_deref(), Some("s1"));
    assert_eq!(items[1].audio, Path::new("/abs/two.wav"));
    assert_eq!(items[1].lang.as_deref(), Some("en"));
    assert_eq!(items[1].split.as_deref(), Some("dev"));
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].location.ends_with(":2"), "{}", skipped[0]);
    assert!(skipped[1].location.ends_with(":5"), "{}", skipped[1]);
    assert_eq!(
        skipped[0].to_string(),
        format!(
            "{}:2: malformed line 2: expected ident at line 1 column 2",
            manifest.display()
        )
    );
    assert!(matches!(
        skipped[1].reason,
        SkipReason::MalformedLine { line: 5, .. }
    ));
}

#[test]
fn manifest_missing_file_is_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(read_manifest(tmp.path().join("nope.jsonl")).is_err());
}

#[test]
fn manifest_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut a = Item::new(dir.join("clips/a.wav"), "first \"quoted\" line");
    a.id = Some("a".into());
    a.speaker = Some("spk".into());
    a.lang = Some("en".into());
    a.split = Some("train".into());
    let b = Item::new("/elsewhere/b.flac", "second");
    let manifest = dir.join("out.jsonl");
    write_manifest(&manifest, &[a.clone(), b.clone()]).unwrap();
    // Paths under the manifest dir are stored relative.
    let raw = fs::read_to_string(&manifest).unwrap();
    assert!(raw.contains(r#""audio":"clips/a.wav""#), "{raw}");
    assert_eq!(raw.lines().count(), 2);
    // No temp files left behind.
    assert_eq!(fs::read_dir(dir).unwrap().count(), 1);
    let (items, skipped) = read_manifest(&manifest).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(items, vec![a, b]);
    // Overwriting replaces the content.
    write_manifest(&manifest, &[]).unwrap();
    let (items, _) = read_manifest(&manifest).unwrap();
    assert!(items.is_empty());
}

#[test]
fn commonvoice_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\tlocale\n";
    touch(
        &dir.join("train.tsv"),
        &format!(
            "{header}c1\tcv_1.mp3\tHello there.\t2\t0\t\t\t\ten\n\
             c2\tcv_2.mp3\tMissing clip.\t2\t0\t\t\t\ten\n\
             c3\tcv_3.mp3\t\t2\t0\t\t\t\ten\n"
        ),
    );
    touch(
        &dir.join("test.tsv"),
        "client_id\tpath\tsentence\nc4\tcv_4.mp3\tTest sentence.\nbroken\n",
    );
    for clip in ["cv_1.mp3", "cv_3.mp3", "cv_4.mp3"] {
        touch(&dir.join("clips").join(clip), "x");
    }
    let (items, skipped) = import_commonvoice(dir).unwrap();
    assert_eq!(items.len(), 2);
    let first = &items[0];
    assert_eq!(first.audio, dir.join("clips/cv_1.mp3"));
    assert_eq!(first.text, "Hello there.");
    assert_eq!(first.id.as_deref(), Some("cv_1"));
    assert_eq!(first.speaker.as_deref(), Some("c1"));
    assert_eq!(first.lang.as_deref(), Some("en"));
    assert_eq!(first.split.as_deref(), Some("train"));
    let second = &items[1];
    assert_eq!(second.split.as_deref(), Some("test"));
    assert_eq!(second.speaker.as_deref(), Some("c4"));
    assert_eq!(second.lang, None);
    assert_eq!(skipped.len(), 3);
    assert_eq!(
        skipped[0].reason,
        SkipReason::MissingAudio(dir.join("clips/cv_2.mp3"))
    );
    assert_eq!(skipped[1].reason, SkipReason::EmptyTranscript);
    assert!(matches!(skipped[2].reason, SkipReason::Malformed(_)));
    assert!(skipped[2].location.ends_with("test.tsv:3"));
}

#[test]
fn commonvoice_without_tsv_is_error() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("clips")).unwrap();
    assert!(import_commonvoice(tmp.path()).is_err());
}

#[test]
fn librispeech_import() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ch = root.join("19/198");
    touch(
        &ch.join("19-198.trans.txt"),
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 THIS LITTLE WORK\n19-198-0002 NO AUDIO\n",
    );
    touch(&ch.join("19-198-0000.flac"), "x");
    touch(&ch.join("19-198-0001.flac"), "x");
    let ch2 = root.join("26/495");
    touch(&ch2.join("26-495.trans.txt"), "26-495-0000 ANOTHER ONE\n");
    touch(&ch2.join("26-495-0000.flac"), "x");
    touch(&root.join("README.TXT"), "not a speaker dir");

    let (items, skipped) = import_librispeech(root).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].id.as_deref(), Some("19-198-0000"));
    assert_eq!(items[0].text, "NORTHANGER ABBEY");
    assert_eq!(items[0].audio, ch.join("19-198-0000.flac"));
    assert_eq!(items[0].speaker.as_deref(), Some("19"));
    assert_eq!(items[1].text, "THIS LITTLE WORK");
    assert_eq!(items[2].speaker.as_deref(), Some("26"));
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        skipped[0].reason,
        SkipReason::MissingAudio(ch.join("19-198-0002.flac"))
    );
}

#[test]
fn folder_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    touch(&dir.join("a.wav"), "x");
    touch(&dir.join("a.txt"), "  alpha text \n");
    touch(&dir.join("b.flac"), "x");
    touch(&dir.join("b.txt"), "bravo");
    touch(&dir.join("c.mp3"), "x");
    touch(&dir.join("c.txt"), "charlie");
    touch(&dir.join("d.ogg"), "x");
    touch(&dir.join("d.txt"), "   ");
    touch(&dir.join("e.wav"), "x"); // no transcript
    touch(&dir.join("f.txt"), "orphan"); // no audio
    touch(&dir.join("notes.md"), "ignored");

    let (items, skipped) = import_folder(dir).unwrap();
    let ids: Vec<_> = items.iter().map(|i| i.id.clone().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(items[0].text, "alpha text");
    assert_eq!(items[0].audio, dir.join("a.wav"));
    assert_eq!(items[1].audio, dir.join("b.flac"));
    assert_eq!(skipped.len(), 3);
    assert_eq!(skipped[0].reason, SkipReason::EmptyTranscript);
    assert_eq!(
        skipped[1].reason,
        SkipReason::MissingTranscript(dir.join("e.txt"))
    );
    assert!(matches!(skipped[2].reason, SkipReason::MissingAudio(_)));
    assert!(skipped[2].location.ends_with("f.txt"));
}

#[test]
fn asterisk_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let transcripts = dir.join("core-sounds-en.txt");
    touch(
        &transcripts,
        concat!(
            "; Asterisk core sounds\n",
            ";\n",
            "\n",
            "agent-pass: Please enter your password followed by the pound key. [Note]\n",
            "digits/1: one\n",
            "beep: [this is a beep sound]\n",
            "silence/1: <1 second of silence>\n",
            "vm-goodbye: Goodbye (said cheerfully) <pause> friend\n",
            "missing-file: Not recorded\n",
            "no colon here\n",
        ),
    );
    let sounds = dir.join("sounds/en");
    for key in ["agent-pass", "digits/1", "beep", "silence/1", "vm-goodbye"] {
        touch(&sounds.join(format!("{key}.wav")), "x");
    }
    let (items, skipped) = import_asterisk(&transcripts, &sounds).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].id.as_deref(), Some("agent-pass"));
    assert_eq!(
        items[0].text,
        "Please enter your password followed by the pound key."
    );
    assert_eq!(items[1].id.as_deref(), Some("digits/1"));
    assert_eq!(items[1].audio, sounds.join("digits/1.wav"));
    assert_eq!(items[1].text, "one");
    assert_eq!(items[2].text, "Goodbye friend");
    assert_eq!(skipped.len(), 4);
    assert_eq!(skipped[0].reason, SkipReason::EmptyTranscript);
    assert_eq!(skipped[1].reason, SkipReason::EmptyTranscript);
    assert_eq!(
        skipped[2].reason,
        SkipReason::MissingAudio(sounds.join("missing-file.wav"))
    );
    assert!(matches!(skipped[3].reason, SkipReason::Malformed(_)));
}
