//! The blind A/B study (the paper's Figure 5): one recording, answered by
//! both loaded systems, shown left and right in random order without names;
//! the person votes left, right or tie, and the vote goes to SQLite
//! (`diva_eval::arena`), which `diva eval arena` reads.
//!
//! Which system sat on which side stays on the server (an open trial), so
//! the page never learns it: blind for the voter, and a vote cannot name a
//! system the trial did not show.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use diva_core::generate::SamplingParams;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::ApiError;
use crate::prepare::{decode_audio, decode_base64, Piece, Prepared};
use crate::server::{admit, authorized, collect_response, finish_request, AppState};
use crate::worker::{Job, Work};

/// Reply length in a trial (two replies per trial on a CPU).
const TRIAL_MAX_TOKENS: usize = 128;
/// Open trials kept at most (the oldest are dropped: an abandoned page).
const MAX_OPEN_TRIALS: usize = 1024;

struct Trial {
    left: String,
    right: String,
    audio_sha256: String,
}

pub(crate) struct Study {
    systems: [String; 2],
    votes: Mutex<diva_eval::arena::Votes>,
    open: Mutex<HashMap<String, Trial>>,
}

impl Study {
    pub(crate) fn open(path: &Path, systems: [String; 2]) -> anyhow::Result<Self> {
        Ok(Self {
            systems,
            votes: Mutex::new(diva_eval::arena::Votes::open(path)?),
            open: Mutex::new(HashMap::new()),
        })
    }
}

fn study(s: &AppState) -> Result<&Study, ApiError> {
    s.ab.as_ref().ok_or_else(|| {
        ApiError::not_found("the A/B study (start diva serve with --ab-model DIR or --ab-cascade, and --votes FILE)")
    })
}

pub(crate) async fn page(State(s): State<Arc<AppState>>) -> Response {
    match study(&s) {
        Ok(_) => Html(include_str!("ab.html")).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct TrialRequest {
    /// Base64 of the recording.
    audio: String,
    #[serde(default)]
    format: Option<String>,
}

/// `POST /ab/trial {audio, format}` → `{trial, left, right}`.
pub(crate) async fn trial(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let t0 = std::time::Instant::now();
    let r = trial_inner(&s, &headers, body).await;
    finish_request(
        "/ab/trial",
        r.as_ref().map_or_else(|e| e.status, |_| 200),
        t0,
    );
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn trial_inner(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorized(s, headers)?;
    let st = study(s)?;
    let body =
        body.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}"), None))?;
    let req: TrialRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("expected {{\"audio\": base64, \"format\": \"wav\"}}: {e}"),
            None,
        )
    })?;
    let bytes = decode_base64(&req.audio, "audio", "audio")?;
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let permit = admit(s)?;
    let format = req.format.clone();
    let pcm = tokio::task::spawn_blocking(move || {
        decode_audio(bytes, format.as_deref(), "audio", "audio")
    })
    .await
    .map_err(|e| ApiError::internal(format!("audio decoding failed: {e}")))??;
    let request = Prepared {
        system: None,
        history: Vec::new(),
        last: vec![Piece::Audio(pcm)],
        params: SamplingParams {
            max_tokens: TRIAL_MAX_TOKENS,
            ..SamplingParams::default()
        },
        stream: false,
        include_usage: false,
    };
    // Both systems answer, one after the other (one permit at a time).
    let mut replies = Vec::new();
    let mut permit = Some(permit);
    for system in 0..2 {
        let p = match permit.take() {
            Some(p) => p,
            None => admit(s)?,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        s.jobs
            .send(Job {
                work: Work::Chat {
                    request: request.clone(),
                    events: tx,
                    system,
                },
                permit: p,
            })
            .map_err(|_| ApiError::internal("the model thread has stopped"))?;
        let r = collect_response(rx, String::new(), 0, String::new()).await?;
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::internal(format!("{e}")))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("{e}")))?;
        replies.push(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    let swap = rand::random::<bool>();
    let (l, r) = if swap { (1, 0) } else { (0, 1) };
    let id = format!("ab-{:032x}", rand::random::<u128>());
    {
        let mut open = st
            .open
            .lock()
            .map_err(|_| ApiError::internal("trial table poisoned"))?;
        if open.len() >= MAX_OPEN_TRIALS {
            open.clear();
        }
        open.insert(
            id.clone(),
            Trial {
                left: st.systems[l].clone(),
                right: st.systems[r].clone(),
                audio_sha256: sha,
            },
        );
    }
    Ok(Json(json!({ "trial": id, "left": replies[l], "right": replies[r] })).into_response())
}

#[derive(Deserialize)]
struct VoteRequest {
    trial: String,
    choice: String,
}

/// `POST /ab/vote {trial, choice: left|right|tie}`.
pub(crate) async fn vote(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let t0 = std::time::Instant::now();
    let r = vote_inner(&s, &headers, body);
    finish_request(
        "/ab/vote",
        r.as_ref().map_or_else(|e| e.status, |_| 200),
        t0,
    );
    r.unwrap_or_else(IntoResponse::into_response)
}

fn vote_inner(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorized(s, headers)?;
    let st = study(s)?;
    let body =
        body.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}"), None))?;
    let v: VoteRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"trial\", \"choice\"}}: {e}"), None)
    })?;
    if !["left", "right", "tie"].contains(&v.choice.as_str()) {
        return Err(ApiError::bad_request(
            format!("choice `{}`: vote left, right or tie", v.choice),
            Some("choice"),
        ));
    }
    let t = st
        .open
        .lock()
        .map_err(|_| ApiError::internal("trial table poisoned"))?
        .remove(&v.trial)
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("trial `{}` is unknown or has its vote", v.trial),
                Some("trial"),
            )
        })?;
    st.votes
        .lock()
        .map_err(|_| ApiError::internal("vote store poisoned"))?
        .record(&v.trial, &t.left, &t.right, &v.choice, &t.audio_sha256)
        .map_err(|e| ApiError::internal(format!("{e}")))?;
    Ok(Json(json!({ "recorded": true })).into_response())
}
