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
  diva bench llm                               # SmolLM2, prompt 128 and decode 64 tokens, vs transformers
  diva bench llm --llm model.gguf --no-reference --repeat 5")]
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
    /// Timed rounds after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Python with transformers for the side-by-side run (default: the reference venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the transformers side.
    #[arg(long)]
    no_reference: bool,
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

fn reference_python(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let venv = std::env::var_os("DIVA_REF_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache::diva_home().join("venv-ref"));
        let py = venv.join("bin/python");
        py.is_file().then_some(py)
    })
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
        match reference_python(a.python) {
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
    let path = cache::resolve_llm(&a.llm)?;
    let tok = diva_core::text::LlmTokenizer::from_path(&path)?;
    const TEXT: &str = "The history of speech recognition goes back to the 1950s, when researchers at Bell Labs built a system that could recognise spoken digits from a single speaker. ";
    let base = tok.encode(TEXT, false)?;
    let prompt: Vec<u32> = base.iter().copied().cycle().take(a.prompt_tokens).collect();
    let mut rows = Vec::new();
    eprintln!(
        "{:<34}{:>14}{:>14}",
        "engine", "prompt tok/s", "decode tok/s"
    );
    for (name, mode) in [
        (
            "diva f32 (dequantized)",
            WeightMode::Dense(candle_core::DType::F32),
        ),
        ("diva as stored (GGUF)", WeightMode::Quantized),
        (
            "diva Q8_0 kernels",
            WeightMode::Requantized(GgmlDType::Q8_0),
        ),
        (
            "diva Q4_0 kernels",
            WeightMode::Requantized(GgmlDType::Q4_0),
        ),
    ] {
        let llm = match load_llm(&path, mode, &Device::Cpu) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name:<34}  skipped: {e}");
                continue;
            }
        };
        let (pp, dec) = time_llm(&llm, &prompt, a.gen_tokens, a.repeat)?;
        eprintln!("{name:<34}{pp:>14.1}{dec:>14.1}");
        rows.push(json!({"engine": name, "prompt_tok_s": pp, "decode_tok_s": dec}));
    }
    let mut report = json!({"model": path, "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens, "diva": rows});
    if !a.no_reference {
        match reference_python(a.python) {
            None => eprintln!(
                "(transformers side skipped: run tools/reference/setup-venv or pass --python)"
            ),
            Some(py) if path.is_file() => {
                let out = Command::new(&py)
                    .args([
                        "tools/reference/bench_llm.py",
                        "--json",
                        "--engine",
                        "transformers",
                        "--engine",
                        "llama_cpp",
                    ])
                    .arg("--gguf")
                    .arg(&path)
                    .args([
                        "--prompt-tokens",
                        &a.prompt_tokens.to_string(),
                        "--gen-tokens",
                        &a.gen_tokens.to_string(),
                    ])
                    .args(["--repeat", &a.repeat.to_string()])
                    .output()
                    .with_context(|| format!("cannot run {}", py.display()))?;
                if !out.status.success() {
                    bail!(
                        "reference benchmark failed:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let peers: serde_json::Value = serde_json::from_slice(&out.stdout)
                    .context("reference benchmark printed invalid JSON")?;
                for p in peers.as_array().into_iter().flatten() {
                    let name = format!(
                        "{} ({})",
                        p["engine"].as_str().unwrap_or("?"),
                        p["dtype"].as_str().unwrap_or("")
                    );
                    match (p["prompt_tok_s"].as_f64(), p["decode_tok_s"].as_f64()) {
                        (Some(pp), Some(d)) => eprintln!("{name:<34}{pp:>14.1}{d:>14.1}"),
                        _ => eprintln!(
                            "{name:<34}  unavailable: {}",
                            p["error"].as_str().unwrap_or("?")
                        ),
                    }
                }
                report["reference"] = peers;
            }
            Some(_) => eprintln!("(reference side needs a .gguf model)"),
        }
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
