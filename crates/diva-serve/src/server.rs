//! The HTTP side: routes, authentication, admission, and the OpenAI response
//! shapes (one JSON body, or server-sent `chat.completion.chunk` events).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use diva_core::generate::Assistant;
use futures_util::{stream, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::api::ApiError;
use crate::prepare::prepare;
use crate::worker::{self, Event, Job, Work};

/// How `diva serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Required as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// The name `/v1/models` lists (any `model` in a request is accepted).
    pub model_id: String,
    /// Replies decoded together, one batched LLM step for all (continuous
    /// batching); more requests wait.
    pub max_batch: usize,
    /// Requests that may wait while `max_batch` run; more get 429.
    pub max_queue: usize,
    pub max_body_bytes: usize,
    /// Longest upload `/v1/audio/transcriptions` accepts, refused from its header (or
    /// as soon as decoding passes it) rather than after decoding it all. Chat audio is
    /// always limited to the model's 30 s window.
    pub max_audio_seconds: f64,
    /// The A/B study's vote database (with a second system loaded).
    pub votes: Option<std::path::PathBuf>,
    /// A request body must arrive within this (a slow sender gets 408).
    pub body_timeout: Duration,
    /// Clips whose virtual tokens (or transcripts) are kept for later turns
    /// of a conversation; 0 disables the cache.
    pub audio_cache: usize,
    /// Where `audio_url` may point besides `data:` URLs (default: nowhere).
    pub audio_sources: crate::sources::AudioSources,
}

/// A connection must send its request headers within this (then it is
/// closed without an answer).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers larger than this in all get 431 (a client sending 100 KB
/// of headers wants something other than an answer).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Every request passes here first: header size, then the whole body read
/// with a deadline and the size limit, so handlers never wait on a slow
/// client and never see more than `max_body_bytes`.
async fn guard(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let e = ApiError {
            status: 431,
            message: format!(
                "request headers of {header_bytes} bytes, over the limit of {MAX_HEADER_BYTES}"
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("headers_too_large"),
        };
        return e.into_response();
    }
    let (parts, body) = req.into_parts();
    let limit = s.opts.max_body_bytes;
    match tokio::time::timeout(s.opts.body_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => ApiError {
            status: 408,
            message: format!(
                "the request body did not arrive within {} s",
                s.opts.body_timeout.as_secs_f64()
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_timeout"),
        }
        .into_response(),
        Ok(Err(e))
            if format!("{e:?}").contains("LengthLimit")
                || e.to_string().contains("length limit") =>
        {
            ApiError::too_large(limit).into_response()
        }
        Ok(Err(e)) => ApiError::bad_request(format!("cannot read the request body: {e}"), None)
            .into_response(),
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
    }
}

pub(crate) struct AppState {
    pub(crate) jobs: mpsc::SyncSender<Job>,
    pub(crate) admission: Arc<Semaphore>,
    /// Replies in the worker's batch now.
    pub(crate) running: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) opts: ServeOptions,
    pub(crate) draining: AtomicBool,
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Set by the model thread once the systems are loaded: whether the
    /// loaded Whisper is English-only (`*.en`). Unset: still loading, and
    /// every model request gets 503.
    pub(crate) loaded: std::sync::OnceLock<Loaded>,
    /// The names of the loaded systems (`model` in requests picks one).
    pub(crate) systems: Vec<String>,
    /// The A/B study: open trials and the vote store.
    pub(crate) ab: Option<crate::ab::Study>,
}

/// What the HTTP side learns when the models are in memory.
pub(crate) struct Loaded {
    pub(crate) english_only: bool,
}

impl AppState {
    pub(crate) fn english_only(&self) -> bool {
        self.loaded.get().is_some_and(|l| l.english_only)
    }

    /// The system a request's `model` names; the main one for any other name
    /// (clients often send a fixed name such as "gpt-4o").
    fn system_index(&self, model: Option<&str>) -> usize {
        model
            .and_then(|m| self.systems.iter().position(|s| s == m))
            .unwrap_or(0)
    }
}

