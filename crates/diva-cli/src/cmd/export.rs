//! `diva export`: write a DiVA checkpoint in the full official layout, which
//! the official PyTorch loader reads with a strict `load_state_dict`.
//! Compact checkpoints (diva's own, without the unused Whisper token table)
//! get the table restored from their reference encoder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::whisper::WhisperWeights;
use diva_core::weights::cache;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva export --model runs/tiny --out exported/tiny
  diva export --model runs/tiny --out exported/tiny-f16 --f16")]
pub struct Args {
    /// The DiVA checkpoint directory to export.
    #[arg(long)]
    model: PathBuf,
    /// Output directory (created; files are written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Leave out the Whisper token table (diva loads it either way; the
    /// official strict loader needs it). For models diva ships itself.
    #[arg(long)]
    compact: bool,
    /// Store tensors in f16 instead of f32.
    #[arg(long)]
    f16: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut cfg = DivaConfig::read(&a.model)?;
    let enc_dir = match DivaConfig::local_reference(&a.model, &cfg.reference_encoder) {
        Some(p) => {
            // Relative references would break once the files move: make them absolute.
            let abs = std::fs::canonicalize(&p)
                .with_context(|| format!("cannot resolve {}", p.display()))?;
            cfg.reference_encoder = abs.display().to_string();
            abs
        }
        None => cache::resolve_whisper(&cfg.reference_encoder)?,
    };
    if let Some(p) = DivaConfig::local_reference(&a.model, &cfg.reference_decoder) {
        cfg.reference_decoder = std::fs::canonicalize(&p)?.display().to_string();
    }
    let whisper = WhisperWeights::load_dir(&enc_dir)?;
    let connector =
        checkpoint::load_connector(&a.model, &whisper.config, DType::F32, &Device::Cpu)?;
    let table = whisper
        .tensors
        .get("decoder.embed_tokens.weight")
        .context("the reference encoder has no decoder token table to restore")?;
    let dtype = if a.f16 { DType::F16 } else { DType::F32 };
    if a.compact {
        checkpoint::save_as(&a.out, &connector, &cfg, None, dtype)?;
        eprintln!(
            "wrote {} (compact: no token table; `diva export` without --compact restores it)",
            a.out.join("model.safetensors").display()
        );
    } else {
        checkpoint::save_as(&a.out, &connector, &cfg, Some(table), dtype)?;
        eprintln!(
            "wrote {} (official layout, strict-loadable)",
            a.out.join("model.safetensors").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
