//! Flags and set-up shared by subcommands.

use std::io::IsTerminal;

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

/// Whether `e` is, anywhere in its chain, a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