/// Latency buckets (seconds) for the histograms: explicit, so dashboards
/// get `_bucket` series, from a fast first token to a long reply.
const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The process-wide Prometheus recorder (installed once; several routers in
/// one process, as in tests, share it).
fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                // unwrap-ok: a constant, non-empty bucket list.
                .expect("non-empty buckets")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("diva_decode_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
                // unwrap-ok: a constant, non-empty bucket list.
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours
            // renders empty, which /metrics still serves.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(self.body())).into_response();
        if self.status == 429 || self.status == 503 {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        r
    }
}

/// Loads the systems to serve, `(name, assistant)`, the main one first; run
/// on the model thread after the server listens.
pub type Loader = Box<dyn FnOnce() -> anyhow::Result<Vec<(String, Assistant)>> + Send>;

/// The router over a model thread that first runs `load` (the systems named
/// `names`, the main one first), then answers. Until then `/health` and
/// every model request answer 503; the returned receiver says how loading
/// went (tests call this with their own listener).
pub fn router(
    names: Vec<String>,
    load: Loader,
    opts: ServeOptions,
) -> anyhow::Result<(
    Router,
    Arc<DrainHandle>,
    tokio::sync::oneshot::Receiver<anyhow::Result<f64>>,
)> {
    anyhow::ensure!(!names.is_empty(), "no system to serve");
    let ab = match (&opts.votes, names.len()) {
        (Some(p), 2) => Some(crate::ab::Study::open(
            p,
            [names[0].clone(), names[1].clone()],
        )?),
        (Some(_), _) => anyhow::bail!(
            "--votes records an A/B study: load a second system with --ab-model or --ab-cascade"
        ),
        (None, _) => None,
    };
    // The semaphore bounds admission; the channel itself never fills.
    let capacity = opts.max_batch.max(1) + opts.max_queue;
    let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let state = Arc::new(AppState {
        jobs: tx,
        admission: Arc::new(Semaphore::new(capacity)),
        running: running.clone(),
        draining: AtomicBool::new(false),
        opts: opts.clone(),
        metrics: prometheus(),
        loaded: std::sync::OnceLock::new(),
        systems: names.clone(),
        ab,
    });
    let (done, loaded) = tokio::sync::oneshot::channel();
    let (max_batch, worker_state) = (opts.max_batch, state.clone());
    let cache = worker::AudioCache::new(opts.audio_cache);
    std::thread::Builder::new()
        .name("diva-worker".into())
        .spawn(move || {
            let t0 = Instant::now();
            let systems = match load() {
                Ok(s) if s.iter().map(|(n, _)| n).eq(names.iter()) => s,
                Ok(s) => {
                    let got: Vec<&String> = s.iter().map(|(n, _)| n).collect();
                    let _ = done.send(Err(anyhow::anyhow!(
                        "the loader returned systems {got:?}, the router was given {names:?}"
                    )));
                    return;
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            };
            let assistants: Vec<Assistant> = systems.into_iter().map(|(_, a)| a).collect();
            let _ = worker_state.loaded.set(Loaded {
                english_only: assistants[0].english_only(),
            });
            drop(worker_state);
            let _ = done.send(Ok(t0.elapsed().as_secs_f64()));
            // On a thread of rayon's pool (which the kernels' parallel loops
            // use): each of the ~200 parallel products of a decode step then
            // runs here and on the other workers without waking a pool from
            // outside (perf: 20% of a batched step was in the scheduler).
            rayon::scope(|_| worker::run(assistants, rx, max_batch, running, cache))
        })
        // unwrap-ok: fails only if the OS cannot start a thread, at start-up.
        .expect("spawn the model thread");
    let handle = Arc::new(DrainHandle(state.clone()));
    let app = Router::new()
        .route("/", get(page))
        .route("/recorder.js", get(recorder_js))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/metrics", get(render_metrics))
        .route("/ab", get(crate::ab::page))
        .route("/ab/trial", post(crate::ab::trial))
        .route("/ab/vote", post(crate::ab::vote))
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    Ok((app, handle, loaded))
}

/// Lets the caller mark the server as draining (`/health` answers 503).
pub struct DrainHandle(Arc<AppState>);

impl DrainHandle {
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }
}

/// Listen on `opts.addr` at once, load the systems on the model thread
/// (`/health` says 503 until they are in), and serve until SIGTERM or
/// Ctrl-C, then finish in-flight requests and return. A failed load ends
/// the server with its error.
pub async fn serve(names: Vec<String>, load: Loader, opts: ServeOptions) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (is the port in use? choose another with --port)",
                opts.addr
            )
        })?;
    let local = listener.local_addr()?;
    let (app, handle, loaded) = router(names, load, opts)?;
    tracing::info!(
        "listening on http://{local} (POST /v1/chat/completions, GET /v1/models, GET /health); loading the model"
    );
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    tokio::spawn(async move {
        match loaded.await {
            Ok(Ok(secs)) => tracing::info!("ready: model loaded in {secs:.2}s"),
            Ok(Err(e)) => {
                let _ = failed_tx.send(e);
            }
            Err(_) => {
                let _ = failed_tx.send(anyhow::anyhow!("the model thread ended while loading"));
            }
        }
    });
    // The accept loop is hyper's own so that a connection that does not
    // finish its request headers within HEADER_TIMEOUT is closed (a
    // slow-loris on the headers; the body has its own deadline in `guard`).
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut load_failed = Some(failed_rx);
    let mut stop = std::pin::pin!(shutdown_signal());
    let failure = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection: {e}");
                    }
                });
            }
            _ = &mut stop => {
                handle.drain();
                tracing::info!("shutting down: finishing requests in flight");
                break None;
            }
            // unwrap-ok: polled only while `load_failed.is_some()` (the guard).
            r = async { load_failed.as_mut().expect("guarded").await }, if load_failed.is_some() => {
                load_failed = None;
                if let Ok(e) = r {
                    break Some(e);
                }
            }
        }
    };
    drop(listener);
    graceful.shutdown().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The talk page, compiled into the binary (no CDN: it works offline).
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("page.html"))
}

