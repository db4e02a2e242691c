//! `diva chat` end to end on real weights: tiny.en + SmolLM2-135M with the
//! default (untrained) connector, and the cascade baseline.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::clip;

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
        "--untrained",
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
        "--untrained",
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
    let (ok, _, err) = diva(&[
        "chat",
        "--audio",
        f.to_str().unwrap(),
        "--untrained",
        "--queries",
        "8",
    ]);
    assert!(!ok);
    assert!(
        err.contains("broken.mp3") && !err.contains("panicked"),
        "{err}"
    );
}

/// A compact checkpoint (no Whisper token table) exports to the full official
/// key set, with the table restored from the reference encoder.
#[test]
fn export_writes_the_full_official_layout() {
    use candle_core::Device;
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let src = fx.join("diva/checkpoint");
    let compact = tempfile::tempdir().unwrap();
    let mut t =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let official_keys: std::collections::BTreeSet<String> = t.keys().cloned().collect();
    t.remove("connector.embed_tokens.weight");
    candle_core::safetensors::save(&t, compact.path().join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    for k in ["reference_encoder", "reference_decoder"] {
        let abs = src.join(cfg[k].as_str().unwrap()).canonicalize().unwrap();
        cfg[k] = serde_json::json!(abs.display().to_string());
    }
    std::fs::write(compact.path().join("config.json"), cfg.to_string()).unwrap();

    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = diva(&[
        "export",
        "--model",
        compact.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let w =
        candle_core::safetensors::load(out.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let keys: std::collections::BTreeSet<String> = w.keys().cloned().collect();
    assert_eq!(keys, official_keys);
    let whisper = candle_core::safetensors::load(
        fx.join("hf-whisper-random/model/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let restored = (&w["connector.embed_tokens.weight"]
        - &whisper["model.decoder.embed_tokens.weight"])
        .unwrap();
    assert_eq!(
        restored
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    let q = (&w["query_tokens"] - &t["query_tokens"])
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert_eq!(q.to_scalar::<f32>().unwrap(), 0.0);
}

/// An audio turn, then a text turn and another audio turn in one
/// conversation: later turns feed only their own tokens (KV cache reused).
#[test]
fn multi_turn_mixes_audio_and_text_with_the_cache_reused() {
    let (ok, out, err) = diva(&[
        "chat",
        "--json",
        "--untrained",
        "--queries",
        "32",
        "--max-tokens",
        "12",
        "--audio",
        &clip(QUESTION),
        "--then",
        "What is the capital of France?",
        "--then",
        &clip("asterisk/sounds/digits/4.wav"),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert!(
        turns[0]["reply"].as_str().unwrap().contains("Paris"),
        "{}",
        turns[0]
    );
    // Only the turn boundary, the question and the assistant header are new.
    let p = turns[0]["prompt_tokens"].as_u64().unwrap();
    assert!(
        p < 30,
        "text turn fed {p} tokens: the conversation was recomputed"
    );
    // The audio turn feeds boundary + 32 virtual tokens + suffix.
    assert!(turns[1]["prompt_tokens"].as_u64().unwrap() < 32 + 30);
}
