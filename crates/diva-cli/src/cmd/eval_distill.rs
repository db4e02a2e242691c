//! `diva eval-distill`: how well a student reproduces its teacher on held-out
//! clips: retrieval@1 (chance 1/pool), first-token agreement beside the
//! majority baseline, reply F1 beside mismatched F1. Works for a trained
//! model, the untrained connector, and the Whisper → LLM cascade.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use diva_core::generate::{TranscribeOptions, Transcriber};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::connector::Connector;
use diva_core::weights::cache;
use diva_train::trainer::Session;
use diva_train::validate::{evaluate, Student, ValOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A DiVA model directory (official layout).
    #[arg(long, conflicts_with_all = ["untrained", "cascade"])]
    model: Option<PathBuf>,
    /// Score a freshly initialised (untrained) connector instead.
    #[arg(long)]
    untrained: bool,
    /// Score the cascade: Whisper's transcript → LLM.
    #[arg(long)]
    cascade: bool,
    /// Query count of the untrained connector.
    #[arg(long, default_value_t = 64)]
    queries: usize,
    /// Whisper and LLM for --untrained / --cascade.
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    whisper: String,
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
    /// Clips whose greedy replies are compared for reply F1 (0 skips it).
    #[arg(long, default_value_t = 100)]
    reply_clips: usize,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Shared encoder/teacher caches (default: $DIVA_HOME/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

fn reference(dir: &Path, r: &str) -> String {
    DivaConfig::local_reference(dir, r)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| r.to_string())
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.model.is_none() && !a.untrained && !a.cascade {
        bail!("say what to evaluate: --model DIR, --untrained or --cascade");
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
    let (examples, skipped) = session.examples(&a.data, usize::MAX, a.limit, "eval")?;
    let opts = ValOptions {
        pool: a.pool,
        reply_clips: a.reply_clips,
        max_new_tokens: a.max_new_tokens,
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
                a.queries,
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
            None => format!("untrained (N={})", a.queries),
        };
        (label, r)
    };
    eprintln!("{label}: {} clips ({skipped} skipped)", report.clips);
    eprintln!("{}", report.summary());
    println!(
        "{}",
        serde_json::json!({ "student": label, "data": a.data, "skipped": skipped, "report": report })
    );
    Ok(ExitCode::SUCCESS)
}
