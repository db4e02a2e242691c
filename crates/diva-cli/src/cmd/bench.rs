//! `diva bench …`: speed measurements. JSON on stdout, a table on stderr.
//!
//! `frontend` times the log-mel of 30 s of audio and the Whisper encoder on
//! one window, and — when the reference Python environment exists — runs
//! faster-whisper's feature extractor and CTranslate2 encoder on the same clip
//! in the same run, so the ratio compares like with like on this machine.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use diva_core::audio::{self, MelFilters};
use diva_core::generate::{TranscribeOptions, Transcriber};
use diva_core::weights::cache;
use serde_json::json;

use crate::common::Precision;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Log-mel (30 s) and encoder timings, side by side with faster-whisper.
    Frontend(FrontendArgs),
}

#[derive(clap::Args)]
pub struct FrontendArgs {
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    model: String,
    /// Clip to use (tiled to 30 s). Default: 30 s of synthetic chirps.
    #[arg(long)]
    audio: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
    /// Python with faster-whisper for the side-by-side run
    /// (default: $DIVA_REF_VENV or ~/.cache/diva/venv-ref, if present).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the faster-whisper side.
    #[arg(long)]
    no_reference: bool,
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2] * 1e3
}

fn time<F: FnMut() -> Result<()>>(repeat: usize, mut f: F) -> Result<f64> {
    f()?; // warm-up
    let mut v = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median_ms(v))
}

fn thirty_seconds(path: Option<&PathBuf>) -> Result<Vec<f32>> {
    let mut pcm = match path {
        Some(p) => audio::load::load_pcm_16k(p)?,
        None => (0..audio::N_SAMPLES)
            .map(|i| {
                let t = i as f32 / audio::SAMPLE_RATE as f32;
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 150.0 * (t % 2.0)) * t).sin()
            })
            .collect(),
    };
    let base = pcm.clone();
    while pcm.len() < audio::N_SAMPLES {
        pcm.extend_from_slice(&base[..base.len().min(audio::N_SAMPLES - pcm.len())]);
    }
    pcm.truncate(audio::N_SAMPLES);
    Ok(pcm)
}

fn reference_python(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let venv = std::env::var_os("DIVA_REF_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache::diva_home().join("venv-ref"));
        let py = venv.join("bin/python");
        py.is_file().then_some(py)
    })
}

fn frontend(a: FrontendArgs) -> Result<ExitCode> {
    let dir = cache::resolve_whisper(&a.model)?;
    let opts = TranscribeOptions {
        dtype: a.dtype.into(),
        ..Default::default()
    };
    let tr = Transcriber::load(&dir, &opts, &Device::Cpu)?;
    let pcm = thirty_seconds(a.audio.as_ref())?;
    let filters = MelFilters::new(tr.n_mels());
    let mel_ms = time(a.repeat, || {
        std::hint::black_box(audio::log_mel(&pcm, &filters));
        Ok(())
    })?;
    let mel = tr.mel_tensor(&pcm)?;
    let encoder_ms = time(a.repeat, || {
        std::hint::black_box(tr.encoder.forward(&mel)?);
        Ok(())
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = json!({
        "model": dir, "repeat": a.repeat, "threads": threads, "dtype": format!("{:?}", a.dtype),
        "diva": {"mel_ms": mel_ms, "encoder_ms": encoder_ms},
    });
    eprintln!(
        "{:<28}{:>12}{:>14}",
        "30 s window", "log-mel ms", "encoder ms"
    );
    eprintln!("{:<28}{:>12.2}{:>14.1}", "diva", mel_ms, encoder_ms);

    if !a.no_reference {
        match reference_python(a.python) {
            None => eprintln!(
                "(faster-whisper side skipped: run tools/reference/setup-venv or pass --python)"
            ),
            Some(py) => {
                let script = PathBuf::from("tools/reference/bench_faster_whisper.py");
                if !script.is_file() {
                    bail!(
                        "{} not found: run `diva bench` from the repository root",
                        script.display()
                    );
                }
                let mut cmd = Command::new(&py);
                cmd.arg(&script)
                    .arg("--model")
                    .arg(&dir)
                    .arg("--repeat")
                    .arg(a.repeat.to_string())
                    .arg("--json");
                if let Some(p) = &a.audio {
                    cmd.arg("--audio").arg(p);
                }
                let out = cmd
                    .output()
                    .with_context(|| format!("cannot run {}", py.display()))?;
                if !out.status.success() {
                    bail!(
                        "faster-whisper benchmark failed:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let fw: serde_json::Value = serde_json::from_slice(&out.stdout)
                    .context("faster-whisper benchmark printed invalid JSON")?;
                let (fm, fe) = (
                    fw["mel_ms"].as_f64().unwrap_or(f64::NAN),
                    fw["encoder_ms"].as_f64().unwrap_or(f64::NAN),
                );
                eprintln!("{:<28}{:>12.2}{:>14.1}", "faster-whisper (CT2)", fm, fe);
                eprintln!(
                    "{:<28}{:>11.2}x{:>13.2}x",
                    "speed-up (ref / diva)",
                    fm / mel_ms,
                    fe / encoder_ms
                );
                report["faster_whisper"] = fw;
                report["speedup"] = json!({"mel": fm / mel_ms, "encoder": fe / encoder_ms});
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Frontend(a) => frontend(a),
    }
}
