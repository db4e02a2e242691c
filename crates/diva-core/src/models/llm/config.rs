//! The decoder's dimensions, from HF `config.json` or GGUF metadata.

use serde::Deserialize;

use crate::weights::gguf::GgufFile;
use crate::Result;

/// Which family: both share one decoder; Qwen2 adds q/k/v biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
}

/// How RoPE pairs dimensions. HF checkpoints rotate halves (`rotate_half`);
/// llama.cpp's converter permutes Llama's q/k rows so that it can rotate
/// adjacent pairs instead. Attention scores are identical either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Half,
    Interleaved,
}

/// Llama 3's frequency-dependent RoPE scaling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub rope_style: RopeStyle,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<serde_json::Value>,
    /// transformers ≥ 5 writes `rope_theta` and the scaling here instead.
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_ctx")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
}

fn default_theta() -> f64 {
    10_000.0
}
fn default_ctx() -> usize {
    2048
}

impl LlmConfig {
    /// Parse an HF `config.json`. Unknown architectures are refused by name.
    pub fn from_hf_json(text: &str) -> std::result::Result<Self, String> {
        let c: HfConfig =
            serde_json::from_str(text).map_err(|e| format!("not a decoder LLM config: {e}"))?;
        let kind = c
            .model_type
            .clone()
            .or_else(|| c.architectures.first().cloned())
            .unwrap_or_default();
        let family = match kind.to_ascii_lowercase().as_str() {
            "llama" | "llamaforcausallm" | "mistral" => Family::Llama,
            "qwen2" | "qwen2forcausallm" => Family::Qwen2,
            other => {
                return Err(format!(
                    "unsupported architecture `{other}`: diva runs the Llama family (Llama 2/3, SmolLM2, TinyLlama) and Qwen2/2.5"
                ))
            }
        };
        let mut rope_theta = c.rope_theta;
        let mut scaling = c.rope_scaling.clone();
        if let Some(p) = &c.rope_parameters {
            if let Some(t) = p.get("rope_theta").and_then(|t| t.as_f64()) {
                rope_theta = t;
            }
            if scaling.is_none() {
                scaling = Some(p.clone());
            }
        }
        let rope_scaling = match &scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let kind = v
                    .get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                match kind {
                    "llama3" => Some(
                        serde_json::from_value(v.clone())
                            .map_err(|e| format!("rope_scaling: {e}"))?,
                    ),
                    "default" | "" => None,
                    other => {
                        return Err(format!(
                            "unsupported rope_scaling type `{other}` (supported: llama3)"
                        ))
                    }
                }
            }
        };
        Self {
            family,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            // `checked_div`: a hostile or broken file may say 0 heads (validate() names it).
            head_dim: c.head_dim.unwrap_or(
                c.hidden_size
                    .checked_div(c.num_attention_heads)
                    .unwrap_or(0),
            ),
            rms_norm_eps: c.rms_norm_eps,
            rope_theta,
            rope_scaling,
            rope_style: RopeStyle::Half,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            attention_bias: c.attention_bias.unwrap_or(family == Family::Qwen2),
        }
        .validated()
    }

    /// The dimensions a decoder can be built with: every size positive, the
    /// query heads a multiple of the key/value heads, epsilon and theta finite and
    /// positive, and nothing so large that only a hostile file would claim it (the
    /// RoPE tables and KV cache are sized from these before any weight is read).
    fn validated(self) -> std::result::Result<Self, String> {
        const MAX_DIM: usize = 1 << 20;
        const MAX_POSITIONS: usize = 1 << 24;
        for (name, v, max) in [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("intermediate_size", self.intermediate_size, 4 * MAX_DIM),
            ("num_hidden_layers", self.num_layers, 4096),
            ("num_attention_heads", self.num_heads, 4096),
            ("num_key_value_heads", self.num_kv_heads, 4096),
            ("head_dim", self.head_dim, 8192),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ] {
            if v == 0 || v > max {
                return Err(format!(
                    "{name} = {v}: must be between 1 and {max} (a damaged or non-LLM config)"
                ));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(format!(
                "num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        for (name, v) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} = {v}: must be a positive finite number"));
            }
        }
        Ok(self)
    }

    /// Read the config from GGUF metadata (`general.architecture` + `<arch>.*`).
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.string("general.architecture")?;
        let family = match arch.as_str() {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            other => {
                return Err(crate::Error::model(
                    &g.path,
                    format!(
                        "unsupported architecture `{other}`: diva runs llama and qwen2 GGUF models"
                    ),
                ))
            }
        };
        let k = |s: &str| format!("{arch}.{s}");
        let hidden = g.u64(&k("embedding_length"))? as usize;
        let heads = g.u64(&k("attention.head_count"))? as usize;
        let vocab = match g.get(&k("vocab_size")) {
            Some(_) => g.u64(&k("vocab_size"))? as usize,
            None => g
                .content
                .tensor_infos
                .get("token_embd.weight")
                .map(|t| t.shape.dims()[0])
                .unwrap_or(0),
        };
        let head_dim = match g.get(&k("rope.dimension_count")) {
            Some(_) => g.u64(&k("rope.dimension_count"))? as usize,
            None => hidden.checked_div(heads).unwrap_or(0),
        };
        Self {
            family,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: g.u64(&k("feed_forward_length"))? as usize,
            num_layers: g.u64(&k("block_count"))? as usize,
            num_heads: heads,
            num_kv_heads: g
                .get(&k("attention.head_count_kv"))
                .map_or(Ok(heads as u64), |_| g.u64(&k("attention.head_count_kv")))?
                as usize,
            head_dim,
            rms_norm_eps: g.f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: g
                .get(&k("rope.freq_base"))
                .map_or(Ok(10_000.0), |_| g.f64(&k("rope.freq_base")))?,
            rope_scaling: None,
            // llama.cpp permutes Llama's q/k for adjacent-pair rotation; Qwen2 is NeoX-style.
            rope_style: if family == Family::Llama {
                RopeStyle::Interleaved
            } else {
                RopeStyle::Half
            },
            max_position_embeddings: g.u64(&k("context_length"))? as usize,
            tie_word_embeddings: !g.has_tensor("output.weight"),
            attention_bias: g.has_tensor("blk.0.attn_q.bias"),
        }
        .validated()
        .map_err(|e| crate::Error::model(&g.path, e))
    }
}
