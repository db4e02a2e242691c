//! The commands at their edges: a closed stdout ends them quietly, non-finite
//! sampling values are refused before any model loads, and stderr carries no
//! colour codes when it is not a terminal.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{clip, text};

fn diva() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diva"))
}

fn run(args: &[&str]) -> Output {
    diva().args(args).output().expect("run diva")
}

const QUESTION: &str = "asterisk/sounds/vm-savefolder.wav"; // "Which folder should I save the message to?"
const DIGIT: &str = "asterisk/sounds/digits/4.wav";

/// Run with stdout a pipe whose read end is closed: at once (`lines` 0), or
/// after reading `lines` lines, as `| true` and `| head -N` do.
fn with_closed_stdout(args: &[&str], lines: usize) -> Output {
    let mut child = diva()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn diva");
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "expected {lines} line(s) before closing");
    }
    drop(reader);
    child.wait_with_output().expect("wait diva")
}

fn assert_quiet_success(o: &Output, what: &str) {
    let err = text(&o.stderr);
    assert!(
        o.status.success(),
        "{what}: exit {:?}, stderr: {err}",
        o.status
    );
    assert!(err.is_empty(), "{what}: nothing on stderr, got: {err}");
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let q = clip(QUESTION);
    let d = clip(DIGIT);
    let cases: Vec<(Vec<&str>, usize)> = vec![
        (vec!["chat", "--audio", &q, "--max-tokens", "24"], 0),
        (
            vec!["chat", "--audio", &q, "--max-tokens", "8", "--then", "Why?"],
            1,
        ),
        (
            vec!["chat", "--cascade", "--audio", &q, "--max-tokens", "16"],
            0,
        ),
        (
            vec!["chat", "--cascade", "--audio", &q, "--max-tokens", "16"],
            1,
        ),
        (
            vec!["generate", "--max-tokens", "24", "Tell me a story."],
            0,
        ),
        (vec!["transcribe", &q, &d], 0),
        (vec!["transcribe", &q, &d], 1),
        (vec!["models", "list"], 0),
    ];
    for (args, lines) in cases {
        let o = with_closed_stdout(&args, lines);
        assert_quiet_success(&o, &format!("{args:?} closed after {lines} line(s)"));
    }
}

/// Refused by the argument parser, naming the flag: nothing was loaded (an
/// empty model cache would otherwise be the error).
#[test]
fn non_finite_sampling_values_are_refused_before_loading() {
    let empty = tempfile::tempdir().unwrap();
    let q = clip(QUESTION);
    for (cmd, flag, value) in [
        ("chat", "--temperature", "nan"),
        ("chat", "--temperature", "inf"),
        ("generate", "--temperature", "NaN"),
        ("generate", "--top-p", "inf"),
        ("chat", "--repeat-penalty", "nan"),
        ("generate", "--repeat-penalty=-inf", ""),
    ] {
        let t0 = Instant::now();
        let mut args = vec![cmd, flag];
        if !value.is_empty() {
            args.push(value);
        }
        let flag = flag.split('=').next().unwrap();
        if cmd == "chat" {
            args.extend(["--audio", &q]);
        } else {
            args.push("hi");
        }
        let o = diva()
            .args(&args)
            .env("DIVA_HOME", empty.path())
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains("not a finite number"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("models fetch"),
            "{args:?} loaded models: {err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{args:?} was slow");
    }
}

#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    let o = run(&[
        "chat",
        "--untrained",
        "--queries",
        "8",
        "--max-tokens",
        "2",
        "--audio",
        &clip(DIGIT),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("UNTRAINED CONNECTOR"),
        "a warning was logged: {err}"
    );
    assert!(!err.contains('\x1b'), "ANSI codes in {err:?}");
}
