//! `diva chat` end to end on real weights: tiny.en + SmolLM2-135M with the
//! default (untrained) connector, and the cascade baseline.

use std::path::PathBuf;
use std::process::Command;

fn clip(rel: &str) -> String {
    let home = std::env::var_os("DIVA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/diva"));
    let p = home.join("data").join(rel);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-data",
        p.display()
    );
    p.display().to_string()
}

fn diva(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(args)
        .output()
        .expect("run diva");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

const QUESTION: &str = "asterisk/sounds/vm-savefolder.wav"; // "Which folder should I save the message to?"

#[test]
fn audio_in_streamed_text_out_and_untrained_is_said_loudly() {
    let (ok, out, err) = diva(&[
        "chat",
        "--audio",
        &clip(QUESTION),
        "--queries",
        "32",
        "--max-tokens",
        "8",
    ]);
    assert!(ok, "{err}");
    assert!(!out.trim().is_empty(), "some reply is streamed");
    assert!(err.contains("UNTRAINED CONNECTOR"), "{err}");
}

#[test]
fn cascade_answers_the_spoken_question_sensibly() {
    let (ok, out, err) = diva(&[
        "chat",
        "--cascade",
        "--audio",
        &clip(QUESTION),
        "--max-tokens",
        "48",
    ]);
    assert!(ok, "{err}");
    let transcript = out
        .lines()
        .find_map(|l| l.strip_prefix("transcript: "))
        .expect("a transcript line");
    assert!(transcript.to_lowercase().contains("folder"), "{transcript}");
    let reply = out
        .lines()
        .find_map(|l| l.strip_prefix("cascade: "))
        .expect("a cascade reply")
        .to_lowercase();
    // The reply is about what was asked.
    assert!(
        reply.contains("folder") || reply.contains("message"),
        "{reply}"
    );
}

#[test]
fn json_with_teacher_reports_all_fields() {
    let (ok, out, err) = diva(&[
        "chat",
        "--json",
        "--show-teacher",
        "--queries",
        "16",
        "--max-tokens",
        "6",
        "--audio",
        &clip("asterisk/sounds/digits/4.wav"),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for k in [
        "transcript",
        "reply",
        "teacher_reply",
        "time_to_first_token_s",
        "decode_tokens_per_s",
    ] {
        assert!(!v[k].is_null(), "{k} missing in {v}");
    }
    assert_eq!(v["untrained_connector"], true);
}

#[test]
fn bad_audio_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.mp3");
    std::fs::write(&f, b"ID3 not really an mp3").unwrap();
    let (ok, _, err) = diva(&["chat", "--audio", f.to_str().unwrap(), "--queries", "8"]);
    assert!(!ok);
    assert!(
        err.contains("broken.mp3") && !err.contains("panicked"),
        "{err}"
    );
}
