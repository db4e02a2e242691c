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
    /// LLM prompt-processing and decode tokens/s, side by side with transformers.
    Llm(LlmArgs),
    /// One training step of a preset, timed by phase.
    Train(super::bench_train::TrainArgs),
    /// Spoken-chat latency: time to first token (5 s, 30 s clips), decode tok/s.
    Chat(super::bench_chat::ChatArgs),
    /// The DiVA parity fixture on a device/dtype vs the PyTorch reference.
    Parity(super::bench_parity::ParityArgs),
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva bench llm                               # SmolLM2, prompt 128, decode 64, vs transformers and llama.cpp
  diva bench llm --against llama.cpp --threads 1 --repeat 5
  diva bench llm --llm model.gguf --no-reference --repeat 5
  diva bench llm --against llama.cpp --engine stored --engine f32-blocks --prompt-tokens 512")]
pub struct LlmArgs {
    /// The LLM: a fetched name, a .gguf file, an HF directory or a hub id.
    #[arg(long, default_value = cache::DEFAULT_LLM)]
    llm: String,
    /// Prompt length in tokens (prompt-processing speed).
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens decoded after the prompt (decode speed).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Interleaved rounds (every engine once per round, each after its
    /// own warm-up); medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Threads for diva and for the peers (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// The peers to run side by side (repeatable; default both): the same
    /// GGUF file, threads and prompt.
    #[arg(long, value_enum)]
    against: Vec<LlmPeer>,
    /// Python with transformers / llama-cpp-python for the side-by-side run
    /// (default: the reference venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the peers.
    #[arg(long, conflicts_with = "against")]
    no_reference: bool,
    /// diva's weight modes to time (repeatable; default all): `f32` dense,
    /// `f32-blocks` (the exact product on the stored blocks, `--llm-weights
    /// f32`), `stored` (`--llm-weights stored`), `q8_0` and `q4_0`
    /// (re-quantized).
    #[arg(long = "engine", value_enum)]
    engines: Vec<LlmEngine>,
}

/// One of diva's weight modes in `diva bench llm`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmEngine {
    F32,
    F32Blocks,
    Stored,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

/// A peer of `diva bench llm`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmPeer {
    Transformers,
    #[value(name = "llama.cpp")]
    LlamaCpp,
}

