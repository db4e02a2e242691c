//! `diva bench train`: one training step of a preset, timed by phase —
//! encoder (frozen; skipped in training once its states are cached),
//! connector forward, LLM forward, backward (LLM + connector), optimizer —
//! on the preset's real weights and a fixed batch of synthetic clips.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Tensor};
use diva_core::audio::{self, MelFilters};
use diva_core::models::connector::Connector;
use diva_core::models::Exec;
use diva_train::config::TrainConfig;
use diva_train::optim::{AdamW, AdamWParams};
use diva_train::setup::Frozen;
use diva_train::student::{self, LossWeights};
use serde_json::json;

#[derive(clap::Args)]
pub struct TrainArgs {
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Examples per step (default: the preset's micro batch).
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    num_queries: Option<usize>,
    /// Transcript length in tokens (alignment targets).
    #[arg(long, default_value_t = 12)]
    transcript_tokens: usize,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn chirp(seconds: f32, f0: f32) -> Vec<f32> {
    let n = (seconds * 16_000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (f0 + 200.0 * t) * t).sin()
        })
        .collect()
}

pub fn run(a: TrainArgs) -> Result<std::process::ExitCode> {
    let mut cfg = TrainConfig::preset(&a.preset)?;
    if let Some(n) = a.num_queries {
        cfg.num_queries = n;
    }
    let b = a.batch.unwrap_or(cfg.micro_batch);
    let device = diva_core::device::parse_device(&a.device)?;
    let frozen = Frozen::load(&cfg.whisper, &cfg.llm, &device)?;
    let encoder = frozen.whisper.encoder(DType::F32, &device)?;
    let filters = MelFilters::new(frozen.whisper.config.num_mel_bins);
    let mels = (0..b)
        .map(|i| {
            let m = audio::log_mel(&chirp(3.0, 300.0 + 50.0 * i as f32), &filters);
            Tensor::from_vec(m, (filters.n_mels(), audio::N_FRAMES), &device)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mel = Tensor::stack(&mels, 0)?;
    let mut connector = Connector::init(
        &frozen.whisper,
        cfg.num_queries,
        frozen.llm.hidden_size(),
        0,
        DType::F32,
        &device,
    )?;
    let vars: Vec<_> = connector
        .make_trainable()?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut opt = AdamW::new(vars.clone(), AdamWParams::default())?;
    let ids: Vec<u32> = (0..a.transcript_tokens as u32).map(|i| 1000 + i).collect();
    let transcripts: Vec<Tensor> = (0..b)
        .map(|_| frozen.transcript_embeds(&ids))
        .collect::<Result<_>>()?;
    let teacher = Tensor::zeros((b, frozen.llm.hidden_size()), DType::F32, &device)?;

    let phases = [
        "encoder",
        "connector_fwd",
        "llm_fwd",
        "backward",
        "optimizer",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    for rep in 0..=a.repeat {
        let mut t = Instant::now();
        let mut lap = |i: usize, times: &mut Vec<Vec<f64>>| {
            if rep > 0 {
                times[i].push(t.elapsed().as_secs_f64());
            }
            t = Instant::now();
        };
        let states = encoder.forward(&mel)?;
        lap(0, &mut times);
        let virt = connector.forward(&states, Exec::Autograd)?;
        lap(1, &mut times);
        let last_hidden =
            student::llm_last_hidden(&frozen.llm, &frozen.prompt, &virt, Exec::Autograd)?;
        let out = student::StudentOutput {
            last_hidden,
            virtual_tokens: virt,
        };
        let l = student::losses(
            &frozen.llm,
            &out,
            &teacher,
            &transcripts,
            LossWeights::default(),
        )?;
        l.total.to_scalar::<f32>()?;
        lap(2, &mut times);
        let g = l.total.backward()?;
        lap(3, &mut times);
        opt.step(&g, 1e-5)?;
        lap(4, &mut times);
    }
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let ms: Vec<f64> = times.iter().map(|v| med(v) * 1e3).collect();
    let step_cached = ms[1..].iter().sum::<f64>();
    let prompt_len = frozen.split.prefix.len() + cfg.num_queries + frozen.split.suffix.len();
    eprintln!(
        "train step, preset {} (N={}, batch {b}, LLM sequence {prompt_len}), median of {}:",
        a.preset, cfg.num_queries, a.repeat
    );
    for (p, m) in phases.iter().zip(&ms) {
        eprintln!("  {p:<14} {m:>9.1} ms");
    }
    eprintln!(
        "  samples/s: {:.2} with cached encoder states, {:.2} encoding every clip",
        b as f64 / (step_cached / 1e3),
        b as f64 / ((step_cached + ms[0]) / 1e3)
    );
    let mut report = json!({
        "preset": a.preset, "num_queries": cfg.num_queries, "batch": b,
        "llm_sequence": prompt_len,
        "samples_per_s_cached_encoder": b as f64 / (step_cached / 1e3),
        "samples_per_s": b as f64 / ((step_cached + ms[0]) / 1e3),
    });
    for (p, m) in phases.iter().zip(&ms) {
        report[format!("{p}_ms")] = json!(m);
    }
    println!("{report}");
    Ok(std::process::ExitCode::SUCCESS)
}
