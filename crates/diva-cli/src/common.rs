//! Flags and set-up shared by subcommands: logging, stdout that reports a
//! closed pipe as an error instead of panicking, early checks of model paths.

use std::io::{IsTerminal, Write};
use std::path::Path;

use candle_core::DType;

/// Logs go to stderr so stdout stays clean for results; colours only when
/// stderr is a terminal and `NO_COLOR` is unset (https://no-color.org).
/// symphonia's own log lines (e.g. "skipping junk at N bytes") come before
/// diva's error, which names the file, so they are shown from `-vv` only.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let default = if verbose >= 2 {
        default.to_string()
    } else {
        format!("{default},symphonia=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour_on_stderr())
        .init();
}

/// Whether stderr may carry ANSI colour codes.
pub fn colour_on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Write to stdout and flush, returning the error (a closed pipe is
/// `BrokenPipe`, which `main` turns into a quiet exit 0) where `print!`
/// would panic.
pub fn out(args: std::fmt::Arguments) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args)?;
    o.flush()
}

/// `print!` that returns an `io::Result` instead of panicking.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::common::out(format_args!($($t)*)) };
}

/// `println!` that returns an `io::Result` instead of panicking.
#[macro_export]
macro_rules! outln {
    () => { $crate::common::out(format_args!("\n")) };
    ($($t:tt)*) => { $crate::common::out(format_args!("{}\n", format_args!($($t)*))) };
}

/// Whether `e` is, anywhere in its chain, a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Refuse an `--llm` that is meant as a file and is not there, before the
/// resolver tries it as a name or hub id (and says something longer).
/// "Meant as a file": ends in `.gguf`, starts with `/`, `./`, `../` or `~`,
/// or has more than one `/` (a hub id is exactly `owner/name`).
pub fn check_llm_path(flag: &str, arg: &str) -> anyhow::Result<()> {
    let looks_like_file = arg.to_ascii_lowercase().ends_with(".gguf") || looks_like_path(arg);
    if looks_like_file && !Path::new(arg).exists() {
        anyhow::bail!("{flag} {arg}: file not found");
    }
    Ok(())
}

/// [`check_llm_path`] for a directory argument (`--whisper`, `--model`).
pub fn check_dir_path(flag: &str, arg: &str) -> anyhow::Result<()> {
    if looks_like_path(arg) && !Path::new(arg).exists() {
        anyhow::bail!("{flag} {arg}: directory not found");
    }
    Ok(())
}

/// A path rather than a fetched name or an `owner/name` hub id.
fn looks_like_path(arg: &str) -> bool {
    arg.starts_with('/')
        || arg.starts_with("./")
        || arg.starts_with("../")
        || arg.starts_with('~')
        || arg.matches('/').count() > 1
        || arg.contains('\\')
}

/// How `-` (stdin) is named in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// Decode an audio argument to 16 kHz mono PCM: a file, or `-` for the bytes
/// on stdin (any supported format; the container is probed from the content).
pub fn load_audio(arg: &Path) -> anyhow::Result<Vec<f32>> {
    if arg.as_os_str() != "-" {
        return Ok(diva_core::audio::load_pcm_16k(arg)?);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
        .map_err(|e| anyhow::anyhow!("reading audio from stdin: {e}"))?;
    if bytes.is_empty() {
        anyhow::bail!(
            "`-` reads audio from stdin, but stdin was empty: pipe a file in (`… - < q.wav`)"
        );
    }
    Ok(diva_core::audio::load_pcm_16k_bytes(
        bytes,
        None,
        Path::new(STDIN_NAME),
    )?)
}

/// `--device`, the same flag in every command that runs models.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArg {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl DeviceArg {
    pub fn open(&self) -> anyhow::Result<candle_core::Device> {
        Ok(diva_core::device::parse_device(&self.device)?)
    }
}

/// `--llm-weights`, the same flag in every command that runs the LLM.
#[derive(clap::Args, Debug, Clone)]
pub struct LlmWeightsArg {
    /// The LLM's weights on the CPU: `stored` runs the GGUF's blocks on
    /// diva's quantized kernels (8-bit activations, as llama.cpp; 3× the
    /// decode speed); `f32` dequantizes them (the exact product); `auto`
    /// is f32 for a model that fits in 2 GiB as f32, else stored.
    #[arg(long, value_enum, default_value = "auto")]
    pub llm_weights: LlmWeightsChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LlmWeightsChoice {
    Auto,
    Stored,
    F32,
}

impl LlmWeightsArg {
    pub fn get(&self) -> diva_core::models::llm::LlmWeights {
        use diva_core::models::llm::LlmWeights;
        match self.llm_weights {
            LlmWeightsChoice::Auto => LlmWeights::Auto,
            LlmWeightsChoice::Stored => LlmWeights::Stored,
            LlmWeightsChoice::F32 => LlmWeights::F32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_hub_ids_are_told_apart() {
        for p in ["nonexist.gguf", "./x", "/abs/dir", "a/b/c", "../m.GGUF"] {
            let e = check_llm_path("--llm", p).unwrap_err().to_string();
            assert_eq!(e, format!("--llm {p}: file not found"));
        }
        for id in ["smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"] {
            assert!(check_llm_path("--llm", id).is_ok(), "{id}");
        }
        assert!(check_dir_path("--whisper", "openai/whisper-large-v3").is_ok());
        assert!(check_dir_path("--whisper", "./nope").is_err());
    }

    #[test]
    fn broken_pipe_is_found_through_context() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::new(diva_core::Error::io("writing the reply", io)).context("chat");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl From<Precision> for DType {
    fn from(p: Precision) -> DType {
        match p {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// Where a benchmark runs and on which weights.
#[derive(clap::Args, Debug, Clone)]
pub struct RunOn {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Random weights in a named shape (`tiny`: tiny.en + SmolLM2-135M;
    /// `paper`: large-v3 + Llama-3-8B, N=448) instead of the preset's real
    /// weights.
    #[arg(long)]
    pub random_shape: Option<String>,
    /// Compute dtype of the frozen encoder and LLM (trainable weights stay f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
}

/// `--threads`: size the global pool (and candle's GEMM threads, which read
/// the same variable) before the first candle op; `None` keeps every core.
/// Returns the threads in use. The same flag and check in every command.
pub fn set_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    use anyhow::Context;
    match threads {
        Some(0) => anyhow::bail!("--threads 0: give at least 1"),
        Some(n) => {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("cannot size the thread pool")?;
            Ok(n)
        }
        None => Ok(rayon::current_num_threads()),
    }
}
