//! `diva bench chat --against cascade`: `diva chat`'s time to first token
//! beside the pipeline a user would otherwise build from the two best C/C++
//! engines, faster-whisper (CTranslate2) for the transcript and llama.cpp
//! for the reply, on the same clips, cores and GGUF, in interleaved rounds.
//!
//! Both sides start from the audio file and stop at the first reply token,
//! each with its chat template's constant prefix cached at load (diva's
//! `prefix_cache`, llama.cpp's saved state). diva: file → 16 kHz → log-mel →
//! encoder → connector → prefill → first token, through [`Assistant`] as
//! `diva chat` runs it. The cascade: `tools/reference/bench_cascade.py`.
//! The Whisper encoder alone is timed on both sides too, on the same 30 s
//! window.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use diva_core::audio::{self, MelFilters};
use diva_core::generate::{Assistant, SamplingParams};
use diva_core::models::whisper::WhisperWeights;
use serde_json::{json, Value};

use super::bench_util::{median, peak_rss_mib, reference_python};
use crate::common::{DeviceArg, LlmWeightsArg, Precision};

/// What `diva bench chat --against cascade` needs from its arguments.
pub struct CascadeArgs {
    pub model: Option<PathBuf>,
    pub threads: Option<usize>,
    pub repeat: usize,
    pub python: Option<PathBuf>,
    pub peer_compute_types: Vec<String>,
    pub peer_beam_size: usize,
    pub llm_weights: LlmWeightsArg,
    pub device: String,
    pub audio_ctx: diva_core::audio::AudioCtx,
}

/// The two clips, from the repository's fixtures: a spoken question padded
/// with silence to 5 s (a user stops talking; the window is the same), and
/// 30 s of continuous real speech (a long dictation: the cascade's decoder
/// has ~100 tokens to write before the LLM can start).
const CLIPS: [(&str, &str, f32); 2] = [
    (
        "question-5s",
        "tests/fixtures/audio/demo/dog-eats-grass.wav",
        5.0,
    ),
    (
        "speech-30s",
        "tests/fixtures/audio/real/asterisk_priv-callee-options_8k_31s.flac",
        30.0,
    ),
];

/// Writes the clips as 16 kHz WAV under `$DIVA_HOME/cache/bench-clips`, so
/// both engines decode the same file.
fn write_clips() -> Result<Vec<(String, PathBuf)>> {
    let dir = diva_core::weights::cache::diva_home().join("cache/bench-clips");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = Vec::new();
    for (name, src, seconds) in CLIPS {
        let src = Path::new(src);
        if !src.is_file() {
            bail!(
                "{} not found: run `diva bench chat --against cascade` from the repository root",
                src.display()
            );
        }
        let mut pcm = audio::load::load_pcm_16k(src)?;
        pcm.resize((seconds * audio::SAMPLE_RATE as f32) as usize, 0.0);
        let path = dir.join(format!("{name}.wav"));
        diva_train::data::synth::write_wav(&path, &pcm)?;
        out.push((name.to_string(), path));
    }
    Ok(out)
}

/// One timed `diva chat` answer to the first token: seconds of (whole,
/// audio decode, encoder + connector, prefill + first token).
fn diva_once(s: &Assistant, clip: &Path) -> Result<[f64; 4]> {
    let params = SamplingParams {
        max_tokens: 1,
        ..SamplingParams::default()
    };
    let t0 = Instant::now();
    let pcm = audio::load::load_pcm_16k(clip)?;
    let decoded = t0.elapsed().as_secs_f64();
    let mut conv = s.conversation();
    let reply = s.reply_audio(&mut conv, &pcm, &params, |_| Ok(()))?;
    Ok([
        t0.elapsed().as_secs_f64(),
        decoded,
        reply.input_seconds,
        reply.generation.prompt_seconds,
    ])
}

