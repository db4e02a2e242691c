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
    /// Turn an HF datasets parquet export (HeySQuAD, SD-QA, MELD, IEMOCAP,
    /// MUStARD, CoVoST 2, VoiceBench) into a manifest for `diva eval run`.
    #[command(after_help = "Examples:
  diva eval import --format heysquad --in heysquad/validation-00000-of-00002.parquet --out data/heysquad
  diva eval import --format meld --in meld/test/ --out data/meld
  diva eval import --format covost2 --in covost2/en_de/ --out data/covost-de
  diva eval import --format voicebench --in voicebench/sd-qa/usa-00000-of-00001.parquet --out data/vb-sdqa-usa

Writes OUT/audio/<id>.<ext> (the embedded audio bytes) and OUT/manifest.jsonl;
a rerun skips audio already written. The columns read per format are in
docs/evaluation.md.")]
    Import(ImportArgs),
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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// HeySQuAD: `id`, `question`, `answers {text}`, `audio` → spoken-qa.
    Heysquad,
    /// SD-QA: `id`, `question`, `answers`, one audio column per dialect → spoken-qa.
    Sdqa,
    /// MELD: `Emotion`, `Utterance`, `audio` → classify (7 emotions).
    Meld,
    /// IEMOCAP: `emotion`/`major_emotion`/`label`, `transcription`, `audio` → classify.
    Iemocap,
    /// MUStARD: `sarcasm`, `utterance`, `audio` → classify (sarcastic / not sarcastic).
    Mustard,
    /// CoVoST 2: `sentence`, `translation`, `audio` → translate.
    Covost2,
    /// VoiceBench: `audio`, `prompt` and the subset's fields (sd-qa → spoken-qa).
    Voicebench,
}

impl From<FormatArg> for diva_eval::import::Format {
    fn from(f: FormatArg) -> Self {
        use diva_eval::import::Format;
        match f {
            FormatArg::Heysquad => Format::HeySquad,
            FormatArg::Sdqa => Format::SdQa,
            FormatArg::Meld => Format::Meld,
            FormatArg::Iemocap => Format::Iemocap,
            FormatArg::Mustard => Format::Mustard,
            FormatArg::Covost2 => Format::Covost2,
            FormatArg::Voicebench => Format::VoiceBench,
        }
    }
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The dataset the export is of.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// A .parquet file or a directory of them (searched recursively).
    #[arg(long = "in", value_name = "PATH")]
    input: PathBuf,
    /// Output directory: manifest.jsonl and audio/.
    #[arg(long)]
    out: PathBuf,
    /// The text column (question, utterance, sentence, prompt) instead of the format's.
    #[arg(long)]
    text_column: Option<String>,
    /// The label (classification), answers (spoken QA) or translation (CoVoST 2) column.
    #[arg(long)]
    label_column: Option<String>,
    /// The audio column instead of `audio`.
    #[arg(long)]
    audio_column: Option<String>,
    /// CoVoST 2: the target language (default: a `target_lang` column, else a
    /// path component like `en_de`).
    #[arg(long)]
    target_lang: Option<String>,
    /// VoiceBench: the subset (default: a path component naming one).
    #[arg(long)]
    subset: Option<String>,
}

fn import(a: ImportArgs) -> Result<ExitCode> {
    let mut o = diva_eval::import::ImportOptions::new(a.format.into());
    o.text_column = a.text_column;
    o.label_column = a.label_column;
    o.audio_column = a.audio_column;
    o.target_lang = a.target_lang;
    o.subset = a.subset;
    let r = diva_eval::import::import(&a.input, &a.out, &o)?;
    for s in &r.skipped {
        eprintln!("{s}");
    }
    eprintln!(
        "{} items ({} audio files written, {} already there, {} rows skipped)",
        r.items,
        r.written,
        r.reused,
        r.skipped.len()
    );
    crate::outln!("{}", r.manifest.display())?;
    match r.task {
        Some(t) => {
            let mut hint = format!("diva eval run --task {t} --data {}", r.manifest.display());
            if let Some(l) = &r.target_lang {
                hint.push_str(&format!(" --target-lang {l}"));
            }
            eprintln!("evaluate with: {hint} --out DIR");
        }
        None => eprintln!(
            "this VoiceBench subset has no `diva eval run` task yet (its fields are in the manifest)"
        ),
    }
    Ok(ExitCode::SUCCESS)
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
        Cmd::Import(a) => return import(a),
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
