//! `diva data import`: turn a speech dataset into a JSONL training manifest
//! (`OUT/manifest.jsonl`) with one of diva-train's importers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use diva_train::data::{
    import_asterisk, import_commonvoice, import_folder, import_hf_parquet, import_librispeech,
    write_manifest, Item, Skipped,
};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Write OUT/manifest.jsonl from a dataset on disk (skipped entries are logged as warnings).
    #[command(subcommand)]
    Import(Source),
}

#[derive(clap::Subcommand)]
pub enum Source {
    /// Mozilla CommonVoice: DIR/clips/* with train/dev/test.tsv.
    #[command(
        after_help = "Examples:\n  diva data import commonvoice --dir cv-corpus/en --out data/cv-en"
    )]
    Commonvoice {
        /// The language directory (holding clips/ and the .tsv files).
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// LibriSpeech: ROOT/<speaker>/<chapter>/*.flac with *.trans.txt.
    #[command(
        after_help = "Examples:\n  diva data import librispeech --root LibriSpeech/dev-clean --out data/ls-dev"
    )]
    Librispeech {
        /// A split directory such as LibriSpeech/dev-clean.
        #[arg(long)]
        root: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// A folder of audio files (wav/flac/mp3/ogg), each with a same-stem .txt transcript.
    #[command(
        after_help = "Examples:\n  diva data import folder --dir recordings --out data/mine"
    )]
    Folder {
        /// The folder holding the audio and .txt files (not searched recursively).
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// Asterisk sound prompts: a core-sounds-en.txt style transcript list and the sounds.
    #[command(after_help = "Examples:
  diva data import asterisk --transcripts sounds/core-sounds-en.txt --sounds sounds/en --out data/asterisk")]
    Asterisk {
        /// Lines `key: transcript`.
        #[arg(long)]
        transcripts: PathBuf,
        /// Directory holding <key>.wav.
        #[arg(long)]
        sounds: PathBuf,
        #[command(flatten)]
        out: Out,
    },
    /// Hugging Face `datasets` parquet files with an `audio` {bytes, path} column: the audio is
    /// extracted to OUT/audio/ (rerunning skips files already there).
    #[command(after_help = "Examples:
  diva data import parquet --files data/train-00000-of-00004.parquet --out data/hf --text-column sentence")]
    Parquet {
        /// The .parquet files (e.g. data/train-00000-of-00004.parquet …).
        #[arg(long, num_args = 1.., required = true)]
        files: Vec<PathBuf>,
        /// Transcript column [default: the first of sentence, text, transcription,
        /// normalized_text, raw_transcription present].
        #[arg(long)]
        text_column: Option<String>,
        #[command(flatten)]
        out: Out,
    },
}

#[derive(clap::Args)]
pub struct Out {
    /// Output directory (created); the manifest is OUT/manifest.jsonl.
    #[arg(long)]
    out: PathBuf,
}

/// An absolute path (not resolving links), so manifest paths stay valid wherever it is read.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    let Cmd::Import(source) = cmd;
    let t0 = std::time::Instant::now();
    let (kind, out, result) = match source {
        Source::Commonvoice { dir, out } => {
            ("commonvoice", out, import_commonvoice(absolute(&dir)?))
        }
        Source::Librispeech { root, out } => {
            ("librispeech", out, import_librispeech(absolute(&root)?))
        }
        Source::Folder { dir, out } => ("folder", out, import_folder(absolute(&dir)?)),
        Source::Asterisk {
            transcripts,
            sounds,
            out,
        } => (
            "asterisk",
            out,
            import_asterisk(absolute(&transcripts)?, absolute(&sounds)?),
        ),
        Source::Parquet {
            files,
            text_column,
            out,
        } => {
            let dir = absolute(&out.out)?;
            (
                "parquet",
                out,
                import_hf_parquet(&files, &dir, text_column.as_deref()),
            )
        }
    };
    let (items, skipped): (Vec<Item>, Vec<Skipped>) = result?;
    let dir = absolute(&out.out)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = dir.join("manifest.jsonl");
    write_manifest(&manifest, &items)?;
    eprintln!(
        "{kind}: {} items, {} skipped -> {} ({:.1}s)",
        items.len(),
        skipped.len(),
        manifest.display(),
        t0.elapsed().as_secs_f64()
    );
    let summary = serde_json::json!({
        "manifest": manifest,
        "items": items.len(),
        "skipped": skipped.len(),
        "skipped_first": skipped.iter().take(20).map(|s| s.to_string()).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if items.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
