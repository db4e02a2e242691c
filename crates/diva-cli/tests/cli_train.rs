//! The training/data side of the CLI as a first-time user meets it:
//! every flag described and every command with an example, `--print-config`
//! without a data set, eval-distill's shared flags, and manifests with bad
//! entries (each reported once, under its own label; too many refused).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{diva_home, text};

fn diva(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(args)
        .env_remove("DIVA_MODEL")
        .output()
        .expect("run diva")
}

/// The flags (and positionals) in a `--help` page that have no description.
fn undocumented(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_list = matches!(*line, "Options:" | "Arguments:");
            continue;
        }
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let is_entry = in_list
            && (2..=6).contains(&indent)
            && (t.starts_with('-') || t.starts_with('<') || t.starts_with('['));
        if !is_entry {
            continue;
        }
        let same_line = t.split("  ").filter(|s| !s.trim().is_empty()).count() >= 2;
        let next_line = lines
            .get(i + 1)
            .is_some_and(|n| n.len() - n.trim_start().len() >= 10 && !n.trim().is_empty());
        if !same_line && !next_line {
            missing.push(t.to_string());
        }
    }
    missing
}

#[test]
fn every_flag_is_described_and_every_command_has_an_example() {
    let commands: &[&[&str]] = &[
        &["train"],
        &["eval-distill"],
        &["eval", "asr"],
        &["models", "fetch"],
        &["models", "list"],
        &["data", "import", "commonvoice"],
        &["data", "import", "librispeech"],
        &["data", "import", "folder"],
        &["data", "import", "asterisk"],
        &["data", "import", "parquet"],
        &["corpus", "synth"],
        &["corpus", "voices"],
        &["export"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = diva(&args);
        let help = text(&out.stdout);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
        assert!(
            help.contains("Examples:\n  diva "),
            "{cmd:?} has no example:\n{help}"
        );
        let missing = undocumented(&help);
        assert!(
            missing.is_empty(),
            "{cmd:?}: undocumented {missing:?}\n{help}"
        );
    }
    // The checker does catch a flag without a description.
    assert_eq!(
        undocumented("Options:\n      --steps <STEPS>\n      --lr <LR>\n          Peak rate\n"),
        ["--steps <STEPS>"]
    );
}

#[test]
fn print_config_needs_no_data_and_shows_the_unusable_share() {
    let out = diva(&["train", "--print-config", "--preset", "tiny"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert!(toml.contains("max_unusable_share = 0.05"), "{toml}");
    let out = diva(&[
        "train",
        "--print-config",
        "--max-unusable-share",
        "0.5",
        "--steps",
        "7",
    ]);
    let toml = text(&out.stdout);
    assert!(
        toml.contains("max_unusable_share = 0.5") && toml.contains("steps = 7"),
        "{toml}"
    );
    // Training itself still needs both.
    let out = diva(&["train", "--data", "m.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--out"), "{}", text(&out.stderr));
    let out = diva(&["train", "--print-config", "--max-unusable-share", "2"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("max_unusable_share must be in [0, 1]"));
}

#[test]
fn eval_distill_shares_the_generating_flags() {
    let help = text(&diva(&["eval-distill", "--help"]).stdout);
    for want in [
        "--temperature",
        "--top-p",
        "--top-k",
        "--repeat-penalty",
        "--seed",
        "--stop",
        "[default: 32] [alias: --max-new-tokens]",
        "--num-queries",
        "[default: 448] [alias: --queries]",
        "--max-unusable-share",
    ] {
        assert!(help.contains(want), "{want} missing:\n{help}");
    }
    let out = diva(&["eval-distill", "--data", "x.jsonl", "--top-p", "0"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--top-p must be in (0, 1]"));
}

/// A manifest of 2 real clips and 3 bad entries: a malformed line, audio
/// that does not decode, and a missing file.
fn bad_manifest(dir: &Path) -> (PathBuf, PathBuf) {
    let src = diva_home().join("data/asterisk/manifest.jsonl");
    let body = std::fs::read_to_string(&src)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/fetch-data", src.display()));
    let good: Vec<&str> = body
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (2..=5).contains(&v["text"].as_str().unwrap().split_whitespace().count())
        })
        .take(2)
        .collect();
    let corrupt = dir.join("corrupt.wav");
    std::fs::write(&corrupt, b"RIFF\x24\0\0\0WAVEjunk").unwrap();
    let lines = [
        good[0].to_string(),
        "{\"audio\": \"a.wav\", \"text\": ".to_string(),
        serde_json::json!({"audio": corrupt, "text": "hello there"}).to_string(),
        serde_json::json!({"audio": dir.join("gone.wav"), "text": "where am i"}).to_string(),
        good[1].to_string(),
    ];
    let m = dir.join("m.jsonl");
    std::fs::write(&m, lines.join("\n") + "\n").unwrap();
    (m, corrupt)
}

fn check_labels_once(err: &str, m: &Path, corrupt: &Path) {
    let m = m.display().to_string();
    let wants = [
        format!("{m}:2: malformed line 2: "),
        format!("{m}:3: cannot decode audio {}: ", corrupt.display()),
        format!("{m}:4: missing audio file "),
    ];
    for w in &wants {
        assert_eq!(
            err.matches(w.as_str()).count(),
            1,
            "{w:?} not exactly once:\n{err}"
        );
    }
    assert!(!err.contains("malformed: unreadable audio"), "{err}");
}

#[test]
fn too_many_unusable_entries_are_refused_and_each_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (m, corrupt) = bad_manifest(dir.path());
    let cache = dir.path().join("cache");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "num_queries = 16\nbatch_size = 2\nmicro_batch = 2\nsteps = 1\nval_every = 0\nval_reply_clips = 0\n",
    )
    .unwrap();
    let train = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_diva"));
        c.args(["train", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&m)
            .arg("--out")
            .arg(dir.path().join(format!("run{}", extra.len())))
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra);
        c.output().unwrap()
    };
    let out = train(&[]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("3 of 5 entries are unusable (60%"), "{err}");
    assert!(err.contains("--max-unusable-share 0.6"), "{err}");
    check_labels_once(&err, &m, &corrupt);
    assert!(!dir.path().join("run0/model.safetensors").exists());

    let out = train(&["--max-unusable-share", "1"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("(2 examples, 3 skipped)"), "{err}");
    check_labels_once(&err, &m, &corrupt);

    let eval = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_diva"));
        c.args(["eval-distill", "--cascade", "--reply-clips", "0", "--data"])
            .arg(&m)
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra);
        c.output().unwrap()
    };
    let out = eval(&[]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("3 of 5 entries are unusable"), "{err}");
    let out = eval(&["--max-unusable-share", "1"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    check_labels_once(&err, &m, &corrupt);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["skipped"], 3);
    assert_eq!(v["report"]["clips"], 2);
    assert!(v["report"]["elapsed_s"].as_f64().unwrap() > 0.0);
}
