//! `diva bench chat`: what a user of `diva chat` waits for — time to first
//! token for a 5 s and a 30 s clip (log-mel → encoder → connector → prefill
//! → first token), greedy decode tokens/s over a fixed number of tokens
//! (end-of-turn ignored, like the PyTorch reference loop), the encoder's
//! real-time factor, and peak memory. Inference weights as `diva chat` loads
//! them (`--llm-weights`, the same flag and default). `--against cascade`
//! times a trained model beside faster-whisper + llama.cpp instead
//! (`bench_cascade`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, IndexOp, Tensor};
use diva_core::audio::{self, MelFilters};
use diva_core::models::connector::Connector;
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::models::whisper::WhisperWeights;
use diva_core::models::Exec;
use diva_core::weights::cache;
use diva_train::config::TrainConfig;
use serde_json::json;

use super::bench_util::{median, peak_rss_mib};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva bench chat                              # time to first token (5 s, 30 s) and decode tok/s
  diva bench chat --random-shape paper --device cuda --dtype bf16
  diva bench chat --against cascade --threads 1 --repeat 5   # the shipped model vs faster-whisper + llama.cpp")]
pub struct ChatArgs {
    /// Preset whose model shapes are timed (tiny, paper).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Query count (default: the preset's).
    #[arg(long, alias = "queries")]
    num_queries: Option<usize>,
    /// Tokens decoded per reply (decode speed).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Timed rounds after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[command(flatten)]
    on: crate::common::RunOn,
    #[command(flatten)]
    llm_weights: crate::common::LlmWeightsArg,
    /// Time `diva chat` with a trained model against a peer on the same
    /// clips and cores: `cascade` is faster-whisper's transcript, then
    /// llama.cpp's prefill and first token (tools/reference/bench_cascade.py).
    #[arg(long, value_enum, conflicts_with_all = ["random_shape", "num_queries"])]
    against: Option<ChatPeer>,
    /// With --against: the DiVA checkpoint directory to time (default: the
    /// shipped model).
    #[arg(long, requires = "against")]
    model: Option<PathBuf>,
    /// With --against: threads for diva and for the peer (default: every core).
    #[arg(long, requires = "against")]
    threads: Option<usize>,
    /// With --against: faster-whisper's compute type (repeatable; float32
    /// is the precision of diva's encoder, int8 faster-whisper's fastest).
    #[arg(long, requires = "against", default_value = "float32")]
    peer_compute_type: Vec<String>,
    /// With --against: faster-whisper's beam size (1, greedy, is its
    /// fastest; its own default is 5).
    #[arg(long, requires = "against", default_value_t = 1)]
    peer_beam_size: usize,
    /// With --against: Python with faster-whisper and llama-cpp-python
    /// (default: the reference venv).
    #[arg(long, requires = "against")]
    python: Option<PathBuf>,
    /// With --against: diva's encoder window, as `diva chat --audio-ctx`
    /// (`full`, `fit` or encoder frames).
    #[arg(
        long,
        requires = "against",
        default_value = "full",
        value_name = "full|fit|FRAMES"
    )]
    audio_ctx: diva_core::audio::AudioCtx,
}

/// A peer of `diva bench chat`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatPeer {
    Cascade,
}

