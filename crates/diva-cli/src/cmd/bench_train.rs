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
use diva_train::student::{self, LossWeights};
use serde_json::json;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva bench train                             # the tiny preset on this CPU, by phase
  diva bench train --random-shape paper --device cuda --dtype bf16 --peak-tflops 989")]
pub struct TrainArgs {
    /// Training preset whose shapes and batch are timed (tiny, paper).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Examples per step (default: the preset's micro batch).
    #[arg(long)]
    batch: Option<usize>,
    /// Query count (default: the preset's).
    #[arg(long, alias = "queries")]
    num_queries: Option<usize>,
    /// Transcript length in tokens (alignment targets).
    #[arg(long, default_value_t = 12)]
    transcript_tokens: usize,
    /// Timed steps after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[command(flatten)]
    on: crate::common::RunOn,
    /// Peak dense TFLOP/s of the device in the compute dtype, to report model
    /// FLOP utilisation (e.g. 989 for an H100 SXM in bf16).
    #[arg(long)]
    peak_tflops: Option<f64>,
}

/// The frozen parts a step needs, real or random.
pub struct BenchModels {
    pub whisper: diva_core::models::whisper::WhisperWeights,
    pub llm: diva_core::models::llm::Llm,
    pub prompt: student::PromptEmbeds,
    pub prompt_ids: (Vec<u32>, Vec<u32>),
    pub label: String,
}

