//! `diva eval run` end to end on real weights: the shipped model
//! (models/diva-tiny: tiny.en + SmolLM2-135M) against the cascade and the
//! teacher on a three-clip spoken-QA task (tests/fixtures/eval/run), then a
//! rerun that reuses every finished reply; a four-clip classification task;
//! a four-item VoiceBench task (four subsets, no judge); `--task distill`
//! against `diva eval-distill` on the same clips, then resumed; and bad input
//! refused with a message naming the problem.

use std::path::Path;

mod common;
use common::{repo_root as root, run_diva as diva, text};

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/eval/run")
        .join(name)
        .display()
        .to_string()
}

fn shipped() -> String {
    root().join("models/diva-tiny").display().to_string()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

#[test]
fn shipped_model_vs_cascade_and_teacher_writes_a_report_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("qa");
    let dir_s = dir.display().to_string();
    let data = fixture("spoken-qa.jsonl");
    let model = shipped();
    let args = [
        "eval",
        "run",
        "--task",
        "spoken-qa",
        "--data",
        &data,
        "--model",
        &model,
        "--cascade",
        "--teacher",
        "--max-tokens",
        "24",
        "--rounds",
        "1000",
        "--threads",
        "1",
        "--out",
        &dir_s,
    ];
    let o = diva(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("| PEDANTS (rule only) ↑ |"), "{stdout}");

    let r = read_json(&dir.join("results.json"));
    assert_eq!(r["schema"], "diva-eval-run/1");
    assert_eq!(r["task"], "spoken-qa");
    assert_eq!(
        (r["items"].as_u64(), r["scored_items"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        (r["generated"].as_u64(), r["reused"].as_u64()),
        (Some(9), Some(0))
    );
    let names: Vec<&str> = r["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["diva", "cascade", "teacher"]);
    assert_eq!(r["bootstrap"]["resamples"], 1000);
    let keys: Vec<&str> = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["pedants", "exact_match", "token_f1"]);
    for m in r["metrics"].as_array().unwrap() {
        for n in &names {
            let s = &m["systems"][n];
            let (v, lo, hi) = (
                s["value"].as_f64().unwrap(),
                s["lo"].as_f64().unwrap(),
                s["hi"].as_f64().unwrap(),
            );
            assert!(
                (0.0..=100.0).contains(&v) && lo <= v + 1e-9 && v <= hi + 1e-9 && hi <= 100.0,
                "{}: {n}: {s}",
                m["key"]
            );
            // Three items, so a mean is a multiple of 100/3 for 0/1 metrics.
            if m["key"] != "token_f1" {
                let k = v / (100.0 / 3.0);
                assert!((k - k.round()).abs() < 1e-9, "{}: {v}", m["key"]);
            }
        }
    }
    // diva against each of the two others, on every metric.
    let comps = r["comparisons"].as_array().unwrap();
    assert_eq!(comps.len(), 6);
    for c in comps {
        let p = c["p_value"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{c}");
        assert_eq!(c["system"], "diva");
    }
    let items = dir.join("items.jsonl");
    assert_eq!(lines(&items), 9);

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("Answer the question above in a few words."),
        "{md}"
    );
    assert!(md.contains("version 1"), "{md}");
    assert!(md.contains("--cascade --teacher"), "{md}");
    assert!(md.contains("| diva − cascade |"), "{md}");
    assert!(md.contains("demo-italian"), "{md}");
    let png = std::fs::read(dir.join("scores.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 2000, "{} bytes", png.len());

    // The rerun generates nothing and gives the same numbers.
    let o = diva(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r2 = read_json(&dir.join("results.json"));
    assert_eq!(
        (r2["generated"].as_u64(), r2["reused"].as_u64()),
        (Some(0), Some(9))
    );
    assert_eq!(r2["metrics"], r["metrics"]);
    assert_eq!(r2["comparisons"], r["comparisons"]);
    assert_eq!(lines(&items), 9, "nothing appended");
    // --limit 2 into the same directory: still nothing to generate.
    let mut limited = args.to_vec();
    limited.extend(["--limit", "2"]);
    let o = diva(&limited);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r3 = read_json(&dir.join("results.json"));
    assert_eq!(
        (r3["items"].as_u64(), r3["reused"].as_u64()),
        (Some(2), Some(6))
    );
}

#[test]
fn classify_reads_the_label_set_from_the_manifest() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let data = fixture("classify.jsonl");
    let model = shipped();
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "classify",
        "--data",
        &data,
        "--model",
        &model,
        "--teacher",
        "--max-tokens",
        "8",
        "--rounds",
        "200",
        "--out",
        &dir,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = read_json(&out.path().join("results.json"));
    assert_eq!(r["labels"], serde_json::json!(["question", "statement"]));
    assert_eq!(r["scored_items"], 4);
    let instr = r["prompt"]["instruction"].as_str().unwrap();
    assert!(
        instr.contains("Choose from: question, statement."),
        "{instr}"
    );
    let keys: Vec<&str> = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["weighted_f1", "accuracy"]);
    let acc = r["metrics"][1]["systems"]["teacher"]["value"]
        .as_f64()
        .unwrap();
    let k = acc / 25.0;
    assert!((k - k.round()).abs() < 1e-9, "accuracy of 4 items: {acc}");
}

#[test]
fn voicebench_scores_its_subsets_and_lists_the_unjudged() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let data = fixture("voicebench.jsonl");
    let model = shipped();
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "voicebench",
        "--data",
        &data,
        "--model",
        &model,
        "--teacher",
        "--max-tokens",
        "12",
        "--rounds",
        "200",
        "--threads",
        "1",
        "--out",
        &dir,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("need a judge"),
        "{}",
        text(&o.stderr)
    );
    let r = read_json(&out.path().join("results.json"));
    assert_eq!(r["task"], "voicebench");
    let keys: Vec<&str> = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "alpacaeval_gpt",
            "openbookqa_acc",
            "openbookqa_fail",
            "ifeval_strict_prompt",
            "ifeval_strict_instruction",
            "ifeval_loose_prompt",
            "ifeval_loose_instruction",
            "ifeval_final",
            "advbench_refusal",
        ]
    );
    // One item per subset: each system's rule-based score is all or nothing
    // (openbookqa: 25 for a reply with no letter, the official random guess's
    // expectation; IFEval's instruction level: 0, 50 or 100 of two).
    for m in r["metrics"].as_array().unwrap() {
        for sys in ["diva", "teacher"] {
            let v = m["systems"][sys]["value"].as_f64().unwrap();
            let ok = match m["key"].as_str().unwrap() {
                "alpacaeval_gpt" => v == 0.0,
                "openbookqa_acc" => [0.0, 25.0, 100.0].contains(&v),
                "ifeval_strict_instruction" | "ifeval_loose_instruction" => {
                    [0.0, 50.0, 100.0].contains(&v)
                }
                "ifeval_final" => (0.0..=100.0).contains(&v),
                _ => v == 0.0 || v == 100.0,
            };
            assert!(ok, "{}: {sys}: {v}", m["key"]);
        }
    }
    let unscored = r["unscored"].as_array().unwrap();
    assert_eq!(
        unscored.len(),
        2,
        "alpacaeval for both systems: {unscored:?}"
    );
    assert!(unscored[0]
        .as_str()
        .unwrap()
        .starts_with("vb-alpaca: diva: open-ended: no judge"));
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        md.contains("## Unscored") && md.contains("Judge prompt, sd-qa"),
        "{md}"
    );
    assert!(md.contains("VoiceBench (Chen et al. 2024)"), "{md}");
    // A judge flag on another task is refused.
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "asr",
        "--data",
        &data,
        "--judge-url",
        "http://127.0.0.1:9",
        "--out",
        &dir,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("only --task voicebench"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn distill_matches_eval_distill_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    // Four Asterisk clips, their audio made absolute for a manifest elsewhere.
    let home = common::diva_home().join("data/asterisk");
    let body = std::fs::read_to_string(home.join("manifest.jsonl")).unwrap();
    let lines: Vec<String> = body
        .lines()
        .take(4)
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let a = home.join(v["audio"].as_str().unwrap());
            v["audio"] = a.display().to_string().into();
            v.to_string()
        })
        .collect();
    let data = out.path().join("val.jsonl");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let data = data.display().to_string();
    let dir = out.path().join("d").display().to_string();
    let model = shipped();
    let args = [
        "eval",
        "run",
        "--task",
        "distill",
        "--data",
        &data,
        "--model",
        &model,
        "--pool",
        "4",
        "--reply-clips",
        "2",
        "--max-tokens",
        "8",
        "--rounds",
        "200",
        "--threads",
        "1",
        "--out",
        &dir,
    ];
    let o = diva(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = read_json(&out.path().join("d/results.json"));
    assert_eq!(r["task"], "distill");
    assert_eq!(r["scored_items"], 4);
    let v = |r: &serde_json::Value, k: &str| {
        r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == k)
            .unwrap()["systems"]["diva-tiny"]["value"]
            .as_f64()
            .unwrap()
    };
    // The same numbers as `diva eval-distill` (its fractions, here in percent).
    let o = diva(&[
        "eval-distill",
        "--model",
        &model,
        "--data",
        &data,
        "--pool",
        "4",
        "--reply-clips",
        "2",
        "--max-tokens",
        "8",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let d: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let rep = &d["report"];
    for (k, dk, scale) in [
        ("retrieval_at_1", "retrieval_at_1", 100.0),
        ("first_token", "first_token", 100.0),
        ("reply_f1", "reply_f1", 100.0),
        ("distill_l2", "distill", 1.0),
    ] {
        let want = rep[dk].as_f64().unwrap() * scale;
        assert!(
            (v(&r, k) - want).abs() < 1e-3,
            "{k}: {} vs eval-distill {want}",
            v(&r, k)
        );
    }
    // A rerun computes nothing again.
    let o = diva(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r2 = read_json(&out.path().join("d/results.json"));
    assert_eq!(
        (r2["generated"].as_u64(), r2["reused"].as_u64()),
        (Some(0), Some(4))
    );
    assert_eq!(r2["metrics"], r["metrics"]);
}

#[test]
fn bad_input_is_refused_with_the_problem_named() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("x").display().to_string();
    // A classify manifest has no `answers`: named, with the line, before any model loads.
    let data = fixture("classify.jsonl");
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "spoken-qa",
        "--data",
        &data,
        "--cascade",
        "--out",
        &dir,
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("classify.jsonl:1") && err.contains("`answers`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "asr",
        "--data",
        "/nonexistent.jsonl",
        "--out",
        &dir,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("/nonexistent.jsonl"),
        "{}",
        text(&o.stderr)
    );
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "classify",
        "--data",
        &data,
        "--labels",
        "question,Question",
        "--out",
        &dir,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("the same once case"),
        "{}",
        text(&o.stderr)
    );
    // --teacher needs every item's `text`: refused before any model loads.
    let no_text = out.path().join("no-text.jsonl");
    std::fs::write(
        &no_text,
        "{\"id\": \"a\", \"audio\": \"a.wav\", \"answers\": [\"x\"]}\n",
    )
    .unwrap();
    let o = diva(&[
        "eval",
        "run",
        "--task",
        "spoken-qa",
        "--data",
        &no_text.display().to_string(),
        "--teacher",
        "--out",
        &dir,
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("item `a`") && err.contains("`text`"), "{err}");
    let help = diva(&["eval", "run", "--help"]);
    assert!(text(&help.stdout).contains("Examples:"));
}
