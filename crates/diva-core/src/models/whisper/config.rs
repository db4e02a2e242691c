//! Whisper's dimensions, in HF `config.json` field names.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WhisperConfig {
    pub num_mel_bins: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_layers: usize,
    pub decoder_attention_heads: usize,
    #[serde(default)]
    pub encoder_ffn_dim: usize,
    #[serde(default)]
    pub decoder_ffn_dim: usize,
    #[serde(default = "default_source_positions")]
    pub max_source_positions: usize,
    #[serde(default = "default_target_positions")]
    pub max_target_positions: usize,
    pub vocab_size: usize,
}

fn default_source_positions() -> usize {
    1500
}
fn default_target_positions() -> usize {
    448
}

impl WhisperConfig {
    /// Every released Whisper uses 64-dimensional heads; used when a format
    /// does not store the head count.
    pub const HEAD_DIM: usize = 64;

    /// Whether the model is multilingual (its vocabulary has language tokens).
    pub fn is_multilingual(&self) -> bool {
        self.vocab_size >= 51865
    }
}
