//! Clear errors for bad LLM inputs: unknown architectures, unsupported
//! quantization types, and prompts longer than the context window.

mod common;

use candle_core::{DType, Device};
use common::{fixtures, real_model};
use diva_core::generate::{SamplingParams, TextGenerator};
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::text::LlmTokenizer;

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "gpt_neox", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "rms_norm_eps": 1e-5}"#,
    )
    .unwrap();
    let e = load_llm(dir.path(), WeightMode::Dense(DType::F32), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unsupported architecture `gpt_neox`"), "{e}");
}

/// A minimal GGUF v3 file with one tensor of ggml type `code`.
fn gguf_with_tensor_type(code: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes()); // string
    s(&mut b, "llama");
    s(&mut b, "blk.0.attn_q.weight");
    b.extend(2u32.to_le_bytes());
    b.extend(256u64.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(code.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(vec![0u8; 4096]);
    b
}

#[test]
fn unsupported_quant_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("iq2.gguf");
    std::fs::write(&p, gguf_with_tensor_type(16)).unwrap();
    let e = load_llm(&p, WeightMode::Quantized, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("IQ2_XXS") && e.contains("iq2.gguf"), "{e}");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let e = load_llm(&p, WeightMode::Quantized, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a valid GGUF"), "{e}");
}

#[test]
fn prompt_longer_than_the_context_window_is_refused() {
    // The tiny Llama has a 256-position window.
    let llm = load_llm(
        &fixtures().join("llm/llama_tiny/model"),
        WeightMode::Dense(DType::F32),
        &Device::Cpu,
    )
    .unwrap();
    let tok =
        LlmTokenizer::from_gguf(&real_model("smollm2-135m-instruct").join("model.gguf")).unwrap();
    let g = TextGenerator::new(&llm, &tok);
    let mut cache = llm.new_cache();
    let e = g
        .generate_ids(&[5u32; 300], &mut cache, &SamplingParams::default(), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("300 tokens") && e.contains("context window of 256"),
        "{e}"
    );
    // A prompt that fits runs.
    let out = g.generate_ids(
        &[5u32; 10],
        &mut cache,
        &SamplingParams {
            max_tokens: 3,
            ..Default::default()
        },
        |_| {},
    );
    assert!(out.is_ok(), "{:?}", out.err());
}

/// Which files make candle's quantized kernels (and their thread pool) run:
/// `diva chat` uses this to pick its CPU thread-pool set-up. Every stored
/// weight type runs on diva's `kernels::quant` (rayon's pool) now; only a
/// re-quantization to Q8_K would use candle's `QMatMul`.
#[test]
fn keeps_quantized_weights_reads_the_projection_types() {
    use candle_core::quantized::GgmlDType;
    use diva_core::models::llm::keeps_quantized_weights;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    // ggml type codes: 12 = Q4_K, 8 = Q8_0, 3 = Q4_1, 6 = Q5_0, 0 = F32.
    for (code, candle) in [
        (12u32, false),
        (8, false),
        (3, false),
        (6, false),
        (0, false),
    ] {
        std::fs::write(&p, gguf_with_tensor_type(code)).unwrap();
        assert_eq!(
            keeps_quantized_weights(&p, WeightMode::Quantized).unwrap(),
            candle,
            "type {code}"
        );
        assert!(!keeps_quantized_weights(&p, WeightMode::Dense(DType::F32)).unwrap());
    }
    let smollm2 = real_model("smollm2-135m-instruct").join("model.gguf");
    assert!(!keeps_quantized_weights(&smollm2, WeightMode::Quantized).unwrap());
    assert!(!keeps_quantized_weights(&smollm2, WeightMode::Requantized(GgmlDType::Q8_0)).unwrap());
    assert!(!keeps_quantized_weights(&smollm2, WeightMode::Requantized(GgmlDType::Q4K)).unwrap());
    assert!(keeps_quantized_weights(&smollm2, WeightMode::Requantized(GgmlDType::Q8K)).unwrap());
    // A file that is not GGUF is an error, not `false`.
    std::fs::write(&p, b"not a model").unwrap();
    assert!(keeps_quantized_weights(&p, WeightMode::Quantized).is_err());
}

/// `--llm-weights auto`: SmolLM2 (135 M parameters, 0.5 GB as f32) runs
/// exact, in f32 arithmetic on its stored blocks; `stored` and `f32` are
/// what they say; an HF directory is dense f32; a model that is not there
/// is an error, not a guess.
#[test]
fn llm_weights_auto_runs_small_models_exact() {
    use diva_core::models::llm::{LlmWeights, EXACT_DEFAULT_BYTES};
    let smollm2 = real_model("smollm2-135m-instruct").join("model.gguf");
    let cpu = Device::Cpu;
    let mode = |w: LlmWeights| w.mode(&smollm2, &cpu, DType::F16).unwrap();
    assert_eq!(mode(LlmWeights::Auto), WeightMode::StoredF32);
    assert_eq!(mode(LlmWeights::Stored), WeightMode::Quantized);
    assert_eq!(mode(LlmWeights::F32), WeightMode::StoredF32);
    assert_eq!(EXACT_DEFAULT_BYTES, 2 << 30);
    let dir = tempfile::tempdir().unwrap();
    for w in [LlmWeights::Auto, LlmWeights::F32] {
        assert_eq!(
            w.mode(dir.path(), &cpu, DType::F16).unwrap(),
            WeightMode::Dense(DType::F32),
            "{w:?} on an HF directory"
        );
    }
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, b"not a model").unwrap();
    assert!(LlmWeights::Auto.mode(&p, &cpu, DType::F32).is_err());
}
