//! `diva train`: distil a connector from (audio, transcript) pairs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use diva_train::config::{TrainConfig, PRESETS};
use diva_train::trainer::{train, TrainOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A preset: `tiny` (tiny.en + SmolLM2-135M, CPU-sized) or `paper`
    /// (whisper-large-v3 + Llama-3-8B-Instruct, the official recipe).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// A TOML file whose fields override the preset (see `--print-config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training manifest (JSONL: audio, text).
    #[arg(long)]
    data: PathBuf,
    /// Held-out manifest for validation every `val_every` steps.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Run directory: checkpoints, metrics.jsonl, and the latest model.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Shared encoder/teacher caches (default: $DIVA_HOME/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    micro_batch: Option<usize>,
    #[arg(long)]
    num_queries: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    val_every: Option<usize>,
    /// Where to train: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype of the frozen encoder and LLM (default: f32 on CPU,
    /// bf16 on CUDA); trainable weights and AdamW state are always f32.
    #[arg(long, value_enum)]
    dtype: Option<crate::common::Precision>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn effective_config(a: &Args) -> Result<TrainConfig> {
    if !PRESETS.contains(&a.preset.as_str()) {
        anyhow::bail!(
            "unknown preset `{}`: choose one of {}",
            a.preset,
            PRESETS.join(", ")
        );
    }
    let mut c = TrainConfig::load(&a.preset, a.config.as_deref())?;
    macro_rules! over {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { c.$f = v; } )* };
    }
    over!(
        steps,
        lr,
        batch_size,
        micro_batch,
        num_queries,
        seed,
        checkpoint_every,
        val_every
    );
    if a.batch_size.is_some() && a.micro_batch.is_none() && c.batch_size < c.micro_batch {
        c.micro_batch = c.batch_size;
    }
    c.validate()?;
    Ok(c)
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = effective_config(&a)?;
    if a.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let device = diva_core::device::parse_device(&a.device)?;
    let dtype: candle_core::DType = match a.dtype {
        Some(p) => p.into(),
        None if device.is_cpu() => candle_core::DType::F32,
        None => candle_core::DType::BF16,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without saving");
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)"
            );
        })?;
    }
    let summary = train(TrainOptions {
        config,
        train: a.data,
        val: a.val,
        out: a.out.clone(),
        resume: a.resume,
        cache_dir: a.cache_dir,
        stop,
        device,
        dtype,
    })?;
    eprintln!(
        "{} after {} steps ({} examples, {} skipped) at {:.2} samples/s; model in {}",
        if summary.stopped_early {
            "stopped"
        } else {
            "done"
        },
        summary.steps,
        summary.train_examples,
        summary.skipped,
        summary.samples_per_second,
        a.out.display()
    );
    if let Some(v) = &summary.validation {
        eprintln!("validation: {}", v.summary());
    }
    Ok(ExitCode::SUCCESS)
}