pub fn run(a: CascadeArgs) -> Result<std::process::ExitCode> {
    if a.repeat == 0 {
        bail!("--repeat 0: at least one round is needed");
    }
    if a.device != "cpu" {
        bail!("--against cascade runs on the CPU (the peers are CPU engines): drop --device");
    }
    let threads = crate::common::set_threads(a.threads)?;
    let model = match a.model.or_else(super::chat::default_model) {
        Some(m) => m,
        None => bail!("no trained model to time: pass --model DIR (a DiVA checkpoint)"),
    };
    let margs = super::chat::ModelArgs {
        model: Some(model.clone()),
        llm: None,
        whisper: None,
        cascade: false,
        untrained: false,
        num_queries: 448,
        device: DeviceArg {
            device: "cpu".into(),
        },
        dtype: Precision::F32,
        llm_weights: a.llm_weights,
        audio_ctx: a.audio_ctx,
    };
    let opts = super::chat::options(&margs, false, None)?;
    if opts.llm.extension().and_then(|e| e.to_str()) != Some("gguf") {
        bail!(
            "the cascade's llama.cpp needs a .gguf LLM, and this model's is {}",
            opts.llm.display()
        );
    }
    if !opts.whisper.join("model.bin").is_file() {
        bail!(
            "the cascade's faster-whisper needs a CTranslate2 Whisper (model.bin), and {} has none",
            opts.whisper.display()
        );
    }
    let Some(python) = reference_python(a.python) else {
        bail!(
            "the cascade needs the reference Python (faster-whisper, llama-cpp-python): \
             run tools/reference/setup-venv or pass --python"
        );
    };
    let clips = write_clips()?;
    let s = Assistant::load(&opts)?;
    // The encoder alone, as the assistant runs it (f32, one 30 s window).
    let whisper = WhisperWeights::load_dir(&opts.whisper)?;
    let encoder = whisper.encoder(candle_core::DType::F32, &candle_core::Device::Cpu)?;
    let filters = MelFilters::new(whisper.config.num_mel_bins);

    let mut ours: Vec<Vec<[f64; 4]>> = vec![Vec::new(); clips.len()];
    let mut enc_ours: Vec<Vec<f64>> = vec![Vec::new(); clips.len()];
    let mut theirs: Vec<Vec<Value>> = vec![Vec::new(); a.peer_compute_types.len()];
    for round in 0..=a.repeat {
        if round > 0 {
            eprintln!("round {round}/{}", a.repeat);
        }
        for (i, (_, clip)) in clips.iter().enumerate() {
            let (t, e) = diva_core::cpu_pools::on_pool(|| -> Result<_> {
                let t = diva_once(&s, clip)?;
                let pcm = audio::load::load_pcm_16k(clip)?;
                let mel = audio::log_mel(&pcm, &filters);
                let mel = candle_core::Tensor::from_vec(
                    mel,
                    (1, filters.n_mels(), audio::N_FRAMES),
                    &candle_core::Device::Cpu,
                )?;
                let t0 = Instant::now();
                encoder.forward(&mel)?;
                Ok((t, t0.elapsed().as_secs_f64()))
            })?;
            if round > 0 {
                ours[i].push(t);
                enc_ours[i].push(e);
            }
        }
        if round == 0 {
            continue; // diva's warm-up; the script warms up in each call
        }
        for (k, ct) in a.peer_compute_types.iter().enumerate() {
            let mut cmd = Command::new(&python);
            cmd.args([
                "tools/reference/bench_cascade.py",
                "--json",
                "--repeat",
                "1",
            ])
            .arg("--whisper")
            .arg(&opts.whisper)
            .arg("--gguf")
            .arg(&opts.llm)
            .args(["--threads", &threads.to_string()])
            .args(["--compute-type", ct])
            .args(["--beam-size", &a.peer_beam_size.to_string()]);
            for (_, clip) in &clips {
                cmd.arg("--clip").arg(clip);
            }
            let out = cmd
                .output()
                .with_context(|| format!("cannot run {}", python.display()))?;
            if !out.status.success() {
                bail!(
                    "the cascade's benchmark failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let got: Value = serde_json::from_slice(&out.stdout)
                .context("the cascade's benchmark printed invalid JSON")?;
            theirs[k].push(got);
        }
    }

    let ms = |v: Vec<f64>| median(v) * 1e3;
    let mut rows = Vec::new();
    eprintln!(
        "time to first token, {threads} threads, medians of {} rounds ({}):",
        a.repeat,
        model.display()
    );
    for (i, (name, clip)) in clips.iter().enumerate() {
        let col = |j: usize| ms(ours[i].iter().map(|t| t[j]).collect());
        let (ttft, dec, input, prefill) = (col(0), col(1), col(2), col(3));
        let enc = ms(enc_ours[i].clone());
        eprintln!(
            "  {name}: diva {ttft:7.1} ms (decode {dec:.1}, encoder+connector {input:.1}, prefill+first token {prefill:.1}); encoder alone {enc:.1} ms"
        );
        let mut peers = Vec::new();
        for (k, ct) in a.peer_compute_types.iter().enumerate() {
            let field = |f: &str| -> f64 {
                median(
                    theirs[k]
                        .iter()
                        .filter_map(|r| r["clips"][i][f].as_f64())
                        .collect(),
                )
            };
            let (c_ttft, c_tr, c_llm, c_enc) = (
                field("ttft_ms"),
                field("transcribe_ms"),
                field("llm_ms"),
                field("encoder_ms"),
            );
            let transcript = theirs[k]
                .first()
                .and_then(|r| r["clips"][i]["transcript"].as_str())
                .unwrap_or("")
                .to_string();
            eprintln!(
                "  {name}: cascade ({ct}) {c_ttft:7.1} ms (transcribe {c_tr:.1}, llama.cpp prefill+first token {c_llm:.1}); encoder alone {c_enc:.1} ms\n    \
                 cascade / diva: time to first token {:.2}x, encoder {:.2}x",
                c_ttft / ttft,
                c_enc / enc
            );
            peers.push(json!({
                "compute_type": ct, "ttft_ms": c_ttft, "transcribe_ms": c_tr,
                "llm_ms": c_llm, "encoder_ms": c_enc, "transcript": transcript,
                "cascade_over_diva_ttft": c_ttft / ttft,
                "peer_over_diva_encoder": c_enc / enc,
                "rounds": theirs[k].iter().map(|r| r["clips"][i].clone()).collect::<Vec<_>>(),
            }));
        }
        rows.push(json!({
            "clip": name, "path": clip,
            "diva": {
                "ttft_ms": ttft, "audio_decode_ms": dec, "encoder_connector_ms": input,
                "prefill_ms": prefill, "encoder_ms": enc,
                "rounds_ttft_ms": ours[i].iter().map(|t| t[0] * 1e3).collect::<Vec<_>>(),
            },
            "cascade": peers,
        }));
    }
    let peer_meta = theirs
        .iter()
        .filter_map(|r| r.first())
        .map(|r| {
            json!({
                "faster_whisper": r["faster_whisper"], "ctranslate2": r["ctranslate2"],
                "llama_cpp": r["llama_cpp"], "compute_type": r["compute_type"],
                "beam_size": r["beam_size"],
            })
        })
        .collect::<Vec<_>>();
    let report = json!({
        "model": model, "whisper": opts.whisper, "llm": opts.llm,
        "llm_weights": format!("{:?}", opts.llm_weights),
        "audio_ctx": a.audio_ctx.to_string(),
        "num_queries": s.num_queries(), "cached_prefix_tokens": s.prefix_tokens(),
        "threads": threads, "rounds": a.repeat, "clips": rows, "cascade": peer_meta,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}
