//! OpenAI's chat-completions wire format (the subset diva answers), and its
//! error body. Unknown request fields are ignored, as OpenAI's own server
//! and vLLM do, so clients that send extra options keep working.

use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub n: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    InputAudio {
        input_audio: InputAudio,
    },
    AudioUrl {
        audio_url: Url,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
pub struct InputAudio {
    /// Base64 of the file's bytes.
    pub data: String,
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Url {
    pub url: String,
}

/// `usage` of a completion.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptTokensDetails {
    /// The virtual tokens the audio became.
    pub audio_tokens: usize,
}

/// An error as OpenAI sends it: `{"error": {message, type, param, code}}`
/// with the HTTP status beside it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            status: 401,
            message: "missing or wrong API key: send `Authorization: Bearer <key>` with the key given to `diva serve --api-key` (or DIVA_API_KEY)".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self {
            status: 413,
            message: format!(
                "request body over the limit of {} MB: send shorter audio, or raise `diva serve --max-body-mb`",
                limit_bytes / 1_000_000
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
        }
    }

    pub fn loading() -> Self {
        Self {
            status: 503,
            message: "the model is still loading; retry in a few seconds (GET /health says 200 when it is ready)".into(),
            kind: "server_error",
            param: None,
            code: Some("loading"),
        }
    }

    pub fn busy(batch: usize, queue: usize) -> Self {
        Self {
            status: 429,
            message: format!(
                "the server is busy: {batch} requests are being answered (`diva serve --max-batch`) and {queue} are waiting (`--max-queue`); retry later"
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("queue_full"),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self {
            status: 404,
            message: format!("{what} not found"),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}
