//! The LLM judge of `diva eval run --task voicebench`: any OpenAI-compatible
//! `POST /v1/chat/completions` endpoint, asked as VoiceBench's `api_judge.py`
//! asks gpt-4o-mini (its system message, one user message, temperature 0.5,
//! top_p 0.95, n 3, max_tokens 1024). Each request has a timeout and is
//! retried on a connection error, a 429 or a 5xx, with a growing pause.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the judge said about one reply (cached in items.jsonl with it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Judgment {
    /// The judge model that answered (a rerun with another one asks again).
    pub model: String,
    /// The prompt file's version the question came from.
    pub prompt_version: u32,
    /// Its answers (`choices[].message.content`, stripped), in order.
    pub answers: Vec<String>,
}

/// Something that answers judge prompts.
pub trait Judge {
    /// The model name (recorded with each judgment).
    fn model(&self) -> &str;
    /// The answers to one system message + user message.
    fn ask(&self, system: &str, user: &str) -> Result<Vec<String>>;
}

/// How to reach an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// The endpoint: a base (`http://host:8000`, `…/v1`) or the full
    /// `…/v1/chat/completions`.
    pub url: String,
    pub model: String,
    /// The bearer token (None: no Authorization header, as a local server).
    pub key: Option<String>,
    pub timeout: Duration,
    /// Tries after the first.
    pub retries: u32,
    /// Samples per question (`n`; VoiceBench: 3).
    pub samples: u32,
}

/// The chat-completions URL of a base URL.
pub fn completions_url(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/chat/completions") {
        u.to_string()
    } else if u.ends_with("/v1") {
        format!("{u}/chat/completions")
    } else {
        format!("{u}/v1/chat/completions")
    }
}

/// A judge over HTTP.
pub struct HttpJudge {
    cfg: JudgeConfig,
    url: String,
    agent: ureq::Agent,
    /// Pause before the first retry (doubling after).
    pub backoff: Duration,
}

impl HttpJudge {
    pub fn new(cfg: JudgeConfig) -> Result<Self> {
        let url = completions_url(&cfg.url);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "--judge-url {}: not an http(s) URL (e.g. https://api.openai.com or http://127.0.0.1:8000)",
                cfg.url
            );
        }
        let agent = ureq::AgentBuilder::new().timeout(cfg.timeout).build();
        Ok(Self {
            cfg,
            url,
            agent,
            backoff: Duration::from_secs(2),
        })
    }

    /// The request body (VoiceBench's parameters).
    pub fn body(&self, system: &str, user: &str) -> Value {
        json!({
            "model": self.cfg.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "max_tokens": 1024,
            "frequency_penalty": 0,
            "presence_penalty": 0,
            "temperature": 0.5,
            "top_p": 0.95,
            "n": self.cfg.samples,
        })
    }
}

/// `choices[].message.content`, stripped.
pub fn parse_answers(v: &Value) -> Result<Vec<String>> {
    let choices = v["choices"]
        .as_array()
        .context("the judge's answer has no `choices` (not an OpenAI chat-completions reply)")?;
    let out: Vec<String> = choices
        .iter()
        .filter_map(|c| c["message"]["content"].as_str())
        .map(|s| crate::pytext::strip(s).to_string())
        .collect();
    if out.is_empty() {
        bail!("the judge's answer has no `choices[].message.content`");
    }
    Ok(out)
}

impl Judge for HttpJudge {
    fn model(&self) -> &str {
        &self.cfg.model
    }

    fn ask(&self, system: &str, user: &str) -> Result<Vec<String>> {
        let body = self.body(system, user);
        let mut pause = self.backoff;
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                tracing::warn!(
                    "judge: {last}; retrying in {:.0} s ({attempt}/{})",
                    pause.as_secs_f64(),
                    self.cfg.retries
                );
                std::thread::sleep(pause);
                pause *= 2;
            }
            let mut req = self
                .agent
                .post(&self.url)
                .set("Content-Type", "application/json");
            if let Some(k) = &self.cfg.key {
                req = req.set("Authorization", &format!("Bearer {k}"));
            }
            match req.send_string(&body.to_string()) {
                Ok(resp) => {
                    let text = resp
                        .into_string()
                        .with_context(|| format!("judge {}: reading the answer", self.url))?;
                    let v: Value = serde_json::from_str(&text).with_context(|| {
                        format!("judge {}: the answer is not JSON: {:.200}", self.url, text)
                    })?;
                    return parse_answers(&v).with_context(|| format!("judge {}", self.url));
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    last = format!("HTTP {code}: {:.300}", text);
                    if code == 429 || code >= 500 {
                        continue;
                    }
                    bail!(
                        "judge {}: HTTP {code}: {:.300} (check --judge-url, --judge-model and \
                         the key in --judge-key-env)",
                        self.url,
                        text
                    );
                }
                Err(e) => last = e.to_string(),
            }
        }
        bail!(
            "judge {}: no answer after {} tries: {last} (is the server up? --judge-timeout and \
             --judge-retries give it longer)",
            self.url,
            self.cfg.retries + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers() {
        assert_eq!(
            completions_url("http://h:1/"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            completions_url("https://x/v1"),
            "https://x/v1/chat/completions"
        );
        assert_eq!(
            completions_url("http://h/v1/chat/completions"),
            "http://h/v1/chat/completions"
        );
        let v =
            json!({"choices": [{"message": {"content": " 4\n"}}, {"message": {"content": "5"}}]});
        assert_eq!(parse_answers(&v).unwrap(), ["4", "5"]);
        assert!(parse_answers(&json!({"error": "x"})).is_err());
        let cfg = JudgeConfig {
            url: "ftp://x".into(),
            model: "m".into(),
            key: None,
            timeout: Duration::from_secs(1),
            retries: 0,
            samples: 3,
        };
        assert!(HttpJudge::new(cfg)
            .err()
            .unwrap()
            .to_string()
            .contains("http(s)"));
    }
}