pub fn run(a: ChatArgs) -> Result<std::process::ExitCode> {
    if a.against == Some(ChatPeer::Cascade) {
        return super::bench_cascade::run(super::bench_cascade::CascadeArgs {
            model: a.model,
            threads: a.threads,
            repeat: a.repeat,
            python: a.python,
            peer_compute_types: a.peer_compute_type,
            peer_beam_size: a.peer_beam_size,
            llm_weights: a.llm_weights,
            device: a.on.device,
            audio_ctx: a.audio_ctx,
        });
    }
    let cfg = TrainConfig::preset(&a.preset)?;
    let device = diva_core::device::parse_device(&a.on.device)?;
    let dtype: DType = a.on.dtype.into();
    // As `diva chat` loads it (random shapes: dense in --dtype).
    let mode = match &a.on.random_shape {
        Some(_) => WeightMode::Dense(dtype),
        None => a
            .llm_weights
            .get()
            .mode(&cache::resolve_llm(&cfg.llm)?, &device, dtype)?,
    };
    // As `diva chat` decides (before any candle op): one CPU pool unless
    // quantized kernels will run.
    match &a.on.random_shape {
        Some(_) => diva_core::cpu_pools::use_one_pool_for_dense_models(),
        None => diva_core::cpu_pools::use_one_pool_unless_quantized(
            &cache::resolve_llm(&cfg.llm)?,
            mode,
        )?,
    }
    let (whisper, llm, split, n, label) = match &a.on.random_shape {
        Some(name) => {
            let shape = diva_core::models::shapes::shape(name)?;
            let n = a.num_queries.unwrap_or(shape.num_queries);
            let split = PromptSplit {
                prefix: (0..shape.prefix_len as u32).map(|i| 100 + i).collect(),
                suffix: (0..shape.suffix_len as u32).map(|i| 200 + i).collect(),
                between_turns: vec![],
            };
            (
                WhisperWeights::random(shape.whisper.clone(), &device)?,
                diva_core::models::llm::random_llm(shape.llm_config, dtype, &device)?,
                split,
                n,
                format!("random {name} shape"),
            )
        }
        None => {
            let whisper = WhisperWeights::load_dir(&cache::resolve_whisper(&cfg.whisper)?)?;
            let llm_path = cache::resolve_llm(&cfg.llm)?;
            let llm = load_llm(&llm_path, mode, &device)?;
            let tokenizer = diva_core::text::LlmTokenizer::from_path(&llm_path)?;
            let split = PromptSplit::from_template(&tokenizer, None)?;
            let n = a.num_queries.unwrap_or(cfg.num_queries);
            (whisper, llm, split, n, format!("preset {}", a.preset))
        }
    };
    let encoder = whisper.encoder(dtype, &device)?;
    let connector = Connector::init(&whisper, n, llm.hidden_size(), 0, dtype, &device)?;
    let filters = MelFilters::new(whisper.config.num_mel_bins);

    let mut report = json!({
        "models": label, "device": a.on.device, "dtype": format!("{dtype:?}"),
        "preset": a.preset, "num_queries": n, "gen_tokens": a.gen_tokens,
    });
    // As `diva chat`: the template's constant prefix is computed once, at load.
    let prefix_kv = split.prefix_cache(&llm)?;
    report["cached_prefix_tokens"] = json!(prefix_kv.len());
    let mut encoder_ms = Vec::new();
    let mut decode_rates = Vec::new();
    eprintln!("chat, {label} (N={n}), median of {}:", a.repeat);
    report["llm_weights"] = json!(format!("{mode:?}"));
    // On a pool worker, as `diva chat` answers (see `cpu_pools::on_pool`).
    diva_core::cpu_pools::on_pool(|| -> Result<()> {
        for seconds in [5.0f32, 30.0] {
            let pcm = super::bench_util::chirp(seconds, 300.0);
            let mut ttft = Vec::new();
            let mut parts = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
            for rep in 0..=a.repeat {
                let t0 = Instant::now();
                let mel = audio::log_mel(&pcm, &filters);
                let mel = Tensor::from_vec(mel, (1, filters.n_mels(), audio::N_FRAMES), &device)?
                    .to_dtype(dtype)?;
                let t1 = Instant::now();
                let states = encoder.forward(&mel)?;
                device.synchronize()?;
                let t2 = Instant::now();
                let virt = connector.forward(&states, Exec::Fused)?;
                device.synchronize()?;
                let t3 = Instant::now();
                let prompt = split.after_prefix(&llm, &virt)?;
                let mut kv = prefix_kv.clone();
                let h = llm.forward_embeds(&prompt, None, Some(&mut kv), Exec::Fused)?;
                let logits = llm.logits(&h.i((.., h.dim(1)? - 1..))?)?;
                let mut next = logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
                let t4 = Instant::now();
                // Greedy decode of a fixed length (no early stop), one token per step.
                for _ in 1..a.gen_tokens {
                    let x = llm.embed(&Tensor::new(&[[next]], &device)?)?;
                    let h = llm.forward_embeds(&x, None, Some(&mut kv), Exec::Fused)?;
                    next = llm
                        .logits(&h)?
                        .flatten_all()?
                        .argmax(0)?
                        .to_scalar::<u32>()?;
                }
                let t5 = Instant::now();
                if rep == 0 {
                    continue; // warm-up
                }
                ttft.push((t4 - t0).as_secs_f64());
                for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3].iter().enumerate() {
                    parts[i].push(d.as_secs_f64());
                }
                encoder_ms.push((t2 - t1).as_secs_f64() * 1e3);
                decode_rates.push((a.gen_tokens - 1) as f64 / (t5 - t4).as_secs_f64());
            }
            let key = format!("{}s", seconds as u32);
            let ms = |v: &Vec<f64>| median(v.clone()) * 1e3;
            eprintln!(
                "  {seconds:>4} s clip: time to first token {:>7.1} ms (mel {:.1}, encoder {:.1}, connector {:.1}, prefill+first token {:.1})",
                median(ttft.clone()) * 1e3,
                ms(&parts[0]),
                ms(&parts[1]),
                ms(&parts[2]),
                ms(&parts[3])
            );
            report[format!("ttft_ms_{key}")] = json!(median(ttft) * 1e3);
            report[format!("mel_ms_{key}")] = json!(ms(&parts[0]));
            report[format!("encoder_ms_{key}")] = json!(ms(&parts[1]));
            report[format!("connector_ms_{key}")] = json!(ms(&parts[2]));
            report[format!("prefill_ms_{key}")] = json!(ms(&parts[3]));
        }
        Ok(())
    })?;
    let enc = median(encoder_ms);
    let decode = median(decode_rates);
    // The encoder always runs one 30 s window.
    report["encoder_rtf"] = json!(enc / 30_000.0);
    report["decode_tok_s"] = json!(decode);
    report["peak_rss_mib"] = json!(peak_rss_mib());
    eprintln!(
        "  decode {decode:.1} tok/s (greedy, {} tokens); encoder real-time factor {:.4}; peak RSS {:.0} MiB",
        a.gen_tokens,
        enc / 30_000.0,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    println!("{report}");
    Ok(std::process::ExitCode::SUCCESS)
}