async fn recorder_js() -> impl IntoResponse {
    (
        [("content-type", "text/javascript; charset=utf-8")],
        include_str!("recorder.js"),
    )
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    if s.loaded.get().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response();
    }
    if s.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

pub(crate) fn authorized(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &s.opts.api_key else {
        return Ok(());
    };
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if sent == Some(key.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

async fn models(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&s, &headers) {
        return e.into_response();
    }
    Json(json!({
        "object": "list",
        "data": s.systems.iter().map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "diva"})).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion_id() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("chatcmpl-{:x}{:08x}{n:x}", now_s(), nanos)
}

async fn chat(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let t0 = Instant::now();
    let r = chat_inner(&s, &headers, body).await;
    let status = match &r {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status,
    };
    finish_request("/v1/chat/completions", status, t0);
    r.unwrap_or_else(IntoResponse::into_response)
}

/// The per-request log line and metrics.
pub(crate) fn finish_request(route: &'static str, status: u16, t0: Instant) {
    let secs = t0.elapsed().as_secs_f64();
    tracing::info!("POST {route} {status} in {secs:.3}s");
    metrics::counter!("diva_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("diva_request_duration_seconds", "route" => route).record(secs);
}

async fn render_metrics(State(s): State<Arc<AppState>>) -> Response {
    let capacity = s.opts.max_batch.max(1) + s.opts.max_queue;
    let taken = capacity.saturating_sub(s.admission.available_permits());
    let running = s.running.load(std::sync::atomic::Ordering::Relaxed);
    metrics::gauge!("diva_queue_length").set(taken.saturating_sub(running) as f64);
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Admission: a permit, or 429 (before any audio is decoded); 503 while
/// the model is loading.
pub(crate) fn admit(s: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    if s.loaded.get().is_none() {
        return Err(ApiError::loading());
    }
    s.admission
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::busy(s.opts.max_batch.max(1), s.opts.max_queue))
}

async fn transcriptions(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let t0 = Instant::now();
    let r = transcriptions_inner(&s, &headers, form).await;
    let status = match &r {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status,
    };
    finish_request("/v1/audio/transcriptions", status, t0);
    r.unwrap_or_else(IntoResponse::into_response)
}

fn multipart_error(
    max_body_bytes: usize,
    e: axum::extract::multipart::MultipartError,
    what: &str,
) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(max_body_bytes)
    } else {
        ApiError::bad_request(
            format!("malformed multipart body ({what}): {e}"),
            Some("file"),
        )
    }
}

