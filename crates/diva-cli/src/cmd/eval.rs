//! `diva eval asr`: transcribe a manifest and report WER, optionally beside
//! another system's hypotheses for the same items; `diva eval arena`: the A/B
//! study's win rates; `diva eval run` (in `eval_run.rs`): a task evaluated on
//! a model and the systems it is compared with.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use candle_core::Device;
use diva_core::generate::{TranscribeOptions, Transcriber};
use diva_core::weights::cache;
use diva_eval::{asr, manifest};
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::Precision;

#[path = "eval_run.rs"]
pub mod run;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Evaluate a DiVA model on a task (spoken QA, classification,
    /// translation, ASR) beside the cascade, the teacher or another model:
    /// paired-bootstrap intervals, results.json, report.md and a chart.
    Run(Box<run::Args>),
    /// Word error rate of Whisper transcription on a JSONL manifest.
    #[command(after_help = "Examples:
  diva eval asr --manifest ~/.cache/diva/data/asterisk/manifest.jsonl
  diva eval asr --manifest m.jsonl --model base --every 10 --items-out items.jsonl")]
    Asr(AsrArgs),
    /// Win rates of the blind A/B study's votes, with paired-bootstrap 95% intervals.
    #[command(after_help = "Examples:
  diva eval arena --votes votes.sqlite
  diva eval arena --votes votes.sqlite --json --rounds 10000")]
    Arena(ArenaArgs),
}

#[derive(clap::Args)]
pub struct ArenaArgs {
    /// The SQLite file `diva serve --votes` wrote.
    #[arg(long)]
    votes: PathBuf,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 10_000)]
    rounds: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One JSON object per pair of systems instead of a table.
    #[arg(long)]
    json: bool,
}

fn arena(a: ArenaArgs) -> Result<ExitCode> {
    if !a.votes.is_file() {
        anyhow::bail!(
            "--votes {}: file not found (diva serve --votes FILE writes it)",
            a.votes.display()
        );
    }
    let v = diva_eval::arena::Votes::open(&a.votes)?;
    let pairs = diva_eval::arena::report(&v.outcomes()?, a.rounds.max(1), a.seed);
    if pairs.is_empty() {
        anyhow::bail!("{}: no votes yet", a.votes.display());
    }
    for p in &pairs {
        if a.json {
            crate::outln!("{}", serde_json::to_string(p)?)?;
        } else {
            crate::outln!(
                "{} vs {}: {} votes ({} / {} / {} ties): {} wins {:.1}% [95% CI {:.1}–{:.1}%]",
                p.system_a,
                p.system_b,
                p.votes,
                p.a_wins,
                p.b_wins,
                p.ties,
                p.system_a,
                100.0 * p.a_win_rate,
                100.0 * p.ci95[0],
                100.0 * p.ci95[1]
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AsrArgs {
    /// JSONL manifest with `id`, `audio`, `text`.
    #[arg(long)]
    manifest: PathBuf,
    /// Whisper model: a fetched name (tiny.en, base), a directory or a hub id.
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    model: String,
    /// Compute dtype of the Whisper weights.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
    /// Another system's hypotheses (JSONL with `id`, `hyp`) to score beside ours.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Score only every N-th item (in id order).
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// Write per-item results as JSONL here.
    #[arg(long)]
    items_out: Option<PathBuf>,
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    let a = match cmd {
        Cmd::Asr(a) => a,
        Cmd::Arena(a) => return arena(a),
        Cmd::Run(a) => return run::run(*a),
    };
    let mut items = manifest::read(&a.manifest).map_err(|e| anyhow!(e))?;
    items.sort_by(|x, y| x.id.cmp(&y.id));
    let items: Vec<_> = items.into_iter().step_by(a.every.max(1)).collect();
    let other = a
        .compare
        .as_deref()
        .map(asr::read_reference_hyps)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let dir = cache::resolve_whisper(&a.model)?;
    let opts = TranscribeOptions {
        dtype: a.dtype.into(),
        ..Default::default()
    };
    let tr = Transcriber::load(&dir, &opts, &Device::Cpu)?;
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}",
    )?);
    let t0 = std::time::Instant::now();
    let report = asr::evaluate(&tr, &items, other.as_ref(), |r| {
        bar.set_message(r.id.clone());
        bar.inc(1);
    });
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    if let Some(p) = &a.items_out {
        let lines: Vec<String> = report
            .items
            .iter()
            .map(|i| serde_json::to_string(i).unwrap_or_default())
            .collect();
        std::fs::write(p, lines.join("\n") + "\n")?;
    }
    eprintln!(
        "{} utterances, {} reference words, {:.1}s",
        report.utterances, report.words, secs
    );
    eprintln!("diva WER            {:6.2}%", report.wer);
    if let Some(o) = report.other_wer {
        eprintln!(
            "comparison WER      {:6.2}%  (difference {:+.2} points)",
            o,
            report.wer - o
        );
        eprintln!(
            "identical outputs   {} of {}",
            report.identical_to_other, report.utterances
        );
    }
    let summary = serde_json::json!({
        "manifest": a.manifest, "model": dir, "utterances": report.utterances, "words": report.words,
        "wer": report.wer, "compare_wer": report.other_wer, "identical": report.identical_to_other,
        "failed": report.failed, "elapsed_s": secs,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
