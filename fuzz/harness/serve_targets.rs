//! The fuzz targets over diva-serve's request parsing: the chat-completions JSON
//! body (with base64 and data-URL audio, decoded) and the transcription form
//! (multipart/form-data, then the uploaded file decoded). Shared by the
//! cargo-fuzz crate and the stable replay test `crates/diva-serve/tests/fuzz_replay.rs`
//! (see `core_targets.rs`).

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::Request;
use diva_serve::prepare::{parse_chat_request, prepare};
use diva_serve::server::{read_transcription_form, upload_pcm};
use diva_serve::AudioSources;

/// A target: (name, entry point).
pub type Target = (&'static str, fn(&[u8]));

/// Every target of this file: (name, entry point).
pub const TARGETS: &[Target] = &[
    ("serve_chat", serve_chat),
    ("serve_multipart", serve_multipart),
];

/// The boundary the multipart target's bodies use.
pub const BOUNDARY: &str = "diva-fuzz-boundary";

/// The body limit the multipart target reads under (the server's default).
const MAX_BODY_BYTES: usize = 25 << 20;

/// A `POST /v1/chat/completions` body: parsed, then prepared as the server does
/// (sampling settings checked, audio decoded; no audio URL is allow-listed).
pub fn serve_chat(data: &[u8]) {
    if let Ok(req) = parse_chat_request(data) {
        let _ = prepare(req, &AudioSources::default());
    }
}

/// A `POST /v1/audio/transcriptions` body (`multipart/form-data; boundary=` [`BOUNDARY`]):
/// the form read as the server reads it, then its file decoded.
pub fn serve_multipart(data: &[u8]) {
    let Ok(request) = Request::builder()
        .method("POST")
        .uri("/v1/audio/transcriptions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(data.to_vec()))
    else {
        return;
    };
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let Some(runtime) =
        RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().ok())
    else {
        return;
    };
    let form = runtime.block_on(async {
        let form = Multipart::from_request(request, &()).await.ok()?;
        read_transcription_form(form, MAX_BODY_BYTES).await.ok()
    });
    if let Some(form) = form {
        // The limit also keeps a hostile "hour of audio" from slowing the fuzzer down.
        let _ = upload_pcm(form.file.to_vec(), form.name.as_deref(), 30.0);
    }
}
