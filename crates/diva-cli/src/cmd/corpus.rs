//! `diva corpus`: build a speech corpus from a text file with the installed
//! TTS engines (`synth`), and list the voices they offer (`voices`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use diva_train::data::synth::{self, Engines, Outcome, SynthConfig, Voice};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Speak every line of a text file with varied voices, rate and pitch;
    /// writes DIR/wavs/*.wav (16 kHz mono) and manifest/train/val.jsonl.
    #[command(after_help = "Examples:
  diva corpus synth --text lines.txt --out corpus --repeat 2 --holdout-voice flite-slt
  diva corpus synth --text lines.txt --out corpus --noise-prob 0.3 --snr-db 10,30 --limit 100")]
    Synth(SynthArgs),
    /// List the voice ids available on this machine.
    #[command(after_help = "Examples:\n  diva corpus voices")]
    Voices(VoicesArgs),
}

#[derive(clap::Args)]
pub struct SynthArgs {
    /// One utterance per line; blank lines and lines starting with # are ignored.
    #[arg(long)]
    text: PathBuf,
    /// Output directory (created; rerunning into it resumes).
    #[arg(long)]
    out: PathBuf,
    /// Use only the first N lines.
    #[arg(long)]
    limit: Option<usize>,
    /// Speak each line K times, each by another voice (ids 000123-0, 000123-1, …).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Comma-separated voice ids (see `diva corpus voices`), or `all`.
    #[arg(long, default_value = "all")]
    voices: String,
    /// A voice whose utterances all go to the val split (repeatable).
    #[arg(long = "holdout-voice", value_name = "ID")]
    holdout_voice: Vec<String>,
    /// Share of the lines spoken by held-out voices.
    #[arg(long, default_value_t = 0.1)]
    val_share: f64,
    /// Seed of the voice, rate, pitch, noise and split choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability that an utterance gets additive white or pink noise.
    #[arg(long, default_value_t = 0.0)]
    noise_prob: f64,
    /// SNR range of the noise in dB: LO,HI (or one value) [default: 15,40].
    #[arg(long, value_parser = parse_range, allow_hyphen_values = true)]
    snr_db: Option<(f32, f32)>,
    /// Random gain in dB around the common level (-23 dBFS RMS): LO,HI (or one value).
    #[arg(long, value_parser = parse_range, allow_hyphen_values = true)]
    gain_db: Option<(f32, f32)>,
    /// Speaking-rate factor range: LO,HI (1 = the engine's normal pace).
    #[arg(long, value_parser = parse_range, default_value = "0.8,1.2")]
    rate_range: (f32, f32),
    /// Worker threads [default: available cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// A piper voice model (.onnx), used if the `piper` program is installed (repeatable).
    #[arg(long, value_name = "PATH")]
    piper_model: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct VoicesArgs {
    /// A piper voice model (.onnx) to list as well (repeatable).
    #[arg(long, value_name = "PATH")]
    piper_model: Vec<PathBuf>,
}

/// `LO,HI` or a single value meaning LO = HI.
fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let num = |x: &str| {
        x.trim()
            .parse::<f32>()
            .map_err(|e| format!("{x:?} is not a number: {e}"))
    };
    let (lo, hi) = match s.split_once(',') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if lo > hi {
        return Err(format!("range {s:?} has low > high"));
    }
    Ok((lo, hi))
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Voices(a) => voices(a),
        Cmd::Synth(a) => synth_corpus(a),
    }
}

fn engines(piper_model: Vec<PathBuf>) -> Engines {
    Engines {
        piper_models: piper_model,
        ..Engines::default()
    }
}

fn voices(a: VoicesArgs) -> Result<ExitCode> {
    for v in synth::list_voices(&engines(a.piper_model))?.voices {
        println!("{}", v.id());
    }
    Ok(ExitCode::SUCCESS)
}

fn pick_voices(available: Vec<Voice>, wanted: &str) -> Result<Vec<Voice>> {
    if wanted.trim() == "all" {
        return Ok(available);
    }
    let mut picked = Vec::new();
    for id in wanted.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match available.iter().find(|v| v.id() == id) {
            Some(v) => picked.push(v.clone()),
            None => {
                let ids: Vec<String> = available.iter().map(Voice::id).collect();
                bail!(
                    "voice {id} is not available here; available: {}",
                    ids.join(", ")
                );
            }
        }
    }
    if picked.is_empty() {
        bail!("--voices {wanted:?} names no voice");
    }
    Ok(picked)
}

fn synth_corpus(a: SynthArgs) -> Result<ExitCode> {
    let lines = synth::read_lines(&a.text, a.limit)?;
    let engines = engines(a.piper_model);
    let available = synth::list_voices(&engines)?.voices;
    let mut voices = pick_voices(available.clone(), &a.voices)?;
    // A held-out voice left out of --voices is still wanted: add it.
    for h in &a.holdout_voice {
        if !voices.iter().any(|v| &v.id() == h) {
            voices.extend(pick_voices(available.clone(), h)?);
        }
    }
    if a.noise_prob == 0.0 && a.snr_db.is_some() {
        tracing::warn!("--snr-db has no effect while --noise-prob is 0");
    }
    let defaults = SynthConfig::default();
    let cfg = SynthConfig {
        out_dir: a.out.clone(),
        voices,
        holdout: a.holdout_voice,
        val_share: a.val_share,
        seed: a.seed,
        repeat: a.repeat,
        rate_range: a.rate_range,
        gain_db: a.gain_db,
        noise_prob: a.noise_prob,
        snr_db: a.snr_db.unwrap_or(defaults.snr_db),
        jobs: a.jobs.unwrap_or(defaults.jobs),
        engines,
    };
    let total = lines.len() * cfg.repeat.max(1);
    let bar = ProgressBar::new(total as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}",
    )?);
    let t0 = std::time::Instant::now();
    let report = synth::synthesize_corpus(&cfg, &lines, &|u, o| {
        if let Outcome::Failed(why) = o {
            bar.suspend(|| tracing::warn!("{} ({}): {why}", u.id, u.voice.id()));
        }
        bar.set_message(u.id.clone());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let hours = report.audio_secs / 3600.0;
    eprintln!(
        "{} written, {} already there, {} failed; {:.3} h of audio in {}; {:.1}s",
        report.written,
        report.existing,
        report.failures.len(),
        hours,
        a.out.display(),
        secs
    );
    let summary = serde_json::json!({
        "out": a.out, "written": report.written, "skipped_existing": report.existing,
        "failed": report.failures.len(), "audio_hours": hours, "elapsed_s": secs,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if report.items.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
