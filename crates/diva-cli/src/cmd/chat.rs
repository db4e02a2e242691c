//! `diva chat --audio FILE`: spoken chat. Audio → Whisper encoder → connector
//! → virtual tokens inside the LLM's chat template → streamed reply.
//! `--cascade` is the baseline (Whisper transcript → LLM); `--show-teacher`
//! prints the LLM's reply to the transcript beside the student's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use diva_core::audio;
use diva_core::generate::{Generation, TextGenerator, TranscribeOptions, Transcriber};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::connector::Connector;
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::{load_llm, KvCache, Llm, WeightMode};
use diva_core::models::whisper::WhisperWeights;
use diva_core::models::Exec;
use diva_core::text::LlmTokenizer;
use diva_core::weights::cache;

use crate::sampling_args::SamplingArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The spoken input (any supported audio format; the first 30 s are used).
    #[arg(long)]
    audio: PathBuf,
    /// A DiVA checkpoint directory (official layout). Default: the shipped
    /// model (`models/diva-tiny`, or $DIVA_MODEL); without one, tiny.en +
    /// SmolLM2 with an UNTRAINED connector.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A text instruction to go with the audio (placed in the system slot).
    #[arg(long)]
    prompt: Option<String>,
    /// Baseline: transcribe with Whisper and send the text to the LLM.
    #[arg(long)]
    cascade: bool,
    /// Also print the LLM's reply to the Whisper transcript.
    #[arg(long)]
    show_teacher: bool,
    /// Further turns of the same conversation, in order: an audio file path,
    /// or text. The KV cache carries over, so earlier turns are not recomputed.
    #[arg(long = "then")]
    then: Vec<String>,
    /// Use a freshly initialised (untrained) connector even when a trained
    /// default model is available.
    #[arg(long, conflicts_with = "model")]
    untrained: bool,
    /// Queries of the untrained connector.
    #[arg(long, default_value_t = 448)]
    queries: usize,
    /// Print time to first token and decode speed after each reply.
    #[arg(long)]
    timings: bool,
    /// One JSON object instead of streamed text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

struct Parts {
    whisper: WhisperWeights,
    llm: Llm,
    tokenizer: LlmTokenizer,
    connector: Option<Connector>,
}

/// The default model: `$DIVA_MODEL`, else the one shipped in the binary.
pub fn default_model() -> Option<PathBuf> {
    super::models::default_model()
}

fn load(a: &mut Args) -> Result<Parts> {
    if a.model.is_none() && !a.cascade && !a.untrained {
        a.model = default_model();
        if let Some(m) = &a.model {
            tracing::info!("model: {}", m.display());
        }
    }
    let (whisper_dir, llm_path) = match &a.model {
        Some(dir) => DivaConfig::read(dir)?.resolve_references(dir)?,
        None => (
            cache::resolve_whisper(cache::DEFAULT_WHISPER)?,
            cache::resolve_llm(cache::DEFAULT_LLM)?,
        ),
    };
    diva_core::cpu_pools::use_one_pool_unless_quantized(&llm_path, WeightMode::Quantized)?;
    let tokenizer = LlmTokenizer::from_path(&llm_path)?;
    let llm = load_llm(&llm_path, WeightMode::Quantized, &Device::Cpu)?;
    let whisper = WhisperWeights::load_dir(&whisper_dir)?;
    let connector = if a.cascade {
        None
    } else {
        Some(match &a.model {
            Some(dir) => {
                checkpoint::load_connector(dir, &whisper.config, DType::F32, &Device::Cpu)?
            }
            None => {
                tracing::warn!(
                    "UNTRAINED CONNECTOR: no --model given, so the connector is freshly initialised \
                     (Whisper decoder weights, random queries). Its replies are not meaningful until it is trained."
                );
                Connector::init(
                    &whisper,
                    a.queries,
                    llm.hidden_size(),
                    0,
                    DType::F32,
                    &Device::Cpu,
                )?
            }
        })
    };
    Ok(Parts {
        whisper,
        llm,
        tokenizer,
        connector,
    })
}

/// Generate after `prompt`, streaming to stdout (after `label: `, if any)
/// unless `--json` collects everything into one object at the end.
fn reply(
    g: &TextGenerator,
    prompt: &Tensor,
    cache: &mut KvCache,
    a: &Args,
    label: Option<&str>,
) -> Result<Generation> {
    let mut first = true;
    let sink = |t: &str| {
        if a.json {
            return;
        }
        let mut out = std::io::stdout().lock();
        if std::mem::take(&mut first) {
            if let Some(l) = label {
                let _ = write!(out, "{l}: ");
            }
        }
        let _ = write!(out, "{t}");
        let _ = out.flush();
    };
    let out = g.generate_embeds(prompt, cache, &a.sampling.params()?, sink)?;
    if !a.json {
        println!();
    }
    Ok(out)
}

