//! `diva eval-distill`: how well a student reproduces its teacher on held-out
//! clips: retrieval@1 (chance 1/pool), first-token agreement beside the
//! majority baseline, reply F1 beside mismatched F1. Works for a trained
//! model (by default the shipped one, as `diva chat`), the untrained
//! connector, and the Whisper → LLM cascade.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use diva_core::generate::{TranscribeOptions, Transcriber};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::connector::Connector;
use diva_core::weights::cache;
use diva_train::config::DEFAULT_MAX_UNUSABLE_SHARE;
use diva_train::session::Session;
use diva_train::validate::{evaluate, Student, ValOptions};

use crate::sampling_args::SamplingArgs;

/// Reply F1 compares the first 32 tokens of student and teacher replies, as
/// training's validation does (config `max_new_tokens`): the shared
/// --max-tokens flag keeps its meaning here with this default.
const REPLY_TOKENS: &str = "32";

#[derive(clap::Args)]
#[command(
    mut_arg("max_tokens", |a| a
        .default_value(REPLY_TOKENS)
        .visible_alias("max-new-tokens")
        .help("Maximum number of new tokens per reply (student and teacher) for reply F1")),
    after_help = "Examples:
  diva eval-distill --data corpus/val.jsonl
  diva eval-distill --model runs/tiny --data corpus/val.jsonl --reply-clips 0
  diva eval-distill --cascade --data corpus/val.jsonl --max-tokens 64"
)]
pub struct Args {
    /// A DiVA model directory (official layout). Default: the shipped model
    /// (or $DIVA_MODEL), as for `diva chat`.
    #[arg(long, conflicts_with_all = ["untrained", "cascade"])]
    model: Option<PathBuf>,
    /// Score a freshly initialised (untrained) connector instead.
    #[arg(long)]
    untrained: bool,
    /// Score the cascade: Whisper's transcript → LLM.
    #[arg(long)]
    cascade: bool,
    /// Queries N of the untrained connector (448: the official N).
    #[arg(long, visible_alias = "queries", default_value_t = 448)]
    num_queries: usize,
    /// Whisper for --untrained / --cascade: a fetched name, a directory or a
    /// hub id.
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    whisper: String,
    /// LLM for --untrained / --cascade: a fetched name, a .gguf file, an HF
    /// directory or a hub id.
    #[arg(long, default_value = cache::DEFAULT_LLM)]
    llm: String,
    /// Manifest of held-out clips.
    #[arg(long)]
    data: PathBuf,
    /// Use only the first N clips.
    #[arg(long)]
    limit: Option<usize>,
    /// Retrieval@1 pool size.
    #[arg(long, default_value_t = 100)]
    pool: usize,
    /// Clips whose replies are compared for reply F1 (0 skips it).
    #[arg(long, default_value_t = 100)]
    reply_clips: usize,
    /// Clips per forward pass of the student.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Shared encoder/teacher caches (default: $DIVA_HOME/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Refuse to evaluate when more than this share of the manifest's entries
    /// is unusable; 1 scores whatever is usable.
    #[arg(long, default_value_t = DEFAULT_MAX_UNUSABLE_SHARE)]
    max_unusable_share: f64,
    /// How replies are generated for reply F1 (default: greedy).
    #[command(flatten)]
    sampling: SamplingArgs,
}

fn reference(dir: &Path, r: &str) -> String {
    DivaConfig::local_reference(dir, r)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| r.to_string())
}

pub fn run(mut a: Args) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.max_unusable_share) {
        bail!(
            "--max-unusable-share must be in [0, 1], got {}",
            a.max_unusable_share
        );
    }
    let replies = a.sampling.params()?;
    if a.model.is_none() && !a.untrained && !a.cascade {
        a.model = super::models::default_model();
        match &a.model {
            Some(m) => tracing::info!("model: {}", m.display()),
            None => bail!(
                "this diva has no shipped model and $DIVA_MODEL is unset: say what to \
                 evaluate with --model DIR, --untrained or --cascade"
            ),
        }
    }
    let device = Device::Cpu;
    let (whisper, llm) = match &a.model {
        Some(dir) => {
            let cfg = DivaConfig::read(dir)?;
            (
                reference(dir, &cfg.reference_encoder),
                reference(dir, &cfg.reference_decoder),
            )
        }
        None => (a.whisper.clone(), a.llm.clone()),
    };
    let mut session = Session::open(
        &whisper,
        &llm,
        a.cache_dir.as_deref(),
        true,
        &device,
        DType::F32,
    )?;
    // No clip is dropped for being longer than the queries: every student is
    // scored on the same clips.
    let (examples, skipped) =
        session.examples(&a.data, usize::MAX, a.limit, a.max_unusable_share, "eval")?;
    let opts = ValOptions {
        pool: a.pool,
        reply_clips: a.reply_clips,
        replies,
        batch: a.batch,
    };
    let frozen = &session.frozen;
    let (label, report) = if a.cascade {
        let tr =
            Transcriber::from_weights(&frozen.whisper, &TranscribeOptions::default(), &device)?;
        let r = evaluate(
            frozen,
            &session.features,
            &Student::Cascade(&tr),
            &examples,
            &opts,
            &mut session.replies,
        )?;
        ("cascade".to_string(), r)
    } else {
        let connector = match &a.model {
            Some(dir) => {
                checkpoint::load_connector(dir, &frozen.whisper.config, DType::F32, &device)?
            }
            None => Connector::init(
                &frozen.whisper,
                a.num_queries,
                frozen.llm.hidden_size(),
                0,
                DType::F32,
                &device,
            )?,
        };
        let r = evaluate(
            frozen,
            &session.features,
            &Student::Connector(&connector),
            &examples,
            &opts,
            &mut session.replies,
        )?;
        let label = match &a.model {
            Some(d) => d.display().to_string(),
            None => format!("untrained (N={})", a.num_queries),
        };
        (label, r)
    };
    eprintln!("{label}: {} clips ({skipped} skipped)", report.clips);
    eprintln!(
        "(`diva eval run --task distill` reports these metrics for several systems with paired \
         bootstrap intervals, resumably)"
    );
    eprintln!("{}", report.summary());
    println!(
        "{}",
        serde_json::json!({ "student": label, "data": a.data, "skipped": skipped, "report": report })
    );
    Ok(ExitCode::SUCCESS)
}
