//! `diva chat --audio FILE`: spoken chat. Argument handling and printing; the
//! session (audio → virtual tokens → streamed reply, turns, cascade) is
//! `diva_core::generate::Assistant`. `--cascade` is the baseline (Whisper
//! transcript → LLM); `--show-teacher` prints the LLM's reply to the
//! transcript beside the student's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use diva_core::audio::AudioCtx;
use diva_core::generate::{
    Assistant, AssistantOptions, ConnectorSource, Conversation, Reply, SamplingParams,
};
use diva_core::models::checkpoint::DivaConfig;
use diva_core::weights::cache;

use crate::common::{self, DeviceArg, Precision};
use crate::sampling_args::SamplingArgs;
use crate::{out, outln};

const EXAMPLES: &str = "Examples:
  diva chat --audio question.wav
  diva chat --audio question.wav --then \"And in French?\" --then followup.wav
  diva chat --audio - < question.wav --json
  diva chat --cascade --timings --audio question.wav
  diva chat --model DiVA-llama-3-v0-8b/ --llm Meta-Llama-3-8B-Instruct.Q4_K_M.gguf \\
      --whisper whisper-large-v3/ --dtype f16 --audio question.wav";

/// Which model parts to load: the same flags in `diva chat` and `diva serve`.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// A DiVA checkpoint directory (official layout). Default: the shipped
    /// model (`models/diva-tiny`, or $DIVA_MODEL); without one, tiny.en +
    /// SmolLM2 with an UNTRAINED connector.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// LLM: a fetched name (smollm2), a .gguf file, an HF directory or a hub
    /// id. Overrides the checkpoint's `reference_decoder`.
    #[arg(long)]
    pub llm: Option<String>,
    /// Whisper: a fetched name (tiny.en, base), a local directory or a hub id.
    /// Overrides the checkpoint's `reference_encoder`.
    #[arg(long)]
    pub whisper: Option<String>,
    /// Baseline: transcribe with Whisper and send the text to the LLM.
    #[arg(long)]
    pub cascade: bool,
    /// Use a freshly initialised (untrained) connector even when a trained
    /// default model is available.
    #[arg(long, conflicts_with = "model")]
    pub untrained: bool,
    /// Queries (virtual tokens) of the untrained connector.
    #[arg(long, visible_alias = "queries", default_value_t = 448)]
    pub num_queries: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Compute dtype of the Whisper encoder and the connector (f16 halves
    /// their memory); on CUDA also of the (then dense) LLM.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
    #[command(flatten)]
    pub llm_weights: crate::common::LlmWeightsArg,
    /// The Whisper encoder's window for the spoken input, whisper.cpp's
    /// `audio_ctx`: `full` (30 s, as trained), `fit` (the clip rounded up to
    /// whole seconds), or encoder frames (20 ms each; 500 = 10 s; audio past
    /// the window is cut). A shorter window answers sooner and changes what
    /// the connector sees (docs/benchmarks.md has the cost).
    #[arg(long, default_value = "full", value_name = "full|fit|FRAMES")]
    pub audio_ctx: AudioCtx,
}

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The spoken input (any supported audio format; the first 30 s are
    /// used), or `-` to read the audio file from stdin.
    #[arg(long)]
    audio: PathBuf,
    /// A text instruction to go with the audio (placed in the system slot).
    #[arg(long)]
    prompt: Option<String>,
    /// Also print the LLM's reply to the Whisper transcript (the teacher, as
    /// far as Whisper heard right; with --transcript, the cascade beside the
    /// teacher).
    #[arg(long)]
    show_teacher: bool,
    /// What was really said. With --show-teacher the teacher answers this
    /// text and the cascade (Whisper's transcript → LLM) is printed beside it.
    #[arg(long, requires = "show_teacher")]
    transcript: Option<String>,
    /// Further turns of the same conversation, in order: an audio file (sent
    /// as audio, or transcribed under --cascade) or text. The KV cache carries
    /// over, so earlier turns are not recomputed. An argument that looks like
    /// a file (an audio extension, or a path) but does not exist is an error.
    #[arg(long = "then")]
    then: Vec<String>,
    /// Print time to first token and decode speed after each reply, on
    /// stderr (also with -q: it was asked for).
    #[arg(long)]
    timings: bool,
    /// One JSON object instead of streamed text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The default model: `$DIVA_MODEL`, else the one shipped in the binary.
pub fn default_model() -> Option<PathBuf> {
    super::models::default_model()
}

/// Decoded audio (before any model loads, so bad input fails fast).
struct Audio {
    name: String,
    pcm: Vec<f32>,
    decode_s: f64,
}

/// A turn's input.
enum Input {
    Audio(Audio),
    Text(String),
}

const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "webm", "aif", "aiff",
];

