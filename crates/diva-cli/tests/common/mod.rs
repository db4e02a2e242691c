//! Helpers shared by the CLI test files (each file is its own crate and
//! includes this module with `mod common;`; not every file uses every helper).
#![allow(dead_code)]

use std::path::PathBuf;

/// `$DIVA_HOME`, else `~/.cache/diva`: where the models and data are fetched.
pub fn diva_home() -> PathBuf {
    std::env::var_os("DIVA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/diva"))
}

/// A fetched speech clip under `$DIVA_HOME/data` (`scripts/fetch-data`).
pub fn clip(rel: &str) -> String {
    let p = diva_home().join("data").join(rel);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-data",
        p.display()
    );
    p.display().to_string()
}

/// A fetched model under `$DIVA_HOME/models`.
pub fn model_path(rel: &str) -> String {
    diva_home().join("models").join(rel).display().to_string()
}

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The repository's root (fixtures, the shipped model).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run the `diva` binary built for these tests.
pub fn run_diva(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(args)
        .output()
        .expect("run diva")
}

/// `n` short (2–6 word) Asterisk prompts after the first `skip`, as a manifest in `dir`.
pub fn asterisk_manifest(dir: &std::path::Path, skip: usize, n: usize) -> PathBuf {
    let src = diva_home().join("data/asterisk/manifest.jsonl");
    let body = std::fs::read_to_string(&src)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/fetch-data", src.display()));
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let words = v["text"].as_str().unwrap().split_whitespace().count();
            (2..=6).contains(&words)
        })
        .skip(skip)
        .take(n)
        .collect();
    assert_eq!(lines.len(), n);
    let p = dir.join(format!("m{skip}.jsonl"));
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}
