//! The VoiceBench judge hook end to end without a model: canned replies, a
//! mock OpenAI-compatible server on 127.0.0.1 (a thread in this test), the
//! request bodies it receives (model, VoiceBench's prompts and parameters),
//! the parsed scores in results.json, and a rerun that asks nothing again;
//! then the same run without a judge, which lists the judged items as
//! unscored; and a server that keeps failing, named in the error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use diva_eval::bootstrap::BootstrapConfig;
use diva_eval::judge::{HttpJudge, Judge, JudgeConfig};
use diva_eval::run::{self, Kind, Respond, Response, RunSpec, SystemInfo};
use diva_eval::tasks::{EvalItem, Task};
use serde_json::Value;

/// Serve at most `max` requests; each body is recorded; `answer` gives the
/// HTTP status and JSON for a body.
fn mock(
    max: usize,
    answer: impl Fn(&Value) -> (u16, String) + Send + 'static,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().take(max) {
            let mut stream = stream.unwrap();
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            let mut line = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            let (code, json) = answer(&v);
            s2.lock().unwrap().push(v);
            write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            )
            .unwrap();
        }
    });
    (url, seen)
}

struct Canned;
impl Respond for Canned {
    fn respond(&self, item: &EvalItem, _: &str, instruction: &str) -> Result<Response> {
        assert_eq!(instruction, "", "VoiceBench sends the audio alone");
        Ok(Response {
            reply: match item.subset.as_deref() {
                Some("sd-qa") => "It was Michael Jackson.".into(),
                Some("openbookqa") => "The answer is B.".into(),
                _ => "Paris is lovely in spring.".into(),
            },
            transcript: None,
            seconds: 0.0,
            judge: None,
        })
    }
}

fn spec(dir: &std::path::Path, judge: Option<&str>) -> RunSpec {
    let m = dir.join("m.jsonl");
    std::fs::write(
        &m,
        concat!(
            "{\"id\": \"a1\", \"audio\": \"a1.wav\", \"subset\": \"alpacaeval\", \"text\": \"Tell me about Paris.\"}\n",
            "{\"id\": \"s1\", \"audio\": \"s1.wav\", \"subset\": \"sd-qa\", \"text\": \"who sang thriller\", \"reference\": \"Michael Jackson\"}\n",
            "{\"id\": \"o1\", \"audio\": \"o1.wav\", \"subset\": \"openbookqa\", \"text\": \"Which? A x B y\", \"reference\": \"B\"}\n",
        ),
    )
    .unwrap();
    RunSpec {
        task: Task::VoiceBench,
        data: m,
        out: dir.join("out"),
        prompt: None,
        answers: None,
        scorer: Default::default(),
        limit: None,
        max_tokens: 8,
        bootstrap: BootstrapConfig {
            resamples: 100,
            seed: 0,
            confidence: 0.95,
        },
        command: "test".into(),
        examples: 3,
        judge: judge.map(|u| (u.to_string(), "judge-m".to_string())),
    }
}

fn judge(url: &str, retries: u32) -> HttpJudge {
    let mut j = HttpJudge::new(JudgeConfig {
        url: url.to_string(),
        model: "judge-m".into(),
        key: Some("sk-test".into()),
        timeout: Duration::from_secs(10),
        retries,
        samples: 3,
    })
    .unwrap();
    j.backoff = Duration::from_millis(10);
    j
}

fn sys() -> SystemInfo {
    SystemInfo {
        name: "diva".into(),
        id: "student|x".into(),
        kind: Kind::Student,
        description: "canned".into(),
    }
}