/// The fields of a `POST /v1/audio/transcriptions` form that diva reads.
#[derive(Debug)]
pub struct TranscriptionForm {
    /// The `file` field's bytes.
    pub file: Bytes,
    /// Its file name, when the client sent one.
    pub name: Option<String>,
    /// `response_format` (default `json`), one of json, text, srt, vtt, verbose_json.
    pub format: String,
    /// `language`, when sent.
    pub language: Option<String>,
}

/// Read a transcription form: the `file`, `response_format` and `language` fields (others
/// are accepted and ignored). A malformed body, a form without `file` or an unknown
/// `response_format` is a 400 naming the problem; a body over `max_body_bytes` a 413.
pub async fn read_transcription_form(
    mut form: Multipart,
    max_body_bytes: usize,
) -> Result<TranscriptionForm, ApiError> {
    let (mut file, mut name, mut format, mut language) = (None, None, String::from("json"), None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(max_body_bytes, e, "fields"))?
    {
        let field_name = field.name().unwrap_or("").to_string();
        match field_name.as_str() {
            "file" => {
                name = field.file_name().map(str::to_string);
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| multipart_error(max_body_bytes, e, "file"))?,
                );
            }
            "response_format" => format = field.text().await.unwrap_or_default(),
            "language" => language = Some(field.text().await.unwrap_or_default()),
            // `model` (clients send "whisper-1": the loaded Whisper answers),
            // `prompt` and `temperature` (decoding is greedy) are accepted.
            _ => {}
        }
    }
    let file =
        file.ok_or_else(|| ApiError::bad_request("the form has no `file` field", Some("file")))?;
    if !["json", "text", "srt", "vtt", "verbose_json"].contains(&format.as_str()) {
        return Err(ApiError::bad_request(
            format!("response_format `{format}`: choose json, text, srt, vtt or verbose_json"),
            Some("response_format"),
        ));
    }
    Ok(TranscriptionForm {
        file,
        name,
        format,
        language,
    })
}

