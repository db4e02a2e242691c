//! `diva serve`: the model behind an OpenAI-compatible HTTP API
//! (`diva_serve`). Argument handling only.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use diva_core::generate::Assistant;

use super::chat::{options, ModelArgs};

const EXAMPLES: &str = "Examples:
  diva serve                                   # the default model on http://127.0.0.1:8080
  diva serve --port 9000 --api-key secret      # clients send `Authorization: Bearer secret`
  diva serve --cascade                         # the Whisper → LLM baseline behind the same API
  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' -d \\
    '{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",
      \"input_audio\":{\"data\":\"'$(base64 -w0 q.wav)'\",\"format\":\"wav\"}}]}]}'";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    models: ModelArgs,
    /// Address to listen on (0.0.0.0 listens on every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the log line says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every API request.
    #[arg(long, env = "DIVA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Requests that may wait while one is answered; more get 429.
    #[arg(long, default_value_t = 16)]
    max_queue: usize,
    /// Largest request body, in MB (base64 audio included); more get 413.
    #[arg(long, default_value_t = 25)]
    max_body_mb: usize,
    /// The model name `/v1/models` lists (requests may name any model).
    #[arg(long, default_value = "diva")]
    model_id: String,
}

pub fn run(a: Args) -> Result<ExitCode> {
    // The transcriber serves /v1/audio/transcriptions (and the cascade).
    let opts = options(&a.models, true, None)?;
    let t0 = Instant::now();
    let assistant = Assistant::load(&opts)?;
    tracing::info!("model loaded in {:.2}s", t0.elapsed().as_secs_f64());
    let serve = diva_serve::ServeOptions {
        addr: SocketAddr::new(a.host, a.port),
        api_key: a.api_key.filter(|k| !k.is_empty()),
        model_id: a.model_id,
        max_queue: a.max_queue,
        max_body_bytes: a.max_body_mb.saturating_mul(1_000_000),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(diva_serve::serve(assistant, serve))?;
    Ok(ExitCode::SUCCESS)
}
