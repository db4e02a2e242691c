//! `diva generate` on the real SmolLM2-135M-Instruct weights.

use std::process::Command;

fn diva(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(args)
        .output()
        .expect("run diva")
}

#[test]
fn answers_the_capital_of_france_with_paris() {
    let out = diva(&["generate", "What is the capital of France?"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Paris"), "reply: {stdout:?}");
    // stdout carries only the reply: no log lines.
    assert!(
        !stdout.contains("INFO") && !stdout.contains("loaded"),
        "{stdout:?}"
    );
}

#[test]
fn json_reports_tokens_and_timings_and_sampling_is_seeded() {
    let args = [
        "generate",
        "--json",
        "--temperature",
        "0.9",
        "--top-k",
        "40",
        "--seed",
        "5",
        "--max-tokens",
        "12",
        "Name a colour.",
    ];
    let a = diva(&args);
    assert!(
        a.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&a.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("one JSON object");
    assert!(v["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(v["ids"].as_array().unwrap().len() <= 12);
    assert!(v["prompt_seconds"].as_f64().unwrap() > 0.0);
    let b: serde_json::Value = serde_json::from_slice(&diva(&args).stdout).unwrap();
    assert_eq!(
        (&v["ids"], &v["text"]),
        (&b["ids"], &b["text"]),
        "same seed, same reply"
    );
    let other = [
        "generate",
        "--json",
        "--temperature",
        "0.9",
        "--top-k",
        "40",
        "--seed",
        "6",
        "--max-tokens",
        "12",
        "Name a colour.",
    ];
    let c: serde_json::Value = serde_json::from_slice(&diva(&other).stdout).unwrap();
    assert_ne!(v["ids"], c["ids"], "another seed samples differently");
}

#[test]
fn bad_llm_arguments_get_clear_errors() {
    let out = diva(&["generate", "--llm", "/nonexistent/model.gguf", "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/model.gguf") && !err.contains("panicked"),
        "{err}"
    );
    let out = diva(&["generate", "--top-p", "1.5", "hi"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--top-p"));
}
