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