/// An existing file is audio; an argument that looks like a file (an audio
/// extension; a `/`, `./`, `~/` start; a `/` without spaces) but is not
/// there is an error; anything else is text.
fn then_input(arg: &str) -> Result<Input> {
    let p = Path::new(arg);
    if p.is_file() {
        return audio_input(p).map(Input::Audio);
    }
    let audio_ext = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    let pathish = ["/", "./", "../", "~/"].iter().any(|s| arg.starts_with(s))
        || (arg.contains('/') && !arg.contains(char::is_whitespace));
    if audio_ext || pathish {
        anyhow::bail!("--then {arg}: file not found (a text turn must not look like a path)");
    }
    Ok(Input::Text(arg.to_string()))
}

fn audio_input(p: &Path) -> Result<Audio> {
    let t0 = Instant::now();
    let pcm = common::load_audio(p)?;
    let name = if p.as_os_str() == "-" {
        common::STDIN_NAME.to_string()
    } else {
        p.display().to_string()
    };
    if pcm.len() > diva_core::audio::N_SAMPLES {
        tracing::warn!(
            "{name}: {:.1} s of audio; DiVA hears one 30 s window, the rest is ignored",
            pcm.len() as f64 / 16_000.0
        );
    }
    Ok(Audio {
        name,
        pcm,
        decode_s: t0.elapsed().as_secs_f64(),
    })
}

/// Resolve the model parts: `--whisper`/`--llm` override the checkpoint's
/// references, which are only resolved when not overridden.
pub fn options(
    a: &ModelArgs,
    transcriber: bool,
    instruction: Option<String>,
) -> Result<AssistantOptions> {
    let device = a.device.open()?;
    if let Some(l) = &a.llm {
        common::check_llm_path("--llm", l)?;
    }
    if let Some(w) = &a.whisper {
        common::check_dir_path("--whisper", w)?;
    }
    let model = match &a.model {
        Some(m) => Some(m.clone()),
        None if !a.cascade && !a.untrained => default_model(),
        None => None,
    };
    let config = match &model {
        Some(dir) => {
            tracing::info!("model: {}", dir.display());
            Some((dir, DivaConfig::read(dir)?))
        }
        None => None,
    };
    let whisper = match (&a.whisper, &config) {
        (Some(w), _) => cache::resolve_whisper(w)?,
        (None, Some((dir, c))) => match DivaConfig::local_reference(dir, &c.reference_encoder) {
            Some(p) => p,
            None => cache::resolve_whisper(&c.reference_encoder)?,
        },
        (None, None) => cache::resolve_whisper(cache::DEFAULT_WHISPER)?,
    };
    let llm = match (&a.llm, &config) {
        (Some(l), _) => cache::resolve_llm(l)?,
        (None, Some((dir, c))) => match DivaConfig::local_reference(dir, &c.reference_decoder) {
            Some(p) => p,
            None => cache::resolve_llm(&c.reference_decoder)?,
        },
        (None, None) => cache::resolve_llm(cache::DEFAULT_LLM)?,
    };
    let connector = match (&model, a.cascade) {
        (_, true) => ConnectorSource::Cascade,
        (Some(dir), false) => ConnectorSource::Checkpoint(dir.clone()),
        (None, false) => {
            tracing::warn!(
                "UNTRAINED CONNECTOR: no --model given, so the connector is freshly initialised \
                 (Whisper decoder weights, random queries). Its replies are not meaningful until it is trained."
            );
            ConnectorSource::Untrained {
                num_queries: a.num_queries,
            }
        }
    };
    Ok(AssistantOptions {
        whisper,
        llm,
        connector,
        transcriber: transcriber || a.cascade,
        instruction,
        dtype: a.dtype.into(),
        device,
        llm_weights: a.llm_weights.get(),
        audio_ctx: a.audio_ctx,
    })
}

/// One answered turn, as printed and reported.
struct Answer {
    reply: Reply,
    transcript: Option<String>,
    ttft_s: f64,
}

/// Answer `input` in `conv`, streaming to stdout after `label: ` (unless
/// `--json`), with the timings line on stderr under `--timings`.
fn answer(
    s: &Assistant,
    conv: &mut Conversation,
    input: &Input,
    a: &Args,
    params: &SamplingParams,
    label: Option<&str>,
) -> Result<Answer> {
    diva_core::cpu_pools::on_pool(|| answer_on_pool(s, conv, input, a, params, label))
}

