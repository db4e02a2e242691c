//! Flags shared by every generating command.
//!
//! The float flags are parsed as finite numbers: `nan` and `inf` are refused by
//! clap before any model loads (`--temperature nan` used to sample garbage).

use diva_core::generate::SamplingParams;

/// A finite `f64` (clap names the flag in its error).
fn finite_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s} is not a finite number"))
    }
}

/// A finite `f32`.
fn finite_f32(s: &str) -> Result<f32, String> {
    let v = finite_f64(s)?;
    if v.abs() > f32::MAX as f64 {
        return Err(format!("{s} is out of range"));
    }
    Ok(v as f32)
}

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.0, value_parser = finite_f64)]
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens with this much mass.
    #[arg(long, value_parser = finite_f64)]
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Penalise recently generated tokens (1.0 = off).
    #[arg(long, default_value_t = 1.0, value_parser = finite_f32)]
    pub repeat_penalty: f32,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the reply contains this string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The checked parameters; commands call it before loading any model so a
    /// bad value fails at once.
    pub fn params(&self) -> anyhow::Result<SamplingParams> {
        if self.temperature < 0.0 {
            anyhow::bail!("--temperature must be >= 0 (0 means greedy)");
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) || p == 0.0 {
                anyhow::bail!("--top-p must be in (0, 1]");
            }
        }
        if self.repeat_penalty <= 0.0 {
            anyhow::bail!("--repeat-penalty must be > 0 (1.0 disables it)");
        }
        Ok(SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop_strings: self.stop.clone(),
        })
    }
}
