//! HF `datasets` parquet importer on the committed fixtures
//! (`tests/fixtures/parquet/`, made by `tools/reference/make_parquet_fixture.py`).

use std::fs;
use std::path::{Path, PathBuf};

use diva_core::audio::load_pcm_16k;
use diva_train::data::hf_parquet::sniff_audio_ext;
use diva_train::data::{import_hf_parquet, read_manifest, write_manifest, SkipReason};

fn fixture(name: &str) -> PathBuf {
    diva_core::testing::fixtures().join("parquet").join(name)
}

const CV: &str = "commonvoice_style.parquet";

fn mtime(p: &Path) -> std::time::SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn columns_detected_audio_extracted_bad_rows_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let (items, skipped) = import_hf_parquet(&[fixture(CV)], out, None).unwrap();

    // `sentence` picked over `normalized_text`; client_id -> speaker, locale -> lang.
    assert_eq!(items.len(), 2, "{items:#?}");
    assert_eq!(items[0].text, "Hello there.");
    assert_eq!(items[0].id.as_deref(), Some("common_voice_en_001"));
    assert_eq!(items[0].audio, out.join("audio/common_voice_en_001.wav"));
    assert_eq!(items[0].speaker.as_deref(), Some("spk_a"));
    assert_eq!(items[0].lang.as_deref(), Some("en"));
    assert_eq!(items[0].split, None);
    // Null `audio.path`: id from the file stem and row, extension sniffed from RIFF.
    assert_eq!(items[1].text, "Second clip.");
    assert_eq!(items[1].id.as_deref(), Some("commonvoice_style-000001"));
    assert_eq!(
        items[1].audio,
        out.join("audio/commonvoice_style-000001.wav")
    );
    assert_eq!(items[1].speaker.as_deref(), Some("spk_b"));

    // The extracted files are real 16 kHz audio: 0.5 s and 0.25 s decaying tones of peak 0.5.
    for (item, n) in items.iter().zip([8000, 4000]) {
        let pcm = load_pcm_16k(&item.audio).unwrap();
        assert_eq!(pcm.len(), n, "{}", item.audio.display());
        let peak = pcm.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((0.4..=0.51).contains(&peak), "peak {peak}");
    }

    // Row 2 has an empty sentence, row 3 a null audio struct, row 4 null bytes.
    let fx = fixture(CV);
    let locs: Vec<_> = skipped.iter().map(|s| s.location.clone()).collect();
    assert_eq!(
        locs,
        [2, 3, 4].map(|r| format!("{}[{r}]", fx.display())),
        "{skipped:?}"
    );
    assert_eq!(skipped[0].reason, SkipReason::EmptyTranscript);
    assert_eq!(skipped[1].reason, SkipReason::EmptyAudio);
    assert_eq!(skipped[2].reason, SkipReason::EmptyAudio);
    // Skipped rows leave no audio behind; no temp files either.
    let mut names: Vec<_> = fs::read_dir(out.join("audio"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["common_voice_en_001.wav", "commonvoice_style-000001.wav"]
    );

    // The manifest written next to audio/ refers to it relatively and reads back.
    let manifest = out.join("manifest.jsonl");
    write_manifest(&manifest, &items).unwrap();
    let raw = fs::read_to_string(&manifest).unwrap();
    assert!(
        raw.contains(r#""audio":"audio/common_voice_en_001.wav""#),
        "{raw}"
    );
    let (back, bad) = read_manifest(&manifest).unwrap();
    assert!(bad.is_empty());
    assert_eq!(back, items);
}

#[test]
fn rerun_is_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let (first, _) = import_hf_parquet(&[fixture(CV)], out, None).unwrap();
    let kept = &first[0].audio;
    let redone = &first[1].audio;
    let kept_time = mtime(kept);
    // A file cut short (an interrupted earlier run) is rewritten; a complete one is not.
    let full = fs::read(redone).unwrap();
    fs::write(redone, &full[..100]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (second, skipped) = import_hf_parquet(&[fixture(CV)], out, None).unwrap();
    assert_eq!(second, first);
    assert_eq!(skipped.len(), 3);
    assert_eq!(mtime(kept), kept_time, "complete file was rewritten");
    assert_eq!(fs::read(redone).unwrap(), full);
}

#[test]
fn explicit_text_column() {
    let tmp = tempfile::tempdir().unwrap();
    let (items, skipped) =
        import_hf_parquet(&[fixture(CV)], tmp.path(), Some("normalized_text")).unwrap();
    let texts: Vec<_> = items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(texts, ["hello there", "second clip"]);
    assert_eq!(skipped.len(), 3);
}

#[test]
fn librispeech_style_int_speaker_id_column_flac_and_split_from_name() {
    let tmp = tempfile::tempdir().unwrap();
    // Hub layout: the split is in the shard's name.
    let shard = tmp.path().join("train-00000-of-00001.parquet");
    fs::copy(fixture("librispeech_style.parquet"), &shard).unwrap();
    let out = tmp.path().join("out");
    let (items, skipped) = import_hf_parquet(&[shard, fixture(CV)], &out, None).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(skipped.len(), 3);
    let it = &items[0];
    assert_eq!(it.text, "A FLAC ROW");
    assert_eq!(it.id.as_deref(), Some("1272-0000"));
    assert_eq!(it.speaker.as_deref(), Some("1272"));
    assert_eq!(it.lang, None);
    assert_eq!(it.split.as_deref(), Some("train"));
    assert_eq!(it.audio, out.join("audio/1272-0000.flac"));
    assert_eq!(load_pcm_16k(&it.audio).unwrap().len(), 3200);
    // The CommonVoice-style file in the same run uses its own `sentence` column.
    assert_eq!(items[1].text, "Hello there.");
    assert_eq!(items[1].split, None);
}

#[test]
fn duplicate_ids_get_distinct_files() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(CV);
    let (items, _) = import_hf_parquet(&[f.clone(), f], tmp.path(), None).unwrap();
    let ids: Vec<_> = items.iter().map(|i| i.id.clone().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "common_voice_en_001",
            "commonvoice_style-000001",
            "common_voice_en_001-2",
            "commonvoice_style-000001-2"
        ]
    );
    for it in &items {
        assert!(it.audio.is_file(), "{}", it.audio.display());
    }
}

