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
use diva_core::models::llm::{load_llm, Llm, WeightMode};
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
    /// A DiVA checkpoint directory (official layout). Default: tiny.en +
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
    /// Queries of the default untrained connector.
    #[arg(long, default_value_t = 448)]
    queries: usize,
    /// One JSON object instead of streamed text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

struct Parts {
    whisper_dir: PathBuf,
    whisper: Option<WhisperWeights>,
    llm: Llm,
    tokenizer: LlmTokenizer,
    connector: Option<Connector>,
}

fn resolve_ref(dir: &Path, r: &str, llm: bool) -> Result<PathBuf> {
    Ok(match DivaConfig::local_reference(dir, r) {
        Some(p) => p,
        None if llm => cache::resolve_llm(r)?,
        None => cache::resolve_whisper(r)?,
    })
}

fn load(a: &Args) -> Result<Parts> {
    let (whisper_dir, llm_path) = match &a.model {
        Some(dir) => {
            let cfg = DivaConfig::read(dir)?;
            (
                resolve_ref(dir, &cfg.reference_encoder, false)?,
                resolve_ref(dir, &cfg.reference_decoder, true)?,
            )
        }
        None => (
            cache::resolve_whisper(cache::DEFAULT_WHISPER)?,
            cache::resolve_llm(cache::DEFAULT_LLM)?,
        ),
    };
    let tokenizer = super::generate::load_tokenizer(&llm_path)?;
    let llm = load_llm(&llm_path, WeightMode::Quantized, &Device::Cpu)?;
    let (connector, whisper) = if a.cascade {
        (None, None)
    } else {
        let whisper = WhisperWeights::load_dir(&whisper_dir)?;
        let c = match &a.model {
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
        };
        (Some(c), Some(whisper))
    };
    Ok(Parts {
        whisper_dir,
        whisper,
        llm,
        tokenizer,
        connector,
    })
}

fn stream_to_stdout(label: Option<&str>) -> impl FnMut(&str) {
    let mut first = true;
    let label = label.map(str::to_string);
    move |t: &str| {
        let mut out = std::io::stdout().lock();
        if first {
            if let Some(l) = &label {
                let _ = write!(out, "{l}: ");
            }
            first = false;
        }
        let _ = write!(out, "{t}");
        let _ = out.flush();
    }
}

fn text_reply(
    p: &Parts,
    split: &PromptSplit,
    transcript: &str,
    a: &Args,
    label: &str,
) -> Result<Generation> {
    let ids = p.tokenizer.encode(transcript, false)?;
    let prompt = split.teacher(&p.llm, &ids)?;
    let mut cache = p.llm.new_cache();
    let g = TextGenerator::new(&p.llm, &p.tokenizer);
    let sink: Box<dyn FnMut(&str)> = if a.json {
        Box::new(|_| {})
    } else {
        Box::new(stream_to_stdout(Some(label)))
    };
    let out = g.generate_embeds(&prompt, &mut cache, &a.sampling.params()?, sink)?;
    if !a.json {
        println!();
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<ExitCode> {
    let t_load = Instant::now();
    let parts = load(&a)?;
    let split = PromptSplit::from_template(&parts.tokenizer, a.prompt.as_deref())?;
    tracing::info!("loaded in {:.2}s", t_load.elapsed().as_secs_f64());

    let t0 = Instant::now();
    let pcm = audio::load_pcm_16k(&a.audio)?;
    if pcm.len() > audio::N_SAMPLES {
        tracing::warn!(
            "{}: {:.1} s of audio; DiVA hears one 30 s window, the rest is ignored",
            a.audio.display(),
            pcm.len() as f64 / 16_000.0
        );
    }
    let needs_transcript = a.cascade || a.show_teacher;
    let transcript = if needs_transcript {
        let tr = Transcriber::load(
            &parts.whisper_dir,
            &TranscribeOptions::default(),
            &Device::Cpu,
        )
        .context("--cascade/--show-teacher need a Whisper with its decoder")?;
        let text = tr.transcribe_pcm(&pcm)?.text;
        if !a.json {
            println!("transcript: {text}");
        }
        Some(text)
    } else {
        None
    };

    let mut report = serde_json::json!({ "audio": a.audio, "transcript": transcript });
    if let (Some(connector), Some(whisper)) = (&parts.connector, &parts.whisper) {
        let filters = audio::MelFilters::new(whisper.config.num_mel_bins);
        let mel = audio::log_mel(&pcm[..pcm.len().min(audio::N_SAMPLES)], &filters);
        let mel = Tensor::from_vec(mel, (1, filters.n_mels(), audio::N_FRAMES), &Device::Cpu)?;
        let encoder = whisper.encoder(DType::F32, &Device::Cpu)?;
        let states = encoder.forward(&mel)?;
        let virt = connector.forward(&states, Exec::Fused)?;
        let prompt = split.assemble(&parts.llm, &virt)?;
        let audio_seconds = t0.elapsed().as_secs_f64();
        let mut cache = parts.llm.new_cache();
        let g = TextGenerator::new(&parts.llm, &parts.tokenizer);
        let label = if needs_transcript { Some("diva") } else { None };
        let sink: Box<dyn FnMut(&str)> = if a.json {
            Box::new(|_| {})
        } else {
            Box::new(stream_to_stdout(label))
        };
        let out = g.generate_embeds(&prompt, &mut cache, &a.sampling.params()?, sink)?;
        if !a.json {
            println!();
        }
        let ttft = audio_seconds + out.prompt_seconds;
        tracing::info!(
            "time to first token {:.3}s (audio path {:.3}s + prefill of {} tokens {:.3}s); decode {:.1} tok/s",
            ttft,
            audio_seconds,
            out.prompt_tokens,
            out.prompt_seconds,
            out.decode_tokens_per_second()
        );
        report["reply"] = serde_json::json!(out.text);
        let mut turns = Vec::new();
        for next in &a.then {
            let path = Path::new(next);
            let middle = if path.is_file() {
                let pcm = audio::load_pcm_16k(path)?;
                let mel = audio::log_mel(&pcm[..pcm.len().min(audio::N_SAMPLES)], &filters);
                let mel =
                    Tensor::from_vec(mel, (1, filters.n_mels(), audio::N_FRAMES), &Device::Cpu)?;
                connector.forward(&encoder.forward(&mel)?, Exec::Fused)?
            } else {
                let ids = parts.tokenizer.encode(next, false)?;
                parts
                    .llm
                    .embed(&Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?)?
            };
            let prompt = split.next_turn(&parts.llm, &middle)?;
            if !a.json {
                println!("> {next}");
            }
            let sink: Box<dyn FnMut(&str)> = if a.json {
                Box::new(|_| {})
            } else {
                Box::new(stream_to_stdout(label))
            };
            let t = g.generate_embeds(&prompt, &mut cache, &a.sampling.params()?, sink)?;
            if !a.json {
                println!();
            }
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
        let g = text_reply(&parts, &split, t, &a, label)?;
        report[if a.cascade { "reply" } else { "teacher_reply" }] = serde_json::json!(g.text);
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
