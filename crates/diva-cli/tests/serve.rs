//! `diva serve` driven by the official `openai` Python client (the test
//! command installs it: tools/client/setup-venv), and by raw HTTP for what a
//! client library hides (SSE framing, the error body, /health).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::clip;

/// The client venv's python: tools/client/setup-venv (run by scripts/test).
fn client_python() -> PathBuf {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/client/setup-venv"
    ))
    .stderr(Stdio::inherit())
    .output()
    .expect("run tools/client/setup-venv");
    assert!(out.status.success(), "tools/client/setup-venv failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `diva serve --port 0 …`; wait for its "listening on" line, check
/// that `/health` says 503 "loading" then (the weights load after the
/// socket is bound), and wait for its "ready" line.
fn start(extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["serve", "--port", "0"])
        .args(extra)
        .env_remove("DIVA_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn diva serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut next_line = |seen: &mut String| {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("diva serve exited early:\n{seen}");
        }
        seen.push_str(&line);
        line
    };
    let addr = loop {
        let line = next_line(&mut seen);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let health = http(
        &addr,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(
        health.starts_with("HTTP/1.1 503") && health.contains(r#""status":"loading""#),
        "before the model is in, /health must be 503 loading: {health}"
    );
    while !next_line(&mut seen).contains("ready: model loaded") {}
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    Server { child, addr }
}

/// One HTTP/1.1 request on a fresh connection; the whole response as text.
fn http(addr: &str, req: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn post(addr: &str, path: &str, body: &str, headers: &str) -> String {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        ),
    )
}

/// The assistant's text of a 200 non-streamed chat response.
fn chat_content(r: &str) -> String {
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let v: serde_json::Value = serde_json::from_str(&r[r.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The server's Prometheus text.
fn metrics_text(addr: &str) -> String {
    http(
        addr,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
}

/// The value of the first sample line starting with `name` (0 if absent).
fn metric_in(m: &str, name: &str) -> f64 {
    m.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

fn metric(addr: &str, name: &str) -> f64 {
    metric_in(&metrics_text(addr), name)
}

/// `diva eval arena --votes VOTES --json`.
fn arena_json(votes: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["eval", "arena", "--votes"])
        .arg(votes)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn chat_reply(audio: &str, max_tokens: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args([
            "chat",
            "--json",
            "--audio",
            audio,
            "--max-tokens",
            max_tokens,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["reply"].as_str().unwrap().to_string()
}

#[test]
fn the_official_openai_client_talks_to_diva_serve() {
    let python = client_python();
    let audio = clip("asterisk/sounds/vm-savefolder.wav");
    let server = start(&[
        "--api-key",
        "k3y",
        "--max-batch",
        "1",
        "--max-queue",
        "0",
        "--max-body-mb",
        "1",
    ]);
    let o = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/serve_client.py"
        ))
        .args([&format!("http://{}", server.addr), "k3y", &audio])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "client script failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    // Parity: the server's greedy reply is `diva chat`'s for the same clip.
    let reply = v["reply"].as_str().unwrap();
    assert!(!reply.is_empty());
    assert_eq!(reply, chat_reply(&audio, "24"), "server vs diva chat");
    // Streaming reassembles to the same reply, one id, role first, a finish
    // reason, and the usage chunk at the end.
    assert_eq!(v["stream_reply"], v["reply"], "{v}");
    assert!(v["stream_chunks"].as_u64().unwrap() > 1, "{v}");
    assert_eq!(v["stream_ids"], 1);
    assert_eq!(v["stream_roles"], serde_json::json!(["assistant"]));
    assert_eq!(v["stream_finishes"].as_array().unwrap().len(), 1);
    assert_eq!(v["stream_usage"], v["usage"], "{v}");
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 24, "max_tokens 24 is reached: {u}");
    assert_eq!(v["finish_reason"], "length");
    // The shipped model's 32 virtual tokens are counted as audio tokens.
    assert_eq!(u["prompt_tokens_details"]["audio_tokens"], 32, "{u}");
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 24
    );
    assert!(
        v["audio_url_reply"] == v["reply"],
        "vLLM's audio_url part: {v}"
    );
    assert!(v["text_reply"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(v["models"], serde_json::json!(["diva"]));
    // Transcription: the text `diva transcribe` prints; SRT and verbose JSON.
    let o = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["transcribe", &audio])
        .output()
        .unwrap();
    let cli = String::from_utf8(o.stdout).unwrap();
    assert_eq!(v["transcription"].as_str().unwrap(), cli.trim(), "{v}");
    let srt = v["transcription_srt"].as_str().unwrap();
    assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:0"), "{srt}");
    assert!(srt.contains(cli.trim()), "{srt}");
    assert!(v["transcription_duration"].as_f64().unwrap() > 1.0, "{v}");

    let e = &v["errors"];
    assert_eq!(e["401"]["class"], "AuthenticationError", "{e}");
    assert_eq!(e["400"]["class"], "BadRequestError", "{e}");
    assert!(
        e["400"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0]"),
        "{e}"
    );
    assert_eq!(e["413"]["status"], 413, "{e}");
    assert_eq!(
        e["429"]["class"], "RateLimitError",
        "{e}; the long reply meant to hold the slot: {}",
        v["long_reply"]
    );
    assert!(
        v["long_reply"]["chunks"].as_u64().unwrap() > 1,
        "{}",
        v["long_reply"]
    );
    assert_eq!(e["language"]["class"], "BadRequestError", "{e}");
    assert!(
        e["language"]["message"]
            .as_str()
            .unwrap()
            .contains("English-only"),
        "{e}"
    );

    // Prometheus: requests by status, latency histograms with buckets, tokens.
    let m = http(
        &server.addr,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    for want in [
        "diva_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
        "diva_requests_total{route=\"/v1/chat/completions\",status=\"429\"}",
        "diva_time_to_first_token_seconds_bucket{le=\"0.5\"}",
        "diva_request_duration_seconds_bucket{route=\"/v1/audio/transcriptions\",le=\"1\"}",
        "diva_generated_tokens_total",
        "diva_audio_tokens_total",
        "diva_queue_length",
    ] {
        assert!(m.contains(want), "/metrics lacks {want}:\n{m}");
    }
}

#[test]
fn raw_http_errors_use_openais_body_and_health_stays_up() {
    let server = start(&["--max-body-mb", "1"]);
    let health = http(
        &server.addr,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    for (body, want) in [
        ("{not json", "not a chat-completions request"),
        (r#"{"messages": []}"#, "last message must be the user's"),
        (
            r#"{"messages": [{"role":"user","content":"hi"}], "n": 3}"#,
            "n = 3",
        ),
        (
            r#"{"messages": [{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
            "unsupported content type",
        ),
    ] {
        let r = post(&server.addr, "/v1/chat/completions", body, "");
        assert!(r.starts_with("HTTP/1.1 400"), "{body}: {r}");
        let json = &r[r.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
    }
    // JSON nested 100,000 deep in a message's content (400 KB, under the
    // 1 MB limit) is refused by serde_json's recursion limit, not recursed
    // into (issue 20).
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(r#"{{"messages": [{{"role":"user","content":{deep}}}]}}"#);
    let r = post(&server.addr, "/v1/chat/completions", &body, "");
    assert!(r.starts_with("HTTP/1.1 400"), "{}", &r[..r.len().min(300)]);
    let json = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("recursion limit"), "{msg}");
    // SSE framing of a text request: data lines, the role first, [DONE] last.
    let r = post(
        &server.addr,
        "/v1/chat/completions",
        r#"{"stream": true, "max_tokens": 3, "messages": [{"role":"user","content":"Hi"}]}"#,
        "",
    );
    assert!(r.contains("content-type: text/event-stream"), "{r}");
    let data: Vec<&str> = r.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*data.last().unwrap(), "[DONE]", "{r}");
    let first: serde_json::Value = serde_json::from_str(data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["object"], "chat.completion.chunk");
    let health = http(
        &server.addr,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// Continuous batching: requests that arrive together decode in one batch
/// (the server's batch-size histogram shows steps of more than one row),
/// streams join while others run, and every greedy reply, audio and text,
/// equals the one the same server gives that request alone.
#[test]
fn concurrent_requests_decode_as_one_batch_with_the_replies_they_get_alone() {
    let server = start(&["--max-batch", "4"]);
    let audio = clip("asterisk/sounds/vm-savefolder.wav");
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&audio).unwrap())
    };
    let bodies: Vec<String> = [
        r#"{"role":"user","content":"What is the capital of France?"}"#.to_string(),
        r#"{"role":"user","content":"Name three colours, please."}"#.to_string(),
        format!(
            r#"{{"role":"user","content":[{{"type":"input_audio","input_audio":{{"data":"{b64}","format":"wav"}}}}]}}"#
        ),
        r#"{"role":"system","content":"Answer in French."},{"role":"user","content":"Hi"}"#
            .to_string(),
    ]
    .iter()
    .map(|m| format!(r#"{{"max_tokens": 24, "temperature": 0, "messages": [{m}]}}"#))
    .collect();
    let alone: Vec<String> = bodies
        .iter()
        .map(|b| chat_content(&post(&server.addr, "/v1/chat/completions", b, "")))
        .collect();
    let m0 = metrics_text(&server.addr);
    let (one0, all0) = (
        metric_in(&m0, "diva_decode_batch_size_bucket{le=\"1\"}"),
        metric_in(&m0, "diva_decode_batch_size_count"),
    );
    // All four at once, twice (the second round's requests join a batch
    // that is already running in some order).
    for round in 0..2 {
        let together: Vec<String> = std::thread::scope(|sc| {
            let hs: Vec<_> = bodies
                .iter()
                .map(|b| {
                    let addr = server.addr.clone();
                    sc.spawn(move || post(&addr, "/v1/chat/completions", b, ""))
                })
                .collect();
            hs.into_iter()
                .map(|h| chat_content(&h.join().unwrap()))
                .collect()
        });
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(
                a, t,
                "round {round}, request {i}: batched reply differs from alone"
            );
        }
    }
    let m1 = metrics_text(&server.addr);
    let multi = (metric_in(&m1, "diva_decode_batch_size_count") - all0)
        - (metric_in(&m1, "diva_decode_batch_size_bucket{le=\"1\"}") - one0);
    assert!(
        multi > 10.0,
        "only {multi} decode steps ran more than one row:\n{m1}"
    );
    assert!(alone.iter().all(|r| !r.is_empty()), "{alone:?}");
}

/// A client that goes away mid-stream frees the model: with room for one
/// request only, the next one is admitted within moments instead of waiting
/// for (or being refused during) the abandoned 200-token reply.
#[test]
fn a_disconnected_stream_is_cancelled() {
    let server = start(&["--max-batch", "1", "--max-queue", "0"]);
    let body = r#"{"stream": true, "max_tokens": 200, "messages": [{"role":"user","content":"Tell me a long story about a dragon."}]}"#;
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut seen = 0;
    let mut line = String::new();
    while seen < 3 {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.starts_with("data: ") {
            seen += 1;
        }
    }
    drop(r); // the client hangs up after three chunks
    let quick = r#"{"max_tokens": 2, "messages": [{"role":"user","content":"Hi"}]}"#;
    let t0 = std::time::Instant::now();
    let mut answered = None;
    while t0.elapsed() < Duration::from_secs(20) {
        let resp = post(&server.addr, "/v1/chat/completions", quick, "");
        if resp.starts_with("HTTP/1.1 200") {
            answered = Some(t0.elapsed());
            break;
        }
        assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = answered.expect("the abandoned reply kept the model for 20 s");
    // 200 tokens at SmolLM2's CPU speed take several seconds; cancelled, the
    // next request is in within a couple of decode steps.
    assert!(
        took < Duration::from_secs(3),
        "admitted only after {took:?}"
    );
}

/// The talk page in a real browser: headless Chromium (Debian's) with its
/// fake microphone playing a spoken question; hold, release, and the
/// streamed reply and its time to first token appear. Then the same through
/// the file upload, whose reply must be the API's for that file.
#[test]
fn the_page_records_sends_and_streams_the_reply_in_chromium() {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/browser/setup"
    ))
    .stderr(Stdio::inherit())
    .output()
    .expect("run tools/browser/setup");
    assert!(out.status.success(), "tools/browser/setup failed");
    let node_dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let audio = clip("asterisk/sounds/vm-savefolder.wav");
    let votes_dir = tempfile::tempdir().unwrap();
    let votes = votes_dir.path().join("votes.sqlite");
    let server = start(&["--ab-cascade", "--votes", votes.to_str().unwrap()]);
    let page = http(
        &server.addr,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("Hold to talk"),
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let shot = tempfile::tempdir().unwrap();
    let png = shot.path().join("page.png");
    let ab_png = shot.path().join("ab.png");
    let o = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/page_test.js"))
        .args([
            &format!("http://{}/", server.addr),
            &audio,
            png.to_str().unwrap(),
            ab_png.to_str().unwrap(),
        ])
        .env("NODE_PATH", node_dir.join("node_modules"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "page test failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !v["mic_reply"].as_str().unwrap().trim().is_empty(),
        "no reply from the microphone path: {v}"
    );
    assert!(
        v["mic_status"]
            .as_str()
            .unwrap()
            .contains("time to first token"),
        "{v}"
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 10_000,
        "screenshot"
    );
    if let Ok(keep) = std::env::var("DIVA_PAGE_SCREENSHOT") {
        std::fs::copy(&png, &keep).unwrap();
        std::fs::copy(&ab_png, format!("{keep}.ab.png")).unwrap();
    }
    // The A/B page showed two replies and its vote is in SQLite.
    assert!(
        !v["ab_left"].as_str().unwrap().is_empty() && !v["ab_right"].as_str().unwrap().is_empty(),
        "{v}"
    );
    assert!(
        v["ab_status"].as_str().unwrap().contains("vote recorded"),
        "{v}"
    );
    let arena = arena_json(&votes);
    assert_eq!(arena["votes"], 1, "{arena}");
    // The upload path sends the file as is: the reply is the API's.
    let b64 = {
        let o = Command::new("base64")
            .args(["-w0", &audio])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let body = format!(
        r#"{{"model": "diva", "max_tokens": 200, "messages": [{{"role": "user", "content": [{{"type": "input_audio", "input_audio": {{"data": "{b64}", "format": "wav"}}}}]}}]}}"#
    );
    let r = post(&server.addr, "/v1/chat/completions", &body, "");
    let json = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let api: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        v["file_reply"].as_str().unwrap(),
        api["choices"][0]["message"]["content"].as_str().unwrap(),
        "page upload vs API"
    );
}

/// The blind A/B study: one recording, both systems' replies in some order,
/// a vote into SQLite, and `diva eval arena` reading it back.
#[test]
fn the_ab_study_answers_with_both_systems_and_records_votes() {
    let dir = tempfile::tempdir().unwrap();
    let votes = dir.path().join("votes.sqlite");
    let server = start(&["--ab-cascade", "--votes", votes.to_str().unwrap()]);
    let audio = clip("asterisk/sounds/vm-savefolder.wav");
    let b64 = String::from_utf8(
        Command::new("base64")
            .args(["-w0", &audio])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let body_of = |r: &str| -> serde_json::Value {
        serde_json::from_str(&r[r.find("\r\n\r\n").unwrap() + 4..]).unwrap()
    };
    let ask = |model: &str| -> String {
        let body = format!(
            r#"{{"model": "{model}", "max_tokens": 128, "messages": [{{"role": "user", "content": [{{"type": "input_audio", "input_audio": {{"data": "{b64}", "format": "wav"}}}}]}}]}}"#
        );
        let v = body_of(&post(&server.addr, "/v1/chat/completions", &body, ""));
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (diva, cascade) = (ask("diva"), ask("cascade"));
    assert_ne!(
        diva, cascade,
        "the two systems must differ for the test to mean anything"
    );
    let trial = body_of(&post(
        &server.addr,
        "/ab/trial",
        &format!(r#"{{"audio": "{b64}", "format": "wav"}}"#),
        "",
    ));
    let (l, r) = (
        trial["left"].as_str().unwrap(),
        trial["right"].as_str().unwrap(),
    );
    let mut got = [l.to_string(), r.to_string()];
    got.sort();
    let mut want = [diva.clone(), cascade.clone()];
    want.sort();
    assert_eq!(got, want, "the trial shows each system's reply once");
    assert!(
        !trial.to_string().contains("cascade\""),
        "names stay hidden: {trial}"
    );
    let id = trial["trial"].as_str().unwrap();
    let v = post(
        &server.addr,
        "/ab/vote",
        &format!(r#"{{"trial": "{id}", "choice": "left"}}"#),
        "",
    );
    assert!(v.starts_with("HTTP/1.1 200"), "{v}");
    let again = post(
        &server.addr,
        "/ab/vote",
        &format!(r#"{{"trial": "{id}", "choice": "left"}}"#),
        "",
    );
    assert!(
        again.starts_with("HTTP/1.1 400") && again.contains("unknown or has its vote"),
        "{again}"
    );
    let bad = post(
        &server.addr,
        "/ab/vote",
        r#"{"trial": "x", "choice": "up"}"#,
        "",
    );
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let p = arena_json(&votes);
    assert_eq!(
        (p["system_a"].as_str(), p["system_b"].as_str()),
        (Some("cascade"), Some("diva"))
    );
    assert_eq!(p["votes"], 1);
    // "left" won: the cascade's win rate is 1 if it was on the left.
    let cascade_left = l == cascade;
    assert_eq!(
        p["a_win_rate"].as_f64().unwrap(),
        if cascade_left { 1.0 } else { 0.0 }
    );
}

/// Abuse: 100 KB of headers, a body that trickles in, a body over the limit
/// sent chunked; each gets its 4xx, and /health answers 200 throughout.
#[test]
fn abusive_requests_get_their_4xx_and_the_server_stays_up() {
    let server = start(&["--max-body-mb", "1", "--body-timeout-s", "2"]);
    let health = || {
        http(
            &server.addr,
            "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
    };
    let big = "a".repeat(100 * 1024);
    let r = http(
        &server.addr,
        &format!(
            "GET /v1/models HTTP/1.1\r\nhost: x\r\nx-junk: {big}\r\nconnection: close\r\n\r\n"
        ),
    );
    assert!(
        r.starts_with("HTTP/1.1 431") || r.starts_with("HTTP/1.1 400"),
        "{}",
        &r[..r.len().min(200)]
    );
    assert!(health().starts_with("HTTP/1.1 200"));

    // Slow loris: the headers promise 1000 bytes, one arrives per second.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{").unwrap();
    let t0 = std::time::Instant::now();
    let trickle = std::thread::spawn({
        let mut w = s.try_clone().unwrap();
        move || {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(500));
                if w.write_all(b" ").is_err() {
                    break;
                }
            }
        }
    });
    // Meanwhile the server answers others.
    assert!(health().starts_with("HTTP/1.1 200"));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("did not arrive within 2 s"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    trickle.join().unwrap();

    // Over the limit without a content-length (chunked): 413 all the same.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..20 {
        let head = format!("{:x}\r\n", chunk.len());
        if s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(&chunk))
            .and_then(|_| s.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(health().starts_with("HTTP/1.1 200"));
}

/// The load test's 30-second version (scripts/load-test runs 10 minutes):
/// 64 clients streaming audio and text requests back to back against the
/// default limits; every request is answered 200 or 429, none is dropped,
/// no 5xx, and /health is 200 afterwards.
#[test]
fn sixty_four_clients_for_thirty_seconds_get_200_or_429_and_nothing_drops() {
    let python = client_python();
    let o = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/client/load_test.py"
        ))
        .args(["--diva", env!("CARGO_BIN_EXE_diva")])
        .args(["--audio", &clip("asterisk/sounds/vm-savefolder.wav")])
        .args(["--clients", "64", "--seconds", "30", "--streams", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("load test printed no JSON ({e}):\n{err}"));
    let load = &v["load"];
    assert!(o.status.success(), "{load}\n{err}");
    assert_eq!(load["five_xx"], 0, "{load}");
    assert_eq!(load["dropped"], 0, "{load}");
    assert_eq!(load["health_after"], 200, "{load}");
    let status = load["status"].as_object().unwrap();
    assert!(status.keys().all(|k| k == "200" || k == "429"), "{load}");
    assert!(status["200"].as_u64().unwrap() >= 10, "{load}");
    assert!(load["rss_peak_mib"].as_f64().unwrap() > 0.0, "{load}");
}

/// SIGTERM drains: a reply streaming when the signal comes runs to its end
/// (`finish_reason` and `data: [DONE]`), then the process exits 0.
#[test]
fn sigterm_lets_the_stream_in_flight_finish_then_exits_cleanly() {
    let mut server = start(&[]);
    let body = r#"{"stream": true, "max_tokens": 60, "temperature": 0, "messages": [{"role":"user","content":"Tell me a long story about a dragon."}]}"#;
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    // The body is chunked: the last SSE event, then the zero-length chunk.
    assert!(rest.contains("data: [DONE]"), "{rest}");
    assert!(rest.trim_end().ends_with("\r\n0"), "{rest}");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

/// A model that fails to load (after the socket is bound) ends the server
/// with the loader's error and a non-zero exit, instead of a server that
/// answers 503 forever.
#[test]
fn a_model_that_fails_to_load_ends_the_server_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["serve", "--port", "0", "--llm"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("broken.gguf"), "{err}");
}

/// `--allow-audio-url`: an `audio_url` under an allowed http:// prefix or
/// file:/// directory is fetched and answered as the same audio inline;
/// anything else (another path on the same host, a redirect, a file beside
/// the allowed directory) is a 400 naming the flag.
#[test]
fn allowed_audio_urls_are_fetched_and_everything_else_refused() {
    let audio = clip("asterisk/sounds/vm-savefolder.wav");
    let wav = std::fs::read(&audio).unwrap();
    // A one-file web server: /clips/q.wav is the clip, /jump redirects to it.
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web_addr = web.local_addr().unwrap();
    let body = wav.clone();
    std::thread::spawn(move || {
        for conn in web.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut req = [0u8; 4096];
            let n = c.read(&mut req).unwrap_or(0);
            let line = String::from_utf8_lossy(&req[..n]).to_string();
            let head = if line.starts_with("GET /clips/q.wav ") {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
            } else {
                "HTTP/1.1 302 Found\r\nlocation: /clips/q.wav\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = c.write_all(head.as_bytes());
            if head.starts_with("HTTP/1.1 200") {
                let _ = c.write_all(&body);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("q.wav"), &wav).unwrap();
    std::fs::write(dir.path().join("beside.wav"), &wav).unwrap();
    let server = start(&[
        "--allow-audio-url",
        &format!("http://{web_addr}/clips/"),
        "--allow-audio-url",
        &format!("file://{}/", allowed.display()),
    ]);
    let ask = |url: &str| {
        let body = format!(
            r#"{{"max_tokens": 12, "temperature": 0, "messages": [{{"role":"user","content":[{{"type":"audio_url","audio_url":{{"url":"{url}"}}}}]}}]}}"#
        );
        post(&server.addr, "/v1/chat/completions", &body, "")
    };
    let inline = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&wav);
        chat_content(&ask(&format!("data:audio/wav;base64,{b64}")))
    };
    assert_eq!(
        chat_content(&ask(&format!("http://{web_addr}/clips/q.wav"))),
        inline
    );
    assert_eq!(
        chat_content(&ask(&format!("file://{}/q.wav", allowed.display()))),
        inline
    );
    for url in [
        format!("http://{web_addr}/other/q.wav"),
        format!("http://{web_addr}/clips/../jump"),
        format!("http://{web_addr}/clips/jump"),
        format!("file://{}/beside.wav", dir.path().display()),
        format!("file://{}/../beside.wav", allowed.display()),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ] {
        let r = ask(&url);
        assert!(r.starts_with("HTTP/1.1 400"), "{url}: {r}");
    }
    // The redirect is named as such, not followed.
    let r = ask(&format!("http://{web_addr}/clips/jump"));
    assert!(r.contains("HTTP 302"), "{r}");
    let r = ask(&format!("http://{web_addr}/other/q.wav"));
    assert!(r.contains("--allow-audio-url"), "{r}");
}

/// An earlier audio turn sent again with the next request is heard from the
/// cache (its virtual tokens kept by content hash), and the reply is the one
/// a server without the cache (`--audio-cache 0`) gives.
#[test]
fn earlier_audio_turns_come_from_the_cache_with_the_same_reply() {
    use base64::Engine;
    let b64 = |rel: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(clip(rel)).unwrap())
    };
    let part = |data: &str| {
        format!(r#"[{{"type":"input_audio","input_audio":{{"data":"{data}","format":"wav"}}}}]"#)
    };
    let (a, b) = (
        b64("asterisk/sounds/vm-savefolder.wav"),
        b64("asterisk/sounds/vm-newuser.wav"),
    );
    let first = format!(
        r#"{{"max_tokens": 12, "temperature": 0, "messages": [{{"role":"user","content":{}}}]}}"#,
        part(&a)
    );
    let cached = start(&[]);
    let r1 = chat_content(&post(&cached.addr, "/v1/chat/completions", &first, ""));
    let second = format!(
        r#"{{"max_tokens": 16, "temperature": 0, "messages": [{{"role":"user","content":{}}},{{"role":"assistant","content":{}}},{{"role":"user","content":{}}}]}}"#,
        part(&a),
        serde_json::Value::String(r1.clone()),
        part(&b)
    );
    let hits0 = metric(&cached.addr, "diva_audio_cache_hits_total");
    let r2 = chat_content(&post(&cached.addr, "/v1/chat/completions", &second, ""));
    let hits1 = metric(&cached.addr, "diva_audio_cache_hits_total");
    assert_eq!(
        hits1 - hits0,
        1.0,
        "the earlier clip must come from the cache"
    );
    drop(cached);
    let uncached = start(&["--audio-cache", "0"]);
    assert_eq!(
        chat_content(&post(&uncached.addr, "/v1/chat/completions", &first, "")),
        r1
    );
    assert_eq!(
        chat_content(&post(&uncached.addr, "/v1/chat/completions", &second, "")),
        r2
    );
    assert_eq!(metric(&uncached.addr, "diva_audio_cache_misses_total"), 0.0);
}

/// A slow-loris on the headers: a connection that starts a request and
/// never finishes its headers is closed after the header deadline (10 s),
/// while /health answers throughout.
#[test]
fn a_connection_that_never_finishes_its_headers_is_closed() {
    let server = start(&[]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let t0 = std::time::Instant::now();
    let health = http(
        &server.addr,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // returns when the server closes
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(30),
        "closed after {waited:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}

/// A mono 16 kHz 16-bit WAV of `secs` seconds of a quiet 440 Hz tone.
fn tone_wav(secs: f64) -> Vec<u8> {
    let n = (secs * 16_000.0) as u32;
    let mut w = Vec::with_capacity(44 + 2 * n as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    w.extend_from_slice(b"WAVE");
    w.extend_from_slice(b"fmt ");
    // fmt size 16; PCM, 1 channel; 16 kHz; 32,000 bytes/s; block align 2, 16 bits.
    for v in [16u32, 1 | (1 << 16), 16_000, 32_000, 2 | (16 << 16)] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let x = (0.2 * (std::f64::consts::TAU * 440.0 * f64::from(i) / 16_000.0).sin() * 32767.0)
            as i16;
        w.extend_from_slice(&x.to_le_bytes());
    }
    w
}

/// Issue 20: audio past the limit is refused from its header (the 400 names the
/// declared length), for chat (the model's 30 s window) and for transcriptions
/// (`--max-audio-s`); audio within it is answered.
#[test]
fn over_long_audio_is_refused_from_its_header() {
    use base64::Engine;
    let server = start(&["--max-audio-s", "3"]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(tone_wav(40.0));
    let body = format!(
        r#"{{"max_tokens": 4, "messages": [{{"role":"user","content":[{{"type":"input_audio","input_audio":{{"data":"{b64}","format":"wav"}}}}]}}]}}"#
    );
    let r = post(&server.addr, "/v1/chat/completions", &body, "");
    assert!(r.starts_with("HTTP/1.1 400"), "{}", &r[..r.len().min(400)]);
    assert!(
        r.contains("longer than the 30 s limit") && r.contains("declares 40.00 s"),
        "{r}"
    );

    let transcribe = |wav: Vec<u8>| {
        let mut form = Vec::new();
        form.extend_from_slice(b"--XyZ\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"tone.wav\"\r\ncontent-type: audio/wav\r\n\r\n");
        form.extend_from_slice(&wav);
        form.extend_from_slice(b"\r\n--XyZ--\r\n");
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        s.write_all(format!("POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=XyZ\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", form.len()).as_bytes()).unwrap();
        s.write_all(&form).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let r = transcribe(tone_wav(5.0));
    assert!(r.starts_with("HTTP/1.1 400"), "{}", &r[..r.len().min(400)]);
    assert!(
        r.contains("longer than the 3 s limit") && r.contains("declares 5.00 s"),
        "{r}"
    );
    let r = transcribe(tone_wav(2.0));
    assert!(r.starts_with("HTTP/1.1 200"), "{}", &r[..r.len().min(400)]);
}
