//! The chat template's constant prefix is computed once and shared
//! (`PromptSplit::prefix_cache` + `after_prefix`): it must give the model
//! exactly the function of the whole prompt, real SmolLM2 weights.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{real_model, rel_l2};
use diva_core::generate::{SamplingParams, TextGenerator};
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::models::Exec;
use diva_core::text::LlmTokenizer;

#[test]
fn cached_prefix_gives_the_whole_prompts_hidden_states_and_reply() {
    let path = real_model("smollm2-135m-instruct").join("model.gguf");
    // The f32 product: under `Quantized` the whole prompt (≥ 16 rows) and
    // the 12 rows after the prefix take different arithmetic (f32 panels
    // vs 8-bit activations; `kernels::quant_f32`), which is not the cache's
    // doing.
    let llm = load_llm(&path, WeightMode::StoredF32, &Device::Cpu).unwrap();
    let tok = LlmTokenizer::from_gguf(&path).unwrap();
    let split = PromptSplit::from_template(&tok, None).unwrap();
    assert!(
        split.prefix.len() > 10,
        "SmolLM2 has a default system prompt"
    );

    // Virtual tokens at the scale of token embeddings.
    let middle = (Tensor::randn(0f32, 1.0, (1, 9, llm.hidden_size()), &Device::Cpu).unwrap()
        * 0.05)
        .unwrap();
    let whole = split.assemble(&llm, &middle).unwrap();
    let after = split.after_prefix(&llm, &middle).unwrap();
    assert_eq!(after.dim(1).unwrap(), 9 + split.suffix.len());
    assert_eq!(
        whole.dim(1).unwrap(),
        split.prefix.len() + after.dim(1).unwrap()
    );

    let prefix_kv = split.prefix_cache(&llm).unwrap();
    assert_eq!(prefix_kv.len(), split.prefix.len());
    let last = |h: &Tensor| h.i((.., h.dim(1).unwrap() - 1, ..)).unwrap();
    let mut kv = llm.new_cache();
    let h_whole = llm
        .forward_embeds(&whole, None, Some(&mut kv), Exec::Fused)
        .unwrap();
    let mut kv_cached = prefix_kv.clone();
    let h_cached = llm
        .forward_embeds(&after, None, Some(&mut kv_cached), Exec::Fused)
        .unwrap();
    let e = rel_l2(
        &last(&h_whole).to_dtype(DType::F64).unwrap(),
        &last(&h_cached).to_dtype(DType::F64).unwrap(),
    );
    assert!(e < 1e-5, "last hidden state rel L2 {e}");
    // Forking left the shared prefix untouched.
    assert_eq!(prefix_kv.len(), split.prefix.len());
    assert_eq!(kv_cached.len(), kv.len());

    // The same greedy reply either way.
    let g = TextGenerator::new(&llm, &tok);
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 12,
        ..Default::default()
    };
    let a = g
        .generate_embeds(&whole, &mut llm.new_cache(), &params, |_| {})
        .unwrap();
    let b = g
        .generate_embeds(&after, &mut prefix_kv.clone(), &params, |_| {})
        .unwrap();
    assert_eq!(a.ids, b.ids);
    assert!(!a.ids.is_empty());
}