fn metric(r: &Value, key: &str) -> f64 {
    r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key)
        .unwrap_or_else(|| panic!("no {key}"))["systems"]["diva"]["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn the_judge_is_asked_once_per_reply_and_its_scores_are_read() {
    let (url, seen) = mock(20, |v| {
        let user = v["messages"][1]["content"].as_str().unwrap();
        let answers: &[&str] = if user.contains("### Reference answer") {
            &["Yes", "yes", "No"]
        } else {
            &["4", "5", "[[3]]"]
        };
        let choices: Vec<Value> = answers
            .iter()
            .map(|a| serde_json::json!({"message": {"role": "assistant", "content": a}}))
            .collect();
        (200, serde_json::json!({ "choices": choices }).to_string())
    });
    let dir = tempfile::tempdir().unwrap();
    let p = run::prepare(spec(dir.path(), Some(&url))).unwrap();
    let j = judge(&url, 0);
    let systems = [(sys(), &Canned as &dyn Respond)];
    let out = run::execute(&p, &systems, Some(&j as &dyn Judge), &mut |_| {}).unwrap();
    {
        let bodies = seen.lock().unwrap();
        assert_eq!(bodies.len(), 2, "alpacaeval and sd-qa, not openbookqa");
        for b in bodies.iter() {
            assert_eq!(b["model"], "judge-m");
            assert_eq!(b["n"], 3);
            assert_eq!(b["temperature"], 0.5);
            assert_eq!(
                b["messages"][0]["content"],
                "You are a helpful assistant who tries to help answer the user's question."
            );
        }
        let open = bodies[0]["messages"][1]["content"].as_str().unwrap();
        assert!(
            open.contains("### [Instruction]: Tell me about Paris.\n### [Response]: Paris is lovely in spring.\n"),
            "{open}"
        );
        let qa = bodies[1]["messages"][1]["content"].as_str().unwrap();
        assert!(
            qa.starts_with("### Question\nwho sang thriller\n\n### Reference answer\nMichael Jackson\n\n### Candidate answer\nIt was Michael Jackson."),
            "{qa}"
        );
    }
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&out.results_json).unwrap()).unwrap();
    // (4 + 5 + 3) / 3 = 4 on the 1–5 scale, ×20.
    assert!((metric(&r, "alpacaeval_gpt") - 80.0).abs() < 1e-9);
    assert_eq!(metric(&r, "sd-qa_gpt"), 100.0, "two Yes of three");
    assert_eq!(
        metric(&r, "sd-qa_panda"),
        100.0,
        "the reference is in the reply"
    );
    assert_eq!(metric(&r, "openbookqa_acc"), 100.0);
    assert_eq!(r["judge"]["asked"], 2);
    assert!(r.get("unscored").is_none(), "{r}");
    let md = std::fs::read_to_string(&out.report_md).unwrap();
    assert!(
        md.contains("Judge: `judge-m`") && md.contains("[Instruction]: {prompt}"),
        "{md}"
    );

    // A rerun asks nothing: the answers are cached in items.jsonl.
    let p = run::prepare(spec(dir.path(), Some(&url))).unwrap();
    let out2 = run::execute(&p, &systems, Some(&j as &dyn Judge), &mut |_| {}).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(out2.results.judge.as_ref().unwrap().asked, 0);
    assert_eq!(out2.results.reused, 3);
    let r2: Value =
        serde_json::from_str(&std::fs::read_to_string(&out2.results_json).unwrap()).unwrap();
    assert_eq!(r2["metrics"], r["metrics"]);

    // Without a judge: the judged metrics leave their items out, listed.
    let mut sp = spec(dir.path(), None);
    sp.out = dir.path().join("out-nojudge");
    let p = run::prepare(sp).unwrap();
    let out3 = run::execute(&p, &systems, None, &mut |_| {}).unwrap();
    let u = &out3.results.unscored;
    assert_eq!(u.len(), 2, "{u:?}");
    assert!(u[0].starts_with("a1: diva: open-ended: no judge"), "{u:?}");
    let md = std::fs::read_to_string(&out3.report_md).unwrap();
    assert!(
        md.contains("## Unscored") && md.contains("Judge: none given"),
        "{md}"
    );
    let panda = out3
        .summary
        .metrics
        .iter()
        .find(|m| m.key == "sd-qa_panda")
        .unwrap();
    assert_eq!(panda.systems["diva"].value, 100.0, "PANDA needs no judge");
}

#[test]
fn a_failing_judge_is_retried_then_named() {
    let (url, seen) = mock(3, |_| (503, "{\"error\": \"overloaded\"}".into()));
    let j = judge(&url, 2);
    let e = j.ask("s", "u").unwrap_err().to_string();
    assert_eq!(seen.lock().unwrap().len(), 3, "one try and two retries");
    assert!(
        e.contains("no answer after 3 tries") && e.contains("HTTP 503"),
        "{e}"
    );
    let (url, _) = mock(1, |_| (401, "{\"error\": \"bad key\"}".into()));
    let e = judge(&url, 2).ask("s", "u").unwrap_err().to_string();
    assert!(
        e.contains("HTTP 401") && e.contains("--judge-key-env"),
        "{e}"
    );
}
