//! `diva serve`: the model behind an OpenAI-compatible HTTP API
//! (`diva_serve`). Argument handling only.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context, Result};
use diva_core::generate::Assistant;

use super::chat::{options, ModelArgs};

const EXAMPLES: &str = "Examples:
  diva serve                                   # the default model on http://127.0.0.1:8080
  diva serve --port 9000 --api-key secret      # clients send `Authorization: Bearer secret`
  diva serve --cascade                         # the Whisper → LLM baseline behind the same API
  diva serve --ab-cascade --votes votes.sqlite # blind A/B at /ab: diva vs the cascade
  diva serve --max-batch 16 --allow-audio-url file:///data/clips/   # batch 16 streams; audio_url from a directory
  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' -d \\
    '{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",
      \"input_audio\":{\"data\":\"'$(base64 -w0 q.wav)'\",\"format\":\"wav\"}}]}]}'";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
#[command(group = clap::ArgGroup::new("ab").args(["ab_model", "ab_cascade"]))]
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
    /// Replies decoded together in one batched step (continuous batching:
    /// requests join and leave between steps); 1 answers one at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    max_batch: usize,
    /// Requests that may wait while --max-batch are answered; more get 429.
    #[arg(long, default_value_t = 16)]
    max_queue: usize,
    /// Largest request body, in MB (base64 audio included); more get 413.
    #[arg(long, default_value_t = 25)]
    max_body_mb: usize,
    /// Longest audio /v1/audio/transcriptions accepts, in seconds; longer
    /// uploads get 400 before they are decoded (chat audio is always at most
    /// the model's 30 s window).
    #[arg(long, default_value_t = 1800.0, value_parser = seconds)]
    max_audio_s: f64,
    /// Seconds a request body may take to arrive; a slower client gets 408.
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    body_timeout_s: f64,
    /// The model name `/v1/models` lists (requests may name any model).
    #[arg(long, default_value = "diva")]
    model_id: String,
    /// A second DiVA checkpoint for the blind A/B study at /ab (same
    /// Whisper and LLM flags); requests pick it with `model: "ab"`.
    #[arg(long, conflicts_with = "ab_cascade")]
    ab_model: Option<std::path::PathBuf>,
    /// The cascade (Whisper transcript → LLM) as the A/B study's second system.
    #[arg(long)]
    ab_cascade: bool,
    /// Clips remembered for later turns of a conversation (their virtual
    /// tokens, or the cascade's transcripts, by content hash), so history
    /// is not re-encoded with every request; 0 disables it.
    #[arg(long, default_value_t = 256)]
    audio_cache: usize,
    /// Let `audio_url` parts fetch from under this prefix (repeatable):
    /// `https://clips.example.com/audio/` or `file:///data/clips/`. Without
    /// it only inline audio (data: URLs, input_audio) is accepted, so a
    /// client cannot make the server reach an address.
    #[arg(long = "allow-audio-url", value_name = "PREFIX")]
    allow_audio_url: Vec<String>,
    /// SQLite file for the A/B study's votes (created if missing); read
    /// them with `diva eval arena --votes FILE`.
    #[arg(long, requires = "ab")]
    votes: Option<std::path::PathBuf>,
}

/// A duration in seconds: finite, positive, at most a day.
fn seconds(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!(
            "{s} s: give a number of seconds above 0 and at most 86400"
        ))
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    // The transcriber serves /v1/audio/transcriptions (and the cascade).
    // Options are resolved (and bad flags refused) before the server
    // listens; the weights load on the model thread after it does.
    let mut loads = vec![(a.model_id.clone(), options(&a.models, true, None)?)];
    if a.ab_model.is_some() || a.ab_cascade {
        let second = ModelArgs {
            model: a.ab_model.clone(),
            cascade: a.ab_cascade,
            untrained: false,
            ..a.models.clone()
        };
        let name = if a.ab_cascade { "cascade" } else { "ab" };
        loads.push((name.to_string(), options(&second, true, None)?));
    }
    // The pool choice sets an environment variable: now, while the process
    // has one thread (the async runtime and the model thread come later).
    Assistant::prepare_cpu_pools(&loads[0].1)?;
    let names = loads.iter().map(|(n, _)| n.clone()).collect();
    let load: diva_serve::server::Loader = Box::new(move || {
        loads
            .into_iter()
            .map(|(name, o)| Ok((name, Assistant::load(&o)?)))
            .collect()
    });
    let serve = diva_serve::ServeOptions {
        addr: SocketAddr::new(a.host, a.port),
        api_key: a.api_key.filter(|k| !k.is_empty()),
        model_id: a.model_id,
        max_batch: a.max_batch,
        max_queue: a.max_queue,
        max_body_bytes: a.max_body_mb.saturating_mul(1_000_000),
        max_audio_seconds: a.max_audio_s,
        votes: a.votes,
        body_timeout: std::time::Duration::from_secs_f64(a.body_timeout_s),
        audio_cache: a.audio_cache,
        audio_sources: diva_serve::AudioSources::new(
            &a.allow_audio_url,
            a.max_body_mb.saturating_mul(1_000_000),
            std::time::Duration::from_secs(10),
        )
        .map_err(anyhow::Error::msg)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(diva_serve::serve(names, load, serve))?;
    Ok(ExitCode::SUCCESS)
}