pub fn run(mut a: Args) -> Result<ExitCode> {
    let t_load = Instant::now();
    let parts = load(&mut a)?;
    let split = PromptSplit::from_template(&parts.tokenizer, a.prompt.as_deref())?;
    // The template's constant prefix is model state: its keys and values are
    // computed once here, and every prompt starts after it.
    let prefix_kv = split.prefix_cache(&parts.llm)?;
    tracing::info!(
        "loaded in {:.2}s ({} prefix tokens cached)",
        t_load.elapsed().as_secs_f64(),
        prefix_kv.len()
    );

    let t0 = Instant::now();
    let pcm = audio::load_pcm_16k(&a.audio)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    if pcm.len() > audio::N_SAMPLES {
        tracing::warn!(
            "{}: {:.1} s of audio; DiVA hears one 30 s window, the rest is ignored",
            a.audio.display(),
            pcm.len() as f64 / 16_000.0
        );
    }
    let needs_transcript = a.cascade || a.show_teacher;
    let transcript = if needs_transcript {
        let tr =
            Transcriber::from_weights(&parts.whisper, &TranscribeOptions::default(), &Device::Cpu)
                .context("--cascade/--show-teacher need a Whisper with its decoder")?;
        let text = tr.transcribe_pcm(&pcm)?.text;
        if !a.json {
            println!("transcript: {text}");
        }
        Some(text)
    } else {
        None
    };

    let g = TextGenerator::new(&parts.llm, &parts.tokenizer);
    let mut report = serde_json::json!({ "audio": a.audio, "transcript": transcript });
    if let Some(connector) = &parts.connector {
        let filters = audio::MelFilters::new(parts.whisper.config.num_mel_bins);
        let encoder = parts.whisper.encoder(DType::F32, &Device::Cpu)?;
        // Audio → one 30 s window of log-mel → encoder → connector.
        let virtual_tokens = |pcm: &[f32]| -> Result<Tensor> {
            let mel = audio::log_mel(&pcm[..pcm.len().min(audio::N_SAMPLES)], &filters);
            let mel = Tensor::from_vec(mel, (1, filters.n_mels(), audio::N_FRAMES), &Device::Cpu)?;
            Ok(connector.forward(&encoder.forward(&mel)?, Exec::Fused)?)
        };
        // The audio path is timed on its own: transcription for
        // --show-teacher/--cascade happened above and is not part of it.
        let t_audio = Instant::now();
        let prompt = split.after_prefix(&parts.llm, &virtual_tokens(&pcm)?)?;
        let audio_seconds = load_seconds + t_audio.elapsed().as_secs_f64();
        let mut cache = prefix_kv.clone();
        let label = if needs_transcript { Some("diva") } else { None };
        let out = reply(&g, &prompt, &mut cache, &a, label)?;
        let ttft = audio_seconds + out.prompt_seconds;
        tracing::info!(
            "time to first token {:.3}s (audio path {:.3}s + prefill of {} tokens {:.3}s); decode {:.1} tok/s",
            ttft,
            audio_seconds,
            out.prompt_tokens,
            out.prompt_seconds,
            out.decode_tokens_per_second()
        );
        if a.timings && !a.json {
            println!(
                "  (time to first token {ttft:.2} s, decode {:.1} tok/s)",
                out.decode_tokens_per_second()
            );
        }
        report["reply"] = serde_json::json!(out.text);
        let mut turns = Vec::new();
        for next in &a.then {
            let path = Path::new(next);
            let middle = if path.is_file() {
                virtual_tokens(&audio::load_pcm_16k(path)?)?
            } else {
                parts.llm.embed_ids(&parts.tokenizer.encode(next, false)?)?
            };
            let prompt = split.next_turn(&parts.llm, &middle)?;
            if !a.json {
                println!("> {next}");
            }
            let t = reply(&g, &prompt, &mut cache, &a, label)?;
            tracing::info!(
                "turn: {} new prompt tokens, {} cached",
                t.prompt_tokens,
                cache.len()
            );
            turns.push(serde_json::json!({"input": next, "reply": t.text, "prompt_tokens": t.prompt_tokens}));
        }
        report["turns"] = serde_json::json!(turns);
        report["time_to_first_token_s"] = serde_json::json!(ttft);
        report["decode_tokens_per_s"] = serde_json::json!(out.decode_tokens_per_second());
        report["untrained_connector"] = serde_json::json!(a.model.is_none());
    }
    if let Some(t) = &transcript {
        let label = if a.cascade { "cascade" } else { "teacher" };
        let transcript = parts.llm.embed_ids(&parts.tokenizer.encode(t, false)?)?;
        let prompt = split.after_prefix(&parts.llm, &transcript)?;
        let out = reply(&g, &prompt, &mut prefix_kv.clone(), &a, Some(label))?;
        report[if a.cascade { "reply" } else { "teacher_reply" }] = serde_json::json!(out.text);
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
