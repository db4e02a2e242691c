//! `diva transcribe FILE...`: one line per file on stdout. With one file the
//! line is the bare text; with more, `PATH<TAB>text`, so a failed file (its
//! error on stderr) cannot shift which text belongs to which file. `--json`
//! gives one record per file, failures included. A progress bar over files
//! and 30 s windows shows on stderr when it is a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use diva_core::generate::{TranscribeOptions, Transcriber, Transcript};
use diva_core::weights::cache;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::common::{self, DeviceArg, Precision};
use crate::outln;

const EXAMPLES: &str = "Examples:
  diva transcribe question.wav
  diva transcribe --json a.wav b.flac c.mp3
  diva transcribe --model base --language fr interview.mp3
  curl -s https://example.org/q.wav | diva transcribe -";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Audio files (WAV, FLAC, MP3, OGG/Vorbis; any rate, any channel
    /// count), or `-` for one file's bytes on stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Whisper model: a fetched name (tiny.en, base), a local directory
    /// (HF safetensors or CTranslate2), or a hub id (openai/whisper-small).
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    model: String,
    /// Compute precision.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
    /// Spoken language (en, fr, de, …), for multilingual models; English-only
    /// (`.en`) models refuse any other. Default: en.
    #[arg(long)]
    language: Option<String>,
    /// One JSON object per file on stdout instead of plain text: `audio`,
    /// `text`, `duration_s`, `elapsed_s`, `tokens`; or `audio` and `error`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// Decode and transcribe one argument (`-` is stdin), ticking `bar` per window.
fn transcribe_one(t: &Transcriber, file: &Path, bar: &ProgressBar) -> Result<Transcript> {
    let pcm = common::load_audio(file)?;
    let name = if file.as_os_str() == "-" {
        Path::new(common::STDIN_NAME)
    } else {
        file
    };
    Ok(t.transcribe_named(&pcm, name, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?)
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        anyhow::bail!("`-` (stdin) can be given only once");
    }
    let device = a.device.open()?;
    common::check_dir_path("--model", &a.model)?;
    let dir = cache::resolve_whisper(&a.model)?;
    let opts = TranscribeOptions {
        language: a.language.clone().unwrap_or_else(|| "en".into()),
        dtype: a.dtype.into(),
    };
    let t0 = std::time::Instant::now();
    let transcriber = Transcriber::load(&dir, &opts, &device)?;
    tracing::info!(
        "loaded {} in {:.2}s",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );

    // Length and position count 30 s windows of the current file; the
    // prefix says which file of how many.
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "{prefix} {bar:30} {pos}/{len} windows {elapsed_precise} eta {eta} {msg}",
    )?);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let many = a.files.len() > 1;
    let mut failures = 0usize;
    for (i, file) in a.files.iter().enumerate() {
        bar.set_prefix(format!("[{}/{}]", i + 1, a.files.len()));
        bar.set_message(file.display().to_string());
        let t = std::time::Instant::now();
        let line = match transcribe_one(&transcriber, file, &bar) {
            Ok(tr) => {
                let secs = t.elapsed().as_secs_f64();
                tracing::info!(
                    "{}: {:.1}s of audio in {:.2}s",
                    file.display(),
                    tr.duration_s,
                    secs
                );
                if a.json {
                    serde_json::json!({
                        "audio": file, "text": tr.text, "duration_s": tr.duration_s,
                        "elapsed_s": secs, "tokens": tr.tokens,
                    })
                    .to_string()
                } else if many {
                    format!("{}\t{}", file.display(), tr.text)
                } else {
                    tr.text
                }
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("error: {e:#}"));
                if !a.json {
                    continue;
                }
                serde_json::json!({"audio": file, "error": format!("{e:#}")}).to_string()
            }
        };
        bar.suspend(|| outln!("{line}"))?;
    }
    bar.finish_and_clear();
    if failures > 0 {
        eprintln!("{failures} of {} file(s) failed", a.files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
