//! `diva transcribe FILE...`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use candle_core::Device;
use diva_core::generate::{TranscribeOptions, Transcriber};
use diva_core::weights::cache;
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::Precision;

#[derive(clap::Args)]
pub struct Args {
    /// Audio files (WAV, FLAC, MP3, OGG/Vorbis; any rate, any channel count).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Whisper model: a fetched name (tiny.en, base), a local directory
    /// (HF safetensors or CTranslate2), or a hub id (openai/whisper-small).
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    model: String,
    /// Compute precision.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
    /// Spoken language, for multilingual models.
    #[arg(long, default_value = "en")]
    language: String,
    /// One JSON object per file on stdout instead of plain text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let dir = cache::resolve_whisper(&a.model)?;
    let opts = TranscribeOptions {
        language: a.language.clone(),
        dtype: a.dtype.into(),
    };
    let t0 = std::time::Instant::now();
    let transcriber = Transcriber::load(&dir, &opts, &Device::Cpu)?;
    tracing::info!(
        "loaded {} in {:.2}s",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );

    let bar = ProgressBar::new(a.files.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}",
    )?);
    if a.files.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failures = 0usize;
    let mut stdout = std::io::stdout().lock();
    for file in &a.files {
        bar.set_message(file.display().to_string());
        let t = std::time::Instant::now();
        match transcriber.transcribe_file(file) {
            Ok(tr) => {
                let secs = t.elapsed().as_secs_f64();
                tracing::info!(
                    "{}: {:.1}s of audio in {:.2}s",
                    file.display(),
                    tr.duration_s,
                    secs
                );
                let line = if a.json {
                    serde_json::json!({
                        "file": file, "text": tr.text, "duration_s": tr.duration_s,
                        "seconds": secs, "tokens": tr.tokens,
                    })
                    .to_string()
                } else {
                    tr.text
                };
                bar.suspend(|| writeln!(stdout, "{line}"))?;
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("error: {e}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if failures > 0 {
        eprintln!("{failures} of {} file(s) failed", a.files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
