//! `diva generate`: text chat with the LLM, one-shot or interactive.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::Device;
use diva_core::generate::{Generation, SamplingParams, TextGenerator};
use diva_core::models::llm::{load_llm, KvCache, Llm, WeightMode};
use diva_core::text::{LlmTokenizer, Message};
use diva_core::weights::cache;

use crate::common::DeviceArg;
use crate::sampling_args::SamplingArgs;
use crate::{out, outln};

const EXAMPLES: &str = "Examples:
  diva generate \"What is the capital of France?\"
  diva generate --llm model.gguf --temperature 0.7 --seed 3 \"Name a colour.\"
  diva generate --interactive --system \"Answer in one sentence.\"
  diva generate --json --max-tokens 32 \"Hi\" | jq .text";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The user message. Omit with --interactive.
    prompt: Option<String>,
    /// LLM: a fetched name (smollm2), a .gguf file, an HF directory or a hub id.
    #[arg(long, default_value = cache::DEFAULT_LLM)]
    llm: String,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Chat turn by turn on stdin; the KV cache carries over between turns.
    #[arg(short, long)]
    interactive: bool,
    /// Print one JSON object (text, token counts, timings) instead of streaming.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    llm_weights: crate::common::LlmWeightsArg,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn load(
    arg: &str,
    weights: diva_core::models::llm::LlmWeights,
    device: &Device,
) -> Result<(PathBuf, Llm, LlmTokenizer)> {
    crate::common::check_llm_path("--llm", arg)?;
    let path = cache::resolve_llm(arg)?;
    let t0 = std::time::Instant::now();
    let tokenizer = LlmTokenizer::from_path(&path)?;
    let mode: WeightMode = weights.mode(&path, device, candle_core::DType::F32)?;
    diva_core::cpu_pools::use_one_pool_unless_quantized(&path, mode)?;
    let llm = load_llm(&path, mode, device)?;
    tracing::info!(
        "loaded {} in {:.2}s",
        path.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok((path, llm, tokenizer))
}

/// Conversation state: messages so far and the token ids already in the cache.
struct Chat<'a> {
    generator: TextGenerator<'a>,
    messages: Vec<Message>,
    cache: KvCache,
    fed: Vec<u32>,
}

impl Chat<'_> {
    /// Render the conversation, feed only what the cache lacks, generate.
    fn turn(
        &mut self,
        user: &str,
        raw: bool,
        params: &SamplingParams,
        on_text: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Generation> {
        let tok = self.generator.tokenizer;
        let ids = if raw {
            tok.encode(user, true)?
        } else {
            self.messages.push(Message::user(user));
            let text = tok
                .chat()?
                .render(&self.messages, true, &serde_json::json!({}))?;
            tok.encode(&text, false)?
        };
        let ids = if raw {
            [self.fed.clone(), ids].concat()
        } else {
            ids
        };
        let new = if ids.starts_with(&self.fed) && ids.len() > self.fed.len() {
            ids[self.fed.len()..].to_vec()
        } else {
            // The template re-rendered earlier turns differently: start over.
            self.cache = self.generator.llm.new_cache();
            ids.clone()
        };
        let g = self
            .generator
            .try_generate_ids(&new, &mut self.cache, params, on_text)?;
        self.fed = [ids, g.ids.clone()].concat();
        if !raw {
            self.messages.push(Message::assistant(g.text.clone()));
            // The cache holds the reply but not the end-of-turn markup the
            // template adds; the next render's prefix check handles that.
        }
        Ok(g)
    }
}

fn report(g: &Generation) {
    tracing::info!(
        "{} prompt tokens in {:.3}s ({:.1} tok/s); {} new tokens at {:.1} tok/s; stop: {:?}",
        g.prompt_tokens,
        g.prompt_seconds,
        g.prompt_tokens as f64 / g.prompt_seconds.max(1e-9),
        g.ids.len(),
        g.decode_tokens_per_second(),
        g.stop_reason
    );
}

pub fn run(args: Args) -> Result<ExitCode> {
    let params = args.sampling.params()?;
    if !args.interactive && args.prompt.is_none() {
        anyhow::bail!("give a prompt, or use --interactive");
    }
    let device = args.device.open()?;
    let (_path, llm, tokenizer) = load(&args.llm, args.llm_weights.get(), &device)?;
    let mut chat = Chat {
        generator: TextGenerator::new(&llm, &tokenizer),
        messages: Vec::new(),
        cache: llm.new_cache(),
        fed: vec![],
    };
    if let Some(s) = &args.system {
        chat.messages.push(Message::system(s.clone()));
    }
    let stream = |t: &str| out!("{t}");
    if !args.interactive {
        let prompt = args
            .prompt
            .clone()
            .context("give a prompt, or use --interactive")?;
        if args.json {
            let g = chat.turn(&prompt, args.raw, &params, |_| Ok(()))?;
            report(&g);
            outln!("{}", serde_json::to_string(&g)?)?;
        } else {
            let g = chat.turn(&prompt, args.raw, &params, stream)?;
            outln!()?;
            report(&g);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("diva generate — type a message, an empty line or Ctrl-D to quit");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            break;
        }
        let g = chat.turn(&line, args.raw, &params, stream)?;
        outln!()?;
        report(&g);
    }
    Ok(ExitCode::SUCCESS)
}