impl LlmPeer {
    /// The engine's name in `tools/reference/bench_llm.py`.
    fn engine(self) -> &'static str {
        match self {
            LlmPeer::Transformers => "transformers",
            LlmPeer::LlamaCpp => "llama_cpp",
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  diva bench frontend                          # 30 s of chirps, tiny.en, vs faster-whisper
  diva bench frontend --model base --audio speech.wav --dtype f16")]
pub struct FrontendArgs {
    /// The Whisper model: a fetched name, an HF directory or a hub id.
    #[arg(long, default_value = cache::DEFAULT_WHISPER)]
    model: String,
    /// Clip to use (tiled to 30 s). Default: 30 s of synthetic chirps.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Timed rounds after one warm-up; the median is reported.
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Compute dtype of the encoder.
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
        match super::bench_util::reference_python(a.python) {
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

/// Prefill `n` tokens then `gen` greedy steps (EOS ignored); returns
/// (prompt tok/s, decode tok/s), medians over `repeat`.
fn time_llm(
    llm: &diva_core::models::llm::Llm,
    prompt: &[u32],
    gen: usize,
    repeat: usize,
) -> Result<(f64, f64)> {
    use candle_core::Tensor;
    use diva_core::models::Exec;
    let dev = llm.device.clone();
    let mut pp = Vec::new();
    let mut dec = Vec::new();
    for _ in 0..repeat + 1 {
        let mut cache = llm.new_cache();
        let t0 = Instant::now();
        let x = llm.embed_ids(prompt)?;
        let h = llm.forward_embeds(&x, None, Some(&mut cache), Exec::Fused)?;
        let mut next = llm
            .logits(&h.narrow(1, prompt.len() - 1, 1)?)?
            .flatten_all()?
            .argmax(0)?
            .to_scalar::<u32>()?;
        pp.push(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        for _ in 1..gen {
            let x = llm.embed(&Tensor::new(&[[next]], &dev)?)?;
            let h = llm.forward_embeds(&x, None, Some(&mut cache), Exec::Fused)?;
            next = llm
                .logits(&h)?
                .flatten_all()?
                .argmax(0)?
                .to_scalar::<u32>()?;
        }
        dec.push(t1.elapsed().as_secs_f64());
    }
    // The first run is a warm-up.
    let med = |mut v: Vec<f64>| {
        v.remove(0);
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Ok((prompt.len() as f64 / med(pp), (gen - 1) as f64 / med(dec)))
}

fn llm_bench(a: LlmArgs) -> Result<ExitCode> {
    use candle_core::quantized::GgmlDType;
    use diva_core::models::llm::{load_llm, WeightMode};
    if a.repeat == 0 {
        bail!("--repeat 0: at least one round is needed");
    }
    let threads = crate::common::set_threads(a.threads)?;
    let path = cache::resolve_llm(&a.llm)?;
    let tok = diva_core::text::LlmTokenizer::from_path(&path)?;
    const TEXT: &str = "The history of speech recognition goes back to the 1950s, when researchers at Bell Labs built a system that could recognise spoken digits from a single speaker. ";
    let base = tok.encode(TEXT, false)?;
    let prompt: Vec<u32> = base.iter().copied().cycle().take(a.prompt_tokens).collect();
    let mut engines = Vec::new();
    for (engine, name, mode) in [
        (
            LlmEngine::F32,
            "diva f32 (dequantized)",
            WeightMode::Dense(candle_core::DType::F32),
        ),
        (
            LlmEngine::F32Blocks,
            "diva f32 on the stored blocks",
            WeightMode::StoredF32,
        ),
        (
            LlmEngine::Stored,
            "diva as stored (GGUF)",
            WeightMode::Quantized,
        ),
        (
            LlmEngine::Q8_0,
            "diva Q8_0 kernels",
            WeightMode::Requantized(GgmlDType::Q8_0),
        ),
        (
            LlmEngine::Q4_0,
            "diva Q4_0 kernels",
            WeightMode::Requantized(GgmlDType::Q4_0),
        ),
    ] {
        if !a.engines.is_empty() && !a.engines.contains(&engine) {
            continue;
        }
        match load_llm(&path, mode, &Device::Cpu) {
            Ok(l) => engines.push((name, l)),
            Err(e) => eprintln!("{name:<34}  skipped: {e}"),
        }
    }
    let peers: Vec<LlmPeer> = if a.no_reference {
        Vec::new()
    } else if a.against.is_empty() {
        vec![LlmPeer::Transformers, LlmPeer::LlamaCpp]
    } else {
        a.against.clone()
    };
    let python = if peers.is_empty() {
        None
    } else {
        match super::bench_util::reference_python(a.python.clone()) {
            None => {
                eprintln!("(peers skipped: run tools/reference/setup-venv or pass --python)");
                None
            }
            Some(_) if !path.is_file() => {
                eprintln!("(peers need a .gguf model)");
                None
            }
            py => py,
        }
    };
    // Interleaved rounds: every engine once per round, so drift of this
    // machine lands on all of them alike.
    let mut ours: Vec<Vec<(f64, f64)>> = vec![Vec::new(); engines.len()];
    let mut theirs: Vec<Vec<serde_json::Value>> = vec![Vec::new(); peers.len()];
    for round in 0..a.repeat {
        eprintln!("round {}/{}", round + 1, a.repeat);
        for (i, (_, llm)) in engines.iter().enumerate() {
            ours[i].push(diva_core::cpu_pools::on_pool(|| {
                time_llm(llm, &prompt, a.gen_tokens, 1)
            })?);
        }
        if let Some(py) = &python {
            let mut cmd = Command::new(py);
            cmd.args(["tools/reference/bench_llm.py", "--json", "--repeat", "1"])
                .arg("--gguf")
                .arg(&path)
                .args(["--threads", &threads.to_string()])
                .args(["--prompt-tokens", &a.prompt_tokens.to_string()])
                .args(["--gen-tokens", &a.gen_tokens.to_string()]);
            for p in &peers {
                cmd.args(["--engine", p.engine()]);
            }
            let out = cmd
                .output()
                .with_context(|| format!("cannot run {}", py.display()))?;
            if !out.status.success() {
                bail!(
                    "reference benchmark failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let got: serde_json::Value = serde_json::from_slice(&out.stdout)
                .context("reference benchmark printed invalid JSON")?;
            for (i, r) in got.as_array().into_iter().flatten().enumerate() {
                if let Some(v) = theirs.get_mut(i) {
                    v.push(r.clone());
                }
            }
        }
    }
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    eprintln!(
        "{:<34}{:>14}{:>14}   ({threads} threads, medians of {} rounds)",
        "engine", "prompt tok/s", "decode tok/s", a.repeat
    );
    let mut rows = Vec::new();
    for ((name, _), r) in engines.iter().zip(&ours) {
        let pp = median(r.iter().map(|x| x.0).collect());
        let dec = median(r.iter().map(|x| x.1).collect());
        eprintln!("{name:<34}{pp:>14.1}{dec:>14.1}");
        rows.push(json!({
            "engine": name, "prompt_tok_s": pp, "decode_tok_s": dec,
            "rounds": r.iter().map(|x| json!({"prompt_tok_s": x.0, "decode_tok_s": x.1})).collect::<Vec<_>>(),
        }));
    }
    let mut report = json!({
        "model": path, "threads": threads, "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens, "rounds": a.repeat, "diva": rows,
    });
    let mut refs = Vec::new();
    let mut ratios = serde_json::Map::new();
    // The two modes an inference command loads (`--llm-weights stored`
    // and `f32`/`auto`), each set against every peer.
    let med = |name: &str| {
        ours.iter()
            .zip(&engines)
            .find(|(_, (n, _))| *n == name)
            .map(|(r, _)| {
                (
                    median(r.iter().map(|x| x.0).collect()),
                    median(r.iter().map(|x| x.1).collect()),
                )
            })
    };
    let stored = med("diva as stored (GGUF)");
    let f32_blocks = med("diva f32 on the stored blocks");
    let mut ratios_f32 = serde_json::Map::new();
    for (p, runs) in peers.iter().zip(&theirs) {
        let Some(first) = runs.first() else { continue };
        let label = format!(
            "{} ({})",
            first["engine"].as_str().unwrap_or("?"),
            first["dtype"].as_str().unwrap_or("")
        );
        let pps: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["prompt_tok_s"].as_f64())
            .collect();
        let decs: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["decode_tok_s"].as_f64())
            .collect();
        if pps.is_empty() || decs.is_empty() {
            eprintln!(
                "{label:<34}  unavailable: {}",
                first["error"].as_str().unwrap_or("?")
            );
            refs.push(first.clone());
            continue;
        }
        let (pp, dec) = (median(pps.clone()), median(decs.clone()));
        eprintln!("{label:<34}{pp:>14.1}{dec:>14.1}");
        let mut r = first.clone();
        r["prompt_tok_s"] = json!(pp);
        r["decode_tok_s"] = json!(dec);
        r["rounds"] = json!(pps
            .iter()
            .zip(&decs)
            .map(|(a, b)| json!({"prompt_tok_s": a, "decode_tok_s": b}))
            .collect::<Vec<_>>());
        refs.push(r);
        for (label, ours, into) in [
            ("as stored", stored, &mut ratios),
            ("f32 on the blocks", f32_blocks, &mut ratios_f32),
        ] {
            if let Some((spp, sdec)) = ours {
                eprintln!(
                    "  diva {label} / {}: prompt {:.2}x, decode {:.2}x",
                    p.engine(),
                    spp / pp,
                    sdec / dec
                );
                into.insert(
                    p.engine().into(),
                    json!({"prompt": spp / pp, "decode": sdec / dec}),
                );
            }
        }
    }
    if !peers.is_empty() {
        report["reference"] = json!(refs);
        report["diva_as_stored_over_peer"] = json!(ratios);
        report["diva_f32_blocks_over_peer"] = json!(ratios_f32);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Frontend(a) => frontend(a),
        Cmd::Llm(a) => llm_bench(a),
        Cmd::Train(a) => super::bench_train::run(a),
        Cmd::Chat(a) => super::bench_chat::run(a),
        Cmd::Parity(a) => super::bench_parity::run(a),
    }
}
