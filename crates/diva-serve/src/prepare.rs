//! A chat-completions request → what the model runs: the system message,
//! the history, the last user message (audio decoded to 16 kHz PCM) and the
//! sampling settings. Every refusal is a 400 that names the field.

use std::path::Path;

use base64::Engine;
use diva_core::generate::SamplingParams;

use crate::api::{ApiError, ChatRequest, Content, ContentPart, Stop};
use crate::sources::AudioSources;

/// DiVA hears one 30 s window; longer audio is refused rather than cut.
pub const MAX_AUDIO_SECONDS: f64 = 30.0;
/// Reply length when the request sets none (as `diva chat`'s `--max-tokens`).
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// A piece of a user message.
#[derive(Debug, Clone)]
pub enum Piece {
    Audio(Vec<f32>),
    Text(String),
}

#[derive(Debug, Clone)]
pub enum Turn {
    User(Vec<Piece>),
    Assistant(String),
}

/// A request ready for the worker.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub system: Option<String>,
    /// Earlier turns, alternating user / assistant as sent.
    pub history: Vec<Turn>,
    pub last: Vec<Piece>,
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
}

/// A `POST /v1/chat/completions` body → the request; malformed JSON (or JSON nested
/// deeper than serde_json's limit of 128) is a 400 naming the problem.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            format!("the body is not a chat-completions request: {e}"),
            None,
        )
    })
}

/// Parse and check `req` (audio is decoded here, so call it off the async
/// executor).
pub fn prepare(req: ChatRequest, sources: &AudioSources) -> Result<Prepared, ApiError> {
    if let Some(n) = req.n {
        if n != 1 {
            return Err(ApiError::bad_request(
                format!("n = {n}: diva returns one choice per request; send n = 1 or leave it out"),
                Some("n"),
            ));
        }
    }
    let mut params = SamplingParams {
        max_tokens: req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS),
        ..SamplingParams::default()
    };
    if params.max_tokens == 0 {
        return Err(ApiError::bad_request(
            "max_tokens must be at least 1",
            Some("max_tokens"),
        ));
    }
    if let Some(t) = req.temperature {
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(ApiError::bad_request(
                format!("temperature {t} is not between 0 and 2"),
                Some("temperature"),
            ));
        }
        params.temperature = t;
    }
    if let Some(p) = req.top_p {
        if !(p.is_finite() && p > 0.0 && p <= 1.0) {
            return Err(ApiError::bad_request(
                format!("top_p {p} is not in (0, 1]"),
                Some("top_p"),
            ));
        }
        params.top_p = Some(p);
    }
    if let Some(s) = req.seed {
        params.seed = s;
    }
    params.stop_strings = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => {
            if v.len() > 4 {
                return Err(ApiError::bad_request(
                    "stop takes at most 4 strings",
                    Some("stop"),
                ));
            }
            v
        }
    };

    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in req.messages.into_iter().enumerate() {
        let param = Some("messages");
        match m.role.as_str() {
            "system" | "developer" => system.push(text_only(m.content, i)?),
            "user" => {
                let pieces = user_pieces(m.content, i, sources)?;
                if pieces.is_empty() {
                    return Err(ApiError::bad_request(
                        format!("messages[{i}]: a user message needs text or audio"),
                        param,
                    ));
                }
                turns.push(Turn::User(pieces));
            }
            "assistant" => turns.push(Turn::Assistant(text_only(m.content, i)?)),
            other => {
                return Err(ApiError::bad_request(
                    format!(
                        "messages[{i}]: role `{other}` is not supported (system, user, assistant)"
                    ),
                    param,
                ))
            }
        }
    }
    let last = match turns.pop() {
        Some(Turn::User(p)) => p,
        _ => {
            return Err(ApiError::bad_request(
                "the last message must be the user's (there is nothing to answer)",
                Some("messages"),
            ))
        }
    };
    Ok(Prepared {
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        history: turns,
        last,
        params,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

fn text_only(content: Option<Content>, i: usize) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .map(|p| match p {
                ContentPart::Text { text } => Ok(text),
                _ => Err(ApiError::bad_request(
                    format!("messages[{i}]: only user messages may carry audio"),
                    Some("messages"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join("")),
    }
}

fn user_pieces(
    content: Option<Content>,
    i: usize,
    sources: &AudioSources,
) -> Result<Vec<Piece>, ApiError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Content::Text(t)) => {
            return Ok(if t.is_empty() {
                vec![]
            } else {
                vec![Piece::Text(t)]
            })
        }
        Some(Content::Parts(p)) => p,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        out.push(match p {
            ContentPart::Text { text } => Piece::Text(text),
            ContentPart::InputAudio { input_audio } => {
                let bytes = decode_base64(&input_audio.data, &at, "messages")?;
                Piece::Audio(decode_audio(
                    bytes,
                    input_audio.format.as_deref(),
                    &at,
                    "messages",
                )?)
            }
            ContentPart::AudioUrl { audio_url } => {
                let (format, bytes) = if audio_url.url.starts_with("data:") {
                    data_url(&audio_url.url, &at)?
                } else {
                    sources.fetch(&audio_url.url, &at)?
                };
                Piece::Audio(decode_audio(bytes, format.as_deref(), &at, "messages")?)
            }
            ContentPart::Unsupported => {
                return Err(ApiError::bad_request(
                    format!("{at}: unsupported content type (text, input_audio, audio_url)"),
                    Some("messages"),
                ))
            }
        });
    }
    Ok(out)
}

/// Base64 → bytes; errors name `at` and the request field `param`.
pub(crate) fn decode_base64(
    data: &str,
    at: &str,
    param: &'static str,
) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| {
            ApiError::bad_request(
                format!("{at}: audio data is not valid base64 ({e})"),
                Some(param),
            )
        })
}