/// An uploaded file → 16 kHz PCM, its format guessed from the extension of `name` (the
/// form's file name); errors are 400s naming the file. Audio longer than `max_seconds`
/// is refused before it is decoded in full.
pub fn upload_pcm(
    file: Vec<u8>,
    name: Option<&str>,
    max_seconds: f64,
) -> Result<Vec<f32>, ApiError> {
    let label = name.unwrap_or("file");
    let ext = name
        .and_then(|n| std::path::Path::new(n).extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    diva_core::audio::load_pcm_16k_bytes_limited(
        file,
        ext.as_deref(),
        std::path::Path::new(label),
        Some(max_seconds),
    )
    .map_err(|e| ApiError::bad_request(format!("{e}"), Some("file")))
}

async fn transcriptions_inner(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    authorized(s, headers)?;
    let form = form.map_err(|e| {
        ApiError::bad_request(format!("expected a multipart/form-data body: {e}"), None)
    })?;
    let permit = admit(s)?;
    let TranscriptionForm {
        file,
        name,
        format,
        language,
    } = read_transcription_form(form, s.opts.max_body_bytes).await?;
    if let Some(l) = language.as_deref().filter(|l| !l.is_empty() && *l != "en") {
        let why = if s.english_only() {
            "the loaded Whisper is English-only (start the server with --whisper base for others)"
        } else {
            "the server transcribes English only for now"
        };
        return Err(ApiError::bad_request(
            format!("language `{l}`: {why}"),
            Some("language"),
        ));
    }
    let max_seconds = s.opts.max_audio_seconds;
    let pcm = tokio::task::spawn_blocking(move || {
        upload_pcm(file.to_vec(), name.as_deref(), max_seconds)
    })
    .await
    .map_err(|e| ApiError::internal(format!("audio decoding failed: {e}")))??;
    if pcm.is_empty() {
        return Err(ApiError::bad_request(
            "the audio has no samples",
            Some("file"),
        ));
    }
    let duration = pcm.len() as f64 / 16_000.0;
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.jobs
        .send(Job {
            work: Work::Transcribe { pcm, reply: tx },
            permit,
        })
        .map_err(|_| ApiError::internal("the model thread has stopped"))?;
    let windows = rx.await.map_err(|_| {
        ApiError::internal("the model thread ended the request without a transcript")
    })??;
    let text = windows
        .iter()
        .filter(|t| !t.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let plain =
        |body: String| ([("content-type", "text/plain; charset=utf-8")], body).into_response();
    Ok(match format.as_str() {
        "text" => plain(format!("{text}\n")),
        "json" => Json(json!({ "text": text })).into_response(),
        "verbose_json" => Json(json!({
            "task": "transcribe", "language": "english", "duration": duration, "text": text,
            "segments": segments(&windows, duration).iter().enumerate().map(|(i, (a, b, t))| json!({
                "id": i, "start": a, "end": b, "text": t,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        sub => plain(subtitles(sub == "vtt", &windows, duration)),
    })
}

/// One segment per 30 s window (greedy decoding without timestamps knows no
/// finer boundaries): (start, end, text), empty windows left out.
fn segments(windows: &[String], duration: f64) -> Vec<(f64, f64, String)> {
    windows
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, t)| {
            (
                30.0 * i as f64,
                (30.0 * (i + 1) as f64).min(duration),
                t.clone(),
            )
        })
        .collect()
}

fn subtitles(vtt: bool, windows: &[String], duration: f64) -> String {
    let stamp = |t: f64| {
        let ms = (t * 1000.0).round() as u64;
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        let sep = if vtt { '.' } else { ',' };
        format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
    };
    let mut out = if vtt {
        String::from("WEBVTT\n\n")
    } else {
        String::new()
    };
    for (i, (a, b, t)) in segments(windows, duration).iter().enumerate() {
        if !vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!("{} --> {}\n{t}\n\n", stamp(*a), stamp(*b)));
    }
    out
}

async fn chat_inner(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorized(s, headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(s.opts.max_body_bytes)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"), None)
        }
    })?;
    // Admission before any audio is decoded: a full queue costs nothing.
    let permit = admit(s)?;
    let state = s.clone();
    let (request, system) = tokio::task::spawn_blocking(move || {
        let req = crate::prepare::parse_chat_request(&body)?;
        let system = state.system_index(req.model.as_deref());
        Ok::<_, ApiError>((prepare(req, &state.opts.audio_sources)?, system))
    })
    .await
    .map_err(|e| ApiError::internal(format!("request preparation failed: {e}")))??;
    let (stream, include_usage) = (request.stream, request.include_usage);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    s.jobs
        .send(Job {
            work: Work::Chat {
                request,
                events: tx,
                system,
            },
            permit,
        })
        .map_err(|_| ApiError::internal("the model thread has stopped"))?;
    let id = completion_id();
    let created = now_s();
    let model = s.systems[system].clone();
    if stream {
        Ok(stream_response(rx, id, created, model, include_usage))
    } else {
        collect_response(rx, id, created, model).await
    }
}

pub(crate) async fn collect_response(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    id: String,
    created: u64,
    model: String,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token(t) => text.push_str(&t),
            Event::Error(e) => return Err(e),
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                return Ok(Json(json!({
                    "id": id, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason,
                    }],
                    "usage": usage,
                }))
                .into_response())
            }
        }
    }
    Err(ApiError::internal(
        "the model thread ended the request without a reply",
    ))
}

fn stream_response(
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
) -> Response {
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: serde_json::Value, finish: Option<&str>| {
            SseEvent::default().data(
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                })
                .to_string(),
            )
        }
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let events = UnboundedReceiverStream::new(rx).map(move |ev| -> Vec<SseEvent> {
        match ev {
            Event::Token(t) => vec![chunk(json!({"content": t}), None)],
            Event::Error(e) => vec![SseEvent::default().data(e.body().to_string()), done()],
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                let mut v = vec![chunk(json!({}), Some(finish_reason))];
                if include_usage {
                    v.push(
                        SseEvent::default().data(
                            json!({
                                "id": id, "object": "chat.completion.chunk", "created": created,
                                "model": model, "choices": [], "usage": usage,
                            })
                            .to_string(),
                        ),
                    );
                }
                v.push(done());
                v
            }
        }
    });
    let all = stream::iter([vec![first]])
        .chain(events)
        .flat_map(|v| stream::iter(v.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(all)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

fn done() -> SseEvent {
    SseEvent::default().data("[DONE]")
}