#[test]
fn missing_text_column_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // No known transcript column: the error lists what is there.
    let err = import_hf_parquet(&[fixture("no_text.parquet")], tmp.path(), None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("no_text.parquet"), "{msg}");
    assert!(msg.contains("no transcript column"), "{msg}");
    assert!(msg.contains("columns present: audio, label"), "{msg}");
    assert!(msg.contains("--text-column"), "{msg}");
    // A named column that does not exist.
    let err = import_hf_parquet(&[fixture(CV)], tmp.path(), Some("transcript")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("no column `transcript`"), "{msg}");
    assert!(
        msg.contains("columns present: client_id, audio, sentence, normalized_text, locale"),
        "{msg}"
    );
}

#[test]
fn non_parquet_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("train.parquet");
    fs::write(
        &bogus,
        "client_id\tpath\tsentence\nthis is a TSV, not parquet\n",
    )
    .unwrap();
    let err =
        import_hf_parquet(std::slice::from_ref(&bogus), &tmp.path().join("out"), None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&bogus.display().to_string()), "{msg}");
    assert!(msg.contains("not a readable parquet file"), "{msg}");

    let missing = tmp.path().join("nope.parquet");
    let err = import_hf_parquet(&[missing], &tmp.path().join("out"), None).unwrap_err();
    assert!(format!("{err:#}").contains("nope.parquet"), "{err:#}");
}

#[test]
fn sniffs_audio_magic() {
    assert_eq!(sniff_audio_ext(b"RIFF\x24\0\0\0WAVEfmt "), "wav");
    assert_eq!(sniff_audio_ext(b"fLaC\0\0\0\x22"), "flac");
    assert_eq!(sniff_audio_ext(b"ID3\x04\0\0"), "mp3");
    assert_eq!(sniff_audio_ext(&[0xFF, 0xFB, 0x90, 0x64]), "mp3");
    assert_eq!(sniff_audio_ext(&[0xFF, 0xF3, 0x40, 0xC4]), "mp3");
    assert_eq!(sniff_audio_ext(b"OggS\0\x02"), "ogg");
    assert_eq!(sniff_audio_ext(b"\0\0\0\x20ftypM4A "), "m4a");
    // ADTS AAC shares the sync word but has layer bits 00.
    assert_eq!(sniff_audio_ext(&[0xFF, 0xF1, 0x50, 0x80]), "bin");
    assert_eq!(sniff_audio_ext(b""), "bin");
    assert_eq!(sniff_audio_ext(b"hello"), "bin");
}