/// `data:audio/wav;base64,…` → (format, bytes). Other URLs go to
/// [`AudioSources::fetch`] (refused unless allow-listed).
fn data_url(url: &str, at: &str) -> Result<(Option<String>, Vec<u8>), ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("{at}: {m}"), Some("messages"));
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(bad("not a data: URL".into()));
    };
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| bad("a data: URL needs a comma before its data".into()))?;
    if !header.ends_with(";base64") {
        return Err(bad(
            "only base64 data: URLs are accepted (data:audio/wav;base64,…)".into(),
        ));
    }
    let mime = header.trim_end_matches(";base64");
    let format = mime.strip_prefix("audio/").map(|s| match s {
        "mpeg" | "mp3" => "mp3".to_string(),
        "x-wav" | "wave" | "vnd.wave" => "wav".to_string(),
        "x-flac" => "flac".to_string(),
        other => other.to_string(),
    });
    Ok((format, decode_base64(data, at, "messages")?))
}

/// Audio bytes → 16 kHz PCM, refusing empty, unknown-format and over-30 s
/// audio; errors name `at` and the request field `param`.
pub(crate) fn decode_audio(
    bytes: Vec<u8>,
    format: Option<&str>,
    at: &str,
    param: &'static str,
) -> Result<Vec<f32>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            format!("{at}: the audio is empty"),
            Some(param),
        ));
    }
    let format = format.map(|f| f.to_ascii_lowercase());
    if let Some(f) = &format {
        if !["wav", "mp3", "flac", "ogg", "oga", "opus"].contains(&f.as_str()) {
            return Err(ApiError::bad_request(
                format!("{at}: audio format `{f}` is not supported (wav, mp3, flac, ogg)"),
                Some(param),
            ));
        }
    }
    // Refused from the header (or as soon as decoding passes it), not after decoding
    // an hour of audio; the exact check on the resampled length follows.
    let pcm = diva_core::audio::load_pcm_16k_bytes_limited(
        bytes,
        format.as_deref(),
        Path::new(at),
        Some(MAX_AUDIO_SECONDS),
    )
    .map_err(|e| ApiError::bad_request(format!("{e}"), Some(param)))?;
    if pcm.is_empty() {
        return Err(ApiError::bad_request(
            format!("{at}: the audio has no samples"),
            Some(param),
        ));
    }
    let secs = pcm.len() as f64 / 16_000.0;
    if secs > MAX_AUDIO_SECONDS + diva_core::audio::decode::LENGTH_SLACK_SECS {
        return Err(ApiError::bad_request(
            format!("{at}: {secs:.1} s of audio; DiVA hears one {MAX_AUDIO_SECONDS:.0} s window, so send at most that"),
            Some(param),
        ));
    }
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> Result<Prepared, ApiError> {
        prepare(
            serde_json::from_value(json).unwrap(),
            &AudioSources::default(),
        )
    }

    #[test]
    fn text_requests_map_to_turns_and_sampling() {
        let p = req(serde_json::json!({
            "model": "diva", "temperature": 0.5, "max_completion_tokens": 7, "seed": 3,
            "stop": "###", "unknown_field": {"ignored": true},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
                {"role": "user", "content": "Capital of France?"}
            ]
        }))
        .unwrap();
        assert_eq!(p.system.as_deref(), Some("Be brief."));
        assert_eq!(p.history.len(), 2);
        assert!(matches!(&p.last[..], [Piece::Text(t)] if t == "Capital of France?"));
        assert_eq!(
            (p.params.max_tokens, p.params.seed, p.params.temperature),
            (7, 3, 0.5)
        );
        assert_eq!(p.params.stop_strings, vec!["###".to_string()]);
    }

    #[test]
    fn refusals_name_the_problem() {
        let user = serde_json::json!([{"role": "user", "content": "x"}]);
        let e = req(serde_json::json!({"messages": user, "n": 2})).unwrap_err();
        assert_eq!((e.status, e.param), (400, Some("n")));
        let e = req(serde_json::json!({"messages": [{"role": "assistant", "content": "x"}]}))
            .unwrap_err();
        assert!(
            e.message.contains("last message must be the user's"),
            "{}",
            e.message
        );
        let bad_b64 = serde_json::json!([{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "***", "format": "wav"}}]}]);
        let e = req(serde_json::json!({"messages": bad_b64})).unwrap_err();
        assert!(e.message.contains("not valid base64"), "{}", e.message);
        let remote = serde_json::json!([{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": "http://169.254.169.254/x.wav"}}]}]);
        let e = req(serde_json::json!({"messages": remote})).unwrap_err();
        assert!(e.message.contains("(none here)"), "{}", e.message);
        let junk = serde_json::json!([{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv", "format": "wav"}}]}]);
        let e = req(serde_json::json!({"messages": junk})).unwrap_err();
        assert_eq!(e.status, 400, "{}", e.message);
        let e = req(serde_json::json!({"messages": user, "temperature": 9.0})).unwrap_err();
        assert_eq!(e.param, Some("temperature"));
    }
}
