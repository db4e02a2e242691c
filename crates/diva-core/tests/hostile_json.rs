//! Deeply nested JSON in the files diva reads is refused, not recursed into
//! until the stack runs out (issue 20): serde_json's recursion limit (128)
//! holds where a value is built (the `#[serde(flatten)]` extras of the
//! checkpoint config), and skipped fields are skipped without recursion.

use diva_core::models::checkpoint::DivaConfig;
use diva_core::models::llm::LlmConfig;

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_configs_are_errors() {
    let deep = nested(200_000);
    // An HF config.json that is one deep array, and one with a deep field.
    assert!(LlmConfig::from_hf_json(&deep).is_err());
    let field = format!(r#"{{"hidden_size": 8, "x": {deep}}}"#);
    // (serde_json skips an unknown field without recursing; the missing
    // fields are the error.)
    let e = LlmConfig::from_hf_json(&field).unwrap_err();
    assert!(e.contains("missing field"), "{e}");
    // A DiVA checkpoint config.json whose unknown (flattened) field is deep.
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(r#"{{"reference_encoder": "a", "reference_decoder": "b", "x": {deep}}}"#);
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let e = DivaConfig::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("recursion limit"), "{e}");
    // Nesting within the limit still reads.
    let ok = format!(
        r#"{{"reference_encoder": "a", "reference_decoder": "b", "x": {}}}"#,
        nested(100)
    );
    std::fs::write(dir.path().join("config.json"), ok).unwrap();
    assert!(DivaConfig::read(dir.path()).is_ok());
}

/// Issue 20, found by the `json_config` fuzzer: a config.json with 0 attention
/// heads divided by zero while deriving `head_dim`. Every impossible dimension
/// is now an error naming the field (the crasher is replayed from
/// `fuzz/regressions/json_config/` too).
#[test]
fn impossible_llm_dimensions_are_errors_not_panics() {
    let base = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
    });
    let ok = LlmConfig::from_hf_json(&base.to_string()).unwrap();
    assert_eq!((ok.head_dim, ok.num_kv_heads), (64, 3));
    for (field, value, needle) in [
        ("num_attention_heads", serde_json::json!(0), "num_attention_heads = 0"),
        ("num_key_value_heads", serde_json::json!(0), "num_key_value_heads = 0"),
        ("num_key_value_heads", serde_json::json!(2), "not a multiple"),
        ("hidden_size", serde_json::json!(0), "hidden_size = 0"),
        ("head_dim", serde_json::json!(1u64 << 40), "head_dim = 1099511627776"),
        ("max_position_embeddings", serde_json::json!(1u64 << 50), "max_position_embeddings"),
        ("vocab_size", serde_json::json!(0), "vocab_size = 0"),
        ("rms_norm_eps", serde_json::json!(0.0), "rms_norm_eps = 0"),
        ("rope_theta", serde_json::json!(-1.0), "rope_theta = -1"),
    ] {
        let mut c = base.clone();
        c[field] = value;
        let e = LlmConfig::from_hf_json(&c.to_string()).unwrap_err();
        assert!(e.contains(needle), "{field}: {e}");
    }
}
