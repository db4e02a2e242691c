//! The teacher cache on the real SmolLM2: targets equal a direct forward pass,
//! a reopened cache computes nothing again (resumable), and a cache made for
//! another model is refused.

use candle_core::{DType, Device, IndexOp};
use diva_core::models::diva::PromptSplit;
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::models::Exec;
use diva_core::testing::{real_model, rel_l2};
use diva_core::text::LlmTokenizer;
use diva_train::teacher_cache::TeacherCache;

#[test]
fn targets_are_exact_cached_and_resumable() {
    let gguf = real_model("smollm2-135m-instruct").join("model.gguf");
    let llm = load_llm(&gguf, WeightMode::Dense(DType::F32), &Device::Cpu).unwrap();
    let tok = LlmTokenizer::from_gguf(&gguf).unwrap();
    let split = PromptSplit::from_template(&tok, None).unwrap();
    let transcripts: Vec<String> = [
        "What is the capital of France?",
        "Please enter your mailbox number.",
        "Tell me a joke.",
    ]
    .map(String::from)
    .to_vec();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("teacher.safetensors");

    let mut cache = TeacherCache::open(&path, "smollm2-q4_1").unwrap();
    // Interrupted after the first two: saved every entry.
    assert_eq!(
        cache
            .fill(&llm, &tok, &split, &transcripts[..2], 1, |_| {})
            .unwrap(),
        2
    );
    drop(cache);
    let mut cache = TeacherCache::open(&path, "smollm2-q4_1").unwrap();
    assert_eq!(cache.len(), 2, "the saved entries survive a restart");
    assert_eq!(
        cache
            .fill(&llm, &tok, &split, &transcripts, 1, |_| {})
            .unwrap(),
        1,
        "only the missing one"
    );

    for t in &transcripts {
        let ids = tok.encode(t, false).unwrap();
        let h = llm
            .forward_embeds(&split.teacher(&llm, &ids).unwrap(), None, None, Exec::Fused)
            .unwrap();
        let direct = h.i((0, h.dim(1).unwrap() - 1)).unwrap();
        assert_eq!(rel_l2(cache.get(t).unwrap(), &direct), 0.0, "{t}");
    }
    assert!(cache.get("never seen").is_none());
    let e = TeacherCache::open(&path, "another-model")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("another-model") && e.contains("smollm2-q4_1"),
        "{e}"
    );
    assert!(!dir.path().join("teacher.safetensors.tmp").exists());
}