pub fn bench_models(
    preset: &TrainConfig,
    preset_name: &str,
    random_shape: Option<&str>,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<BenchModels> {
    Ok(match random_shape {
        Some(name) => {
            let shape = diva_core::models::shapes::shape(name)?;
            let whisper =
                diva_core::models::whisper::WhisperWeights::random(shape.whisper, device)?;
            let llm = diva_core::models::llm::random_llm(shape.llm_config, dtype, device)?;
            let prefix: Vec<u32> = (0..shape.prefix_len as u32).map(|i| 100 + i).collect();
            let suffix: Vec<u32> = (0..shape.suffix_len as u32).map(|i| 200 + i).collect();
            let prompt = student::PromptEmbeds::from_ids(&llm, &prefix, &suffix, true)?;
            BenchModels {
                whisper,
                llm,
                prompt,
                prompt_ids: (prefix, suffix),
                label: format!("random {name} shape"),
            }
        }
        None => {
            let f = diva_train::setup::Frozen::load(&preset.whisper, &preset.llm, device, dtype)?;
            BenchModels {
                whisper: f.whisper,
                llm: f.llm,
                prompt: f.prompt,
                prompt_ids: (f.split.prefix, f.split.suffix),
                label: format!("preset {preset_name}"),
            }
        }
    })
}

pub fn run(a: TrainArgs) -> Result<std::process::ExitCode> {
    let mut cfg = TrainConfig::preset(&a.preset)?;
    if let Some(n) = a.num_queries {
        cfg.num_queries = n;
    }
    let b = a.batch.unwrap_or(cfg.micro_batch);
    let device = diva_core::device::parse_device(&a.on.device)?;
    let dtype: DType = a.on.dtype.into();
    if let Some(name) = &a.on.random_shape {
        if a.num_queries.is_none() {
            cfg.num_queries = diva_core::models::shapes::shape(name)?.num_queries;
        }
    }
    let m = bench_models(
        &cfg,
        &a.preset,
        a.on.random_shape.as_deref(),
        dtype,
        &device,
    )?;
    let encoder = m.whisper.encoder(dtype, &device)?;
    let filters = MelFilters::new(m.whisper.config.num_mel_bins);
    let mels = (0..b)
        .map(|i| {
            let m = audio::log_mel(
                &super::bench_util::chirp(3.0, 300.0 + 50.0 * i as f32),
                &filters,
            );
            Tensor::from_vec(m, (filters.n_mels(), audio::N_FRAMES), &device)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mel = Tensor::stack(&mels, 0)?.to_dtype(dtype)?;
    let mut connector = Connector::init(
        &m.whisper,
        cfg.num_queries,
        m.llm.hidden_size(),
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
        .map(|_| m.llm.embed_ids(&ids)?.squeeze(0))
        .collect::<candle_core::Result<_>>()?;
    let teacher = Tensor::zeros((b, m.llm.hidden_size()), DType::F32, &device)?;

    let phases = [
        "encoder",
        "connector_fwd",
        "llm_fwd",
        "backward",
        "optimizer",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    let mut graph = GraphSize::default();
    for rep in 0..=a.repeat {
        let mut t = Instant::now();
        let mut lap = |i: usize, times: &mut Vec<Vec<f64>>| {
            if rep > 0 {
                times[i].push(t.elapsed().as_secs_f64());
            }
            t = Instant::now();
        };
        // Trainable weights are f32 (master weights); the frozen encoder may not be.
        let states = encoder.forward(&mel)?.to_dtype(DType::F32)?;
        device.synchronize()?;
        lap(0, &mut times);
        let virt = connector.forward(&states, Exec::Autograd)?;
        device.synchronize()?;
        lap(1, &mut times);
        let last_hidden = student::llm_last_hidden(&m.llm, &m.prompt, &virt, Exec::Autograd)?;
        let out = student::StudentOutput {
            last_hidden,
            virtual_tokens: virt,
            reply_hidden: None,
        };
        let l = student::losses(&m.llm, &out, &teacher, &transcripts, LossWeights::default())?;
        l.total.to_scalar::<f32>()?;
        device.synchronize()?;
        lap(2, &mut times);
        if rep == 0 {
            graph = GraphSize::of(&l.total);
        }
        let g = l.total.backward()?;
        device.synchronize()?;
        lap(3, &mut times);
        opt.step(&g, 1e-5)?;
        device.synchronize()?;
        lap(4, &mut times);
    }
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let ms: Vec<f64> = times.iter().map(|v| med(v) * 1e3).collect();
    let step_cached = ms[1..].iter().sum::<f64>();
    let prompt_len = m.prompt_ids.0.len() + cfg.num_queries + m.prompt_ids.1.len();
    eprintln!(
        "train step, {} (N={}, batch {b}, LLM sequence {prompt_len}), median of {}:",
        m.label, cfg.num_queries, a.repeat
    );
    for (p, m) in phases.iter().zip(&ms) {
        eprintln!("  {p:<14} {m:>9.1} ms");
    }
    eprintln!(
        "  samples/s: {:.2} with cached encoder states, {:.2} encoding every clip",
        b as f64 / (step_cached / 1e3),
        b as f64 / ((step_cached + ms[0]) / 1e3)
    );
    eprintln!(
        "  backward graph: {} nodes, {:.1} M gradient elements ({:.0} MB at 4 bytes)",
        graph.nodes,
        graph.grad_elements as f64 / 1e6,
        graph.grad_elements as f64 * 4.0 / 1e6
    );
    let flops = step_flops(&m, cfg.num_queries, prompt_len, b);
    let tflops = flops / (step_cached / 1e3) / 1e12;
    eprintln!(
        "  model FLOPs/step {:.3e} (official-equivalent: full prompt, no prefix cache): {tflops:.2} TFLOP/s{}",
        flops,
        a.peak_tflops
            .map(|p| format!(", MFU {:.1}%", 100.0 * tflops / p))
            .unwrap_or_default()
    );
    let mut report = json!({
        "models": m.label, "device": a.on.device, "dtype": format!("{dtype:?}"),
        "model_flops_per_step": flops, "model_tflops_per_s": tflops,
        "mfu": a.peak_tflops.map(|p| tflops / p),
        "peak_rss_mib": super::bench_util::peak_rss_mib(),
        "preset": a.preset, "num_queries": cfg.num_queries, "batch": b,
        "llm_sequence": prompt_len,
        "samples_per_s_cached_encoder": b as f64 / (step_cached / 1e3),
        "samples_per_s": b as f64 / ((step_cached + ms[0]) / 1e3),
        "backward_graph_nodes": graph.nodes,
        "backward_grad_elements": graph.grad_elements,
    });
    for (p, m) in phases.iter().zip(&ms) {
        report[format!("{p}_ms")] = json!(m);
    }
    println!("{report}");
    Ok(std::process::ExitCode::SUCCESS)
}

/// The size of the graph `backward` walks: its non-leaf nodes and their
/// elements. candle 0.11 gives each node's inputs a zero-filled gradient and
/// adds into it (huggingface/candle#3578), so the element count is the
/// zero-fill and extra add traffic per step; fewer nodes on big tensors is
/// what lowers it.
#[derive(Default)]
struct GraphSize {
    nodes: usize,
    grad_elements: usize,
}

impl GraphSize {
    fn of(loss: &Tensor) -> Self {
        let nodes = loss.sorted_nodes();
        let inner = nodes.iter().filter(|t| !t.is_variable());
        Self {
            nodes: inner.clone().count(),
            grad_elements: inner.map(|t| t.elem_count()).sum(),
        }
    }
}

/// Model FLOPs of one training step with cached encoder states, counted the
/// way the official trainer computes (no prefix cache): matmul FLOPs of the
/// LLM forward and its input-gradient backward over the whole prompt, and of
/// the connector forward and full backward (its weights train).
fn step_flops(m: &BenchModels, n: usize, prompt_len: usize, b: usize) -> f64 {
    let c = &m.llm.config;
    let (h, i) = (c.hidden_size as f64, c.intermediate_size as f64);
    let (q, kv) = (
        (c.num_heads * c.head_dim) as f64,
        (c.num_kv_heads * c.head_dim) as f64,
    );
    let per_token = c.num_layers as f64 * (h * (q + 2.0 * kv) + q * h + 3.0 * h * i);
    let llm = 4.0 * per_token * prompt_len as f64;
    let w = &m.whisper.config;
    let (d, ffn, frames) = (
        w.d_model as f64,
        w.decoder_ffn_dim as f64,
        w.max_source_positions as f64,
    );
    let conn_fwd = 2.0
        * w.decoder_layers as f64
        * (n as f64 * (6.0 * d * d + 2.0 * d * ffn) + frames * 2.0 * d * d)
        + 2.0 * n as f64 * d * h;
    b as f64 * (llm + 3.0 * conn_fwd)
}
