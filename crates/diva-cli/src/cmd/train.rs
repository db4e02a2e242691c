//! `diva train`: distil a connector from (audio, transcript) pairs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use diva_train::config::{TrainConfig, PRESETS};
use diva_train::trainer::{train, TrainOptions};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva train --data corpus/train.jsonl --val corpus/val.jsonl --out runs/tiny
  diva train --config configs/tiny-1000.toml --data corpus/train.jsonl --out runs/t1000 --resume
  diva train --preset paper --print-config > paper.toml")]
pub struct Args {
    /// A preset: `tiny` (tiny.en + SmolLM2-135M, CPU-sized) or `paper`
    /// (whisper-large-v3 + Llama-3-8B-Instruct, the official recipe).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// A TOML file whose fields override the preset (see `--print-config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training manifest (JSONL: audio, text). Required unless --print-config.
    #[arg(long, required_unless_present = "print_config")]
    data: Option<PathBuf>,
    /// Held-out manifest for validation every `val_every` steps.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Run directory: checkpoints, metrics.jsonl, and the latest model.
    /// Required unless --print-config.
    #[arg(long, required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Shared encoder/teacher caches (default: $DIVA_HOME/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Optimizer steps (config field `steps`).
    #[arg(long)]
    steps: Option<usize>,
    /// Peak learning rate after warmup, cosine-decayed (config field `lr`).
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per optimizer step (config field `batch_size`); also lowers
    /// --micro-batch to it when that is not given.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Examples per forward/backward pass; --batch-size must be a multiple
    /// (gradient accumulation) (config field `micro_batch`).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Learned queries N: virtual tokens per clip (config field `num_queries`).
    #[arg(long)]
    num_queries: Option<usize>,
    /// Seed of the initialisation and the data order (config field `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Save a checkpoint every this many steps, and at the end (config field
    /// `checkpoint_every`).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Validate on --val every this many steps; 0: only at the end (config
    /// field `val_every`).
    #[arg(long)]
    val_every: Option<usize>,
    /// Refuse to train when more than this share of a manifest's entries is
    /// unusable; 1 trains on whatever is usable (config field
    /// `max_unusable_share`, default 0.05).
    #[arg(long)]
    max_unusable_share: Option<f64>,
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
        val_every,
        max_unusable_share
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
    // clap requires both unless --print-config.
    let (Some(data), Some(out)) = (a.data, a.out) else {
        anyhow::bail!("--data and --out are required to train");
    };
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
        train: data,
        val: a.val,
        out: out.clone(),
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
        out.display()
    );
    if let Some(v) = &summary.validation {
        eprintln!("validation: {}", v.summary());
    }
    Ok(ExitCode::SUCCESS)
}