fn answer_on_pool(
    s: &Assistant,
    conv: &mut Conversation,
    input: &Input,
    a: &Args,
    params: &SamplingParams,
    label: Option<&str>,
) -> Result<Answer> {
    let mut parts = Vec::new();
    let mut before = 0.0;
    let mut transcript = None;
    let sink = |t: &str| if a.json { Ok(()) } else { out!("{t}") };
    let start = |transcript: &Option<String>| -> std::io::Result<()> {
        if a.json {
            return Ok(());
        }
        if let Some(t) = transcript {
            outln!("transcript: {t}")?;
        }
        match label {
            Some(l) => out!("{l}: "),
            None => Ok(()),
        }
    };
    let reply = match input {
        Input::Text(text) => {
            start(&None)?;
            s.reply_text(conv, text, params, sink)?
        }
        Input::Audio(Audio { pcm, decode_s, .. }) => {
            before += decode_s;
            parts.push(format!("audio decode {decode_s:.3} s"));
            if s.hears_audio() {
                start(&None)?;
                let r = s.reply_audio(conv, pcm, params, sink)?;
                parts.push(format!("encoder + connector {:.3} s", r.input_seconds));
                r
            } else {
                let (text, secs) = s.transcribe(pcm)?;
                before += secs;
                parts.push(format!("transcription {secs:.3} s"));
                transcript = Some(text);
                start(&transcript)?;
                s.reply_text(conv, transcript.as_deref().unwrap_or(""), params, sink)?
            }
        }
    };
    if !a.json {
        outln!()?;
    }
    let g = &reply.generation;
    let ttft_s = before + reply.time_to_first_token_s();
    parts.push(format!(
        "prefill of {} tokens {:.3} s",
        g.prompt_tokens, g.prompt_seconds
    ));
    let line = format!(
        "time to first token {ttft_s:.3} s ({}); decode {} tokens at {:.1} tok/s",
        parts.join(" + "),
        g.ids.len(),
        g.decode_tokens_per_second()
    );
    tracing::info!("{line}");
    if a.timings {
        eprintln!(
            "timings{}: {line}",
            label.map(|l| format!(" ({l})")).unwrap_or_default()
        );
    }
    Ok(Answer {
        reply,
        transcript,
        ttft_s,
    })
}

pub fn run(a: Args) -> Result<ExitCode> {
    // Everything that can be refused is refused before a model loads.
    let params = a.sampling.params()?;
    a.models.device.open()?;
    let turns: Vec<Input> = a
        .then
        .iter()
        .map(|t| then_input(t))
        .collect::<Result<_>>()?;
    let first = audio_input(&a.audio)?;
    let opts = options(&a.models, a.show_teacher, a.prompt.clone())?;
    let t_load = Instant::now();
    let s = Assistant::load(&opts)?;
    tracing::info!(
        "loaded in {:.2}s ({} prefix tokens cached)",
        t_load.elapsed().as_secs_f64(),
        s.prefix_tokens()
    );

    let needs_transcript = a.models.cascade || a.show_teacher;
    let mut report = serde_json::json!({ "audio": a.audio });
    // --show-teacher prints the transcript first, then DiVA's reply.
    let teacher_transcript = if a.show_teacher && s.hears_audio() {
        let (text, _) = s.transcribe(&first.pcm)?;
        if !a.json {
            outln!("transcript: {text}")?;
        }
        report["transcript"] = serde_json::json!(text);
        Some(text)
    } else {
        None
    };
    let label = match (needs_transcript, s.hears_audio()) {
        (false, _) => None,
        (true, true) => Some("diva"),
        (true, false) => Some("cascade"),
    };
    let mut conv = s.conversation();
    let one = answer(&s, &mut conv, &Input::Audio(first), &a, &params, label)?;
    if let Some(t) = &one.transcript {
        report["transcript"] = serde_json::json!(t);
    }
    report["reply"] = serde_json::json!(one.reply.generation.text);
    report["time_to_first_token_s"] = serde_json::json!(one.ttft_s);
    report["decode_tokens_per_s"] =
        serde_json::json!(one.reply.generation.decode_tokens_per_second());
    let mut done = Vec::new();
    for (input, arg) in turns.iter().zip(&a.then) {
        if !a.json {
            outln!("> {arg}")?;
        }
        let t = answer(&s, &mut conv, input, &a, &params, label)?;
        tracing::info!(
            "turn: {} new prompt tokens, {} cached",
            t.reply.generation.prompt_tokens,
            conv.cached_tokens()
        );
        let mut entry = serde_json::json!({
            "input": arg,
            "reply": t.reply.generation.text,
            "prompt_tokens": t.reply.generation.prompt_tokens,
            "time_to_first_token_s": t.ttft_s,
        });
        if let (Input::Audio(Audio { name, .. }), Some(tr)) = (input, &t.transcript) {
            entry["audio"] = serde_json::json!(name);
            entry["transcript"] = serde_json::json!(tr);
        }
        done.push(entry);
    }
    report["turns"] = serde_json::json!(done);
    if s.hears_audio() {
        report["untrained_connector"] =
            serde_json::json!(matches!(opts.connector, ConnectorSource::Untrained { .. }));
    }
    if let Some(t) = teacher_transcript {
        // The teacher hears what was said; the cascade what Whisper heard.
        // Without --transcript they are one and the same run.
        let mut replies = vec![(a.transcript.clone().unwrap_or_else(|| t.clone()), "teacher")];
        if a.transcript.is_some() {
            replies.push((t, "cascade"));
        }
        for (text, who) in replies {
            let out = answer(
                &s,
                &mut s.conversation(),
                &Input::Text(text),
                &a,
                &params,
                Some(who),
            )?;
            report[format!("{who}_reply")] = serde_json::json!(out.reply.generation.text);
        }
    }
    if a.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
