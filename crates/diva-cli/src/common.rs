//! Flags and set-up shared by subcommands.

use candle_core::DType;

/// Logs go to stderr so stdout stays clean for results.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
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
