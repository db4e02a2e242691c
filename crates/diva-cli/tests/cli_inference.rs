//! The inference commands (`chat`, `generate`, `transcribe`) at their edges:
//! where timings go, turns under the cascade, --device, labelled multi-file
//! output, model overrides, stdin audio, clear refusals (the closed-pipe,
//! non-finite and colour edges are in cli_edges.rs).

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{clip, diva_home, model_path, text};

fn diva() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diva"))
}

fn run(args: &[&str]) -> Output {
    diva().args(args).output().expect("run diva")
}

const QUESTION: &str = "asterisk/sounds/vm-savefolder.wav"; // "Which folder should I save the message to?"
const DIGIT: &str = "asterisk/sounds/digits/4.wav";

#[test]
fn timings_go_to_stderr_even_with_quiet_and_the_cascade_has_them() {
    let q = clip(QUESTION);
    let o = run(&[
        "-q",
        "chat",
        "--timings",
        "--audio",
        &q,
        "--max-tokens",
        "4",
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(
        !out.contains("time to first token"),
        "timings on stdout: {out}"
    );
    assert!(
        err.contains("time to first token") && err.contains("encoder + connector"),
        "{err}"
    );
    let o = run(&[
        "chat",
        "--cascade",
        "--timings",
        "--audio",
        &q,
        "--max-tokens",
        "4",
    ]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(!out.contains("time to first token"), "{out}");
    assert!(
        err.contains("timings (cascade): time to first token")
            && err.contains("transcription")
            && err.contains("prefill"),
        "{err}"
    );
}

#[test]
fn then_under_the_cascade_keeps_every_turn_and_the_cache() {
    let o = run(&[
        "chat",
        "--cascade",
        "--json",
        "--max-tokens",
        "16",
        "--audio",
        &clip(QUESTION),
        "--then",
        // SmolLM2-135M repeats its first answer to a plain follow-up question.
        "Thanks. Now a different question: what is the capital of France?",
        "--then",
        &clip("asterisk/sounds/digits/7.wav"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["transcript"].as_str().unwrap().contains("folder"), "{v}");
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{v}");
    assert!(turns[0]["reply"].as_str().unwrap().contains("Paris"), "{v}");
    // Only the turn boundary, the question and the assistant header are new.
    assert!(turns[0]["prompt_tokens"].as_u64().unwrap() < 40, "{v}");
    // The audio turn was transcribed, and only its words were fed.
    let tr = turns[1]["transcript"].as_str().unwrap().to_lowercase();
    assert!(tr.contains("seven") || tr.contains('7'), "{v}");
    assert!(turns[1]["prompt_tokens"].as_u64().unwrap() < 30, "{v}");
}

#[test]
fn a_then_that_looks_like_a_missing_file_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    for arg in [
        "nope.wav",
        "./recordings/q2",
        "/tmp/definitely/not/here.flac",
    ] {
        let o = diva()
            .args(["chat", "--audio", &clip(QUESTION), "--then", arg])
            .env("DIVA_HOME", empty.path())
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert!(!o.status.success());
        assert!(
            err.contains(&format!("--then {arg}: file not found")),
            "{err}"
        );
    }
}

#[test]
fn device_flag_on_every_inference_command() {
    let q = clip(QUESTION);
    for args in [
        vec!["chat", "--audio", q.as_str()],
        vec!["generate", "hi"],
        vec!["transcribe", q.as_str()],
    ] {
        let mut a = args.clone();
        a.extend(["--device", "tpu"]);
        let err = text(&run(&a).stderr);
        assert!(err.contains("--device \"tpu\": unknown device"), "{err}");
        let mut a = args.clone();
        a.extend(["--device", "cuda"]);
        let o = run(&a);
        let err = text(&o.stderr);
        if !o.status.success() {
            assert!(
                err.contains("without CUDA") || err.contains("CUDA"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
        let mut a = args.clone();
        a.extend(["--device", "cpu", "--help"]);
        assert!(text(&run(&a).stdout).contains("Where to run: cpu, cuda or cuda:N"));
    }
}

#[test]
fn several_files_are_labelled_and_json_has_a_record_for_failures() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.wav");
    std::fs::write(&bad, b"not audio").unwrap();
    let bad = bad.display().to_string();
    let (a, b) = (clip(QUESTION), clip("asterisk/sounds/digits/7.wav"));
    let o = run(&["transcribe", &a, &bad, &b]);
    assert!(!o.status.success());
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (p0, t0) = lines[0].split_once('\t').expect("PATH<TAB>text");
    let (p1, t1) = lines[1].split_once('\t').expect("PATH<TAB>text");
    assert_eq!((p0, p1), (a.as_str(), b.as_str()));
    assert!(t0.to_lowercase().contains("folder"), "{t0}");
    assert!(
        t1.to_lowercase().contains("seven") || t1.contains('7'),
        "{t1}"
    );
    assert!(text(&o.stderr).contains("broken.wav"));

    let o = run(&["transcribe", "--json", &a, &bad, &b]);
    assert!(!o.status.success());
    let recs: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[1]["audio"], bad.as_str());
    assert!(recs[1]["error"].as_str().unwrap().contains("broken.wav"));
    for r in [&recs[0], &recs[2]] {
        for k in ["audio", "text", "duration_s", "elapsed_s", "tokens"] {
            assert!(!r[k].is_null(), "{k} missing in {r}");
        }
        assert!(r["file"].is_null() && r["seconds"].is_null(), "{r}");
    }
}

/// The shipped model exported to the full official layout, its config then
/// pointing at hub ids that are not available offline: `--llm`/`--whisper`
/// local files give the same greedy reply as the config's own references.
#[test]
fn llm_and_whisper_override_the_checkpoint_references() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/diva-tiny");
    let ckpt = tempfile::tempdir().unwrap();
    let o = run(&[
        "export",
        "--model",
        shipped.to_str().unwrap(),
        "--out",
        ckpt.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let q = clip(QUESTION);
    let chat = |extra: &[&str]| -> serde_json::Value {
        let hf = tempfile::tempdir().unwrap();
        let mut args = vec![
            "chat",
            "--json",
            "--max-tokens",
            "24",
            "--audio",
            &q,
            "--model",
            ckpt.path().to_str().unwrap(),
        ];
        args.extend(extra);
        let o = diva()
            .args(&args)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", hf.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let by_config = chat(&[]);
    let cfg_path = ckpt.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["reference_encoder"] = "openai/whisper-large-v3".into();
    cfg["reference_decoder"] = "meta-llama/Meta-Llama-3-8B-Instruct".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let gguf = model_path("smollm2-135m-instruct/model.gguf");
    let whisper = model_path("whisper-tiny.en");
    let overridden = chat(&["--llm", &gguf, "--whisper", &whisper]);
    assert!(!by_config["reply"].as_str().unwrap().is_empty());
    assert_eq!(by_config["reply"], overridden["reply"]);
    assert_eq!(overridden["untrained_connector"], false);
}

#[test]
fn audio_from_stdin_matches_the_file() {
    let q = clip(QUESTION);
    let from_stdin = |args: &[&str]| -> Output {
        diva()
            .args(args)
            .stdin(std::fs::File::open(&q).unwrap())
            .output()
            .unwrap()
    };
    let file = run(&["chat", "--json", "--max-tokens", "12", "--audio", &q]);
    let piped = from_stdin(&["chat", "--json", "--max-tokens", "12", "--audio", "-"]);
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    let (f, p): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&file.stdout).unwrap(),
        serde_json::from_slice(&piped.stdout).unwrap(),
    );
    assert_eq!(f["reply"], p["reply"]);

    let file = run(&["transcribe", &q]);
    let piped = from_stdin(&["transcribe", "-"]);
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert_eq!(text(&file.stdout), text(&piped.stdout));
    assert!(text(&piped.stdout).to_lowercase().contains("folder"));

    let o = diva()
        .args(["transcribe", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("stdin was empty"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn languages_a_model_cannot_take_are_refused() {
    let q = clip(DIGIT);
    let o = run(&["transcribe", "--language", "fr", &q]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("--language fr") && err.contains("English-only"),
        "{err}"
    );
    assert!(text(&o.stdout).is_empty());
    // English is what an English-only model does anyway.
    assert!(run(&["transcribe", "--language", "en", &q])
        .status
        .success());
    if diva_home()
        .join("models/whisper-base/.diva-complete")
        .is_file()
    {
        for bad in ["xx", "transcribe", "EN"] {
            let o = run(&["transcribe", "--model", "base", "--language", bad, &q]);
            let err = text(&o.stderr);
            assert!(!o.status.success(), "{bad}");
            assert!(err.contains("not a language code"), "{bad}: {err}");
        }
        let o = run(&["transcribe", "--model", "base", "--language", "en", &q]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
}

#[test]
fn missing_llm_file_is_file_not_found_and_greeting_names_generate() {
    for args in [
        vec!["generate", "--llm", "nonexist.gguf", "hi"],
        vec!["chat", "--llm", "./nonexist.gguf", "--audio", &clip(DIGIT)],
    ] {
        let o = run(&args);
        let err = text(&o.stderr);
        assert_eq!(
            err.trim(),
            format!("error: --llm {}: file not found", args[2]),
            "{args:?}"
        );
    }
    let o = diva()
        .args(["generate", "--interactive"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("diva generate —") && !err.contains("diva chat"),
        "{err}"
    );
}

#[test]
fn every_inference_help_has_an_example_and_num_queries() {
    for cmd in ["chat", "generate", "transcribe"] {
        let help = text(&run(&[cmd, "--help"]).stdout);
        assert!(
            help.contains(&format!("Examples:\n  diva {cmd}"))
                || help.contains("Examples:\n  curl"),
            "{cmd}: {help}"
        );
    }
    let help = text(&run(&["chat", "--help"]).stdout);
    assert!(
        help.contains("--num-queries <NUM_QUERIES>") && help.contains("[alias: --queries]"),
        "{help}"
    );
    assert!(help.contains("[default: 448]"), "{help}");
}

/// The honest demo's three voices: diva, the teacher (what was said) and the
/// cascade (what Whisper heard), each a real reply; the teacher's equals a
/// plain text chat on the same words.
#[test]
fn show_teacher_with_the_true_transcript_prints_teacher_and_cascade() {
    let said = "What is the capital of France?";
    let o = run(&[
        "chat",
        "--json",
        "--max-tokens",
        "12",
        "--audio",
        &clip(QUESTION),
        "--show-teacher",
        "--transcript",
        said,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let teacher = v["teacher_reply"].as_str().unwrap();
    assert!(
        teacher.contains("Paris"),
        "the teacher answers what was said: {v}"
    );
    assert!(!v["cascade_reply"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["transcript"].as_str().unwrap().contains("folder"), "{v}");
    assert_ne!(
        v["cascade_reply"], v["teacher_reply"],
        "different words, different replies: {v}"
    );
    let o = run(&["chat", "--audio", &clip(QUESTION), "--transcript", said]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--show-teacher"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn audio_ctx_names_the_window_and_bad_values_are_refused() {
    let q = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/audio/demo/dog-eats-grass.wav")
        .display()
        .to_string();
    let reply = |ctx: &str| {
        let o = run(&[
            "-q",
            "chat",
            "--audio",
            &q,
            "--json",
            "--max-tokens",
            "6",
            "--audio-ctx",
            ctx,
        ]);
        assert!(o.status.success(), "--audio-ctx {ctx}: {}", text(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["reply"].as_str().expect("reply").to_string()
    };
    // 1500 frames is the 30 s window itself: the same greedy reply, bit for bit.
    let full = reply("full");
    assert!(!full.is_empty());
    assert_eq!(reply("1500"), full);
    // A window that fits the 2.4 s question (3 s, 150 frames) still answers.
    assert!(!reply("fit").trim().is_empty());
    for bad in ["0", "1501", "ten"] {
        let o = run(&["chat", "--audio", &q, "--audio-ctx", bad]);
        assert!(!o.status.success(), "--audio-ctx {bad} was accepted");
        let err = text(&o.stderr);
        assert!(
            err.contains("--audio-ctx") && err.contains("from 1 to 1500"),
            "{bad}: {err}"
        );
    }
}
