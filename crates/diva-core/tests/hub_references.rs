//! A DiVA checkpoint whose config names its Whisper and LLM by hub id, as the
//! official WillHeld/DiVA-llama-3-v0-8b does, loads them through hf-hub from
//! the Hugging Face cache and matches the PyTorch reference.
//!
//! No hub is reachable here, so the test builds a Hugging Face cache
//! (`$HF_HOME/hub/models--owner--name/{refs/main,snapshots/REV/}`) holding the
//! tiny random fixture models under hub ids and runs with `HF_HUB_OFFLINE=1`.
//! The cache layout is the one `huggingface_hub` and hf-hub share. This file
//! is its own test binary because it sets process environment variables.

mod common;

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{fixtures, ids, json_ids, load_fixture, rel_l2};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::llm::{load_llm, WeightMode};
use diva_core::models::whisper::WhisperWeights;
use diva_core::models::Exec;

const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

/// Put `files` (copied from `src`, or written empty when absent there) into the
/// cache as the `main` snapshot of `id`.
fn cache_repo(hub: &Path, id: &str, src: &Path, files: &[&str]) {
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), REVISION).unwrap();
    let snap = repo.join("snapshots").join(REVISION);
    std::fs::create_dir_all(&snap).unwrap();
    for f in files {
        let from = src.join(f);
        if from.is_file() {
            std::fs::copy(&from, snap.join(f)).unwrap();
        } else {
            // Tokenizer files: the resolver requires them, loading weights does not read them.
            std::fs::write(snap.join(f), "{}").unwrap();
        }
    }
}

#[test]
fn hub_id_references_load_from_the_hf_cache_and_match_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let hf_home = tmp.path().join("hf");
    let hub = hf_home.join("hub");
    cache_repo(
        &hub,
        "openai/whisper-fixture",
        &fixtures().join("hf-whisper-random/model"),
        &["config.json", "tokenizer.json", "model.safetensors"],
    );
    cache_repo(
        &hub,
        "meta-llama/llama-fixture",
        &fixtures().join("llm/llama_tiny/model"),
        &[
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
        ],
    );
    // The official layout with hub-id references, in a directory of its own.
    let model = tmp.path().join("diva");
    std::fs::create_dir_all(&model).unwrap();
    let src = fixtures().join("diva/checkpoint");
    std::fs::copy(
        src.join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["reference_encoder"] = "openai/whisper-fixture".into();
    config["reference_decoder"] = "meta-llama/llama-fixture".into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();

    std::env::set_var("HF_HOME", &hf_home);
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let cfg = DivaConfig::read(&model).unwrap();
    let (enc_dir, llm_dir) = cfg.resolve_references(&model).unwrap();
    assert!(
        enc_dir.starts_with(&hub) && enc_dir.ends_with(REVISION),
        "{enc_dir:?}"
    );
    assert!(
        llm_dir.starts_with(&hub) && llm_dir.ends_with(REVISION),
        "{llm_dir:?}"
    );

    let whisper = WhisperWeights::load_dir(&enc_dir).unwrap();
    let llm = load_llm(&llm_dir, WeightMode::Dense(DType::F32), &Device::Cpu).unwrap();
    let connector =
        checkpoint::load_connector(&model, &whisper.config, DType::F32, &Device::Cpu).unwrap();
    let fx = load_fixture("diva/expected.safetensors");
    let states = whisper
        .encoder(DType::F32, &Device::Cpu)
        .unwrap()
        .forward(&fx["mel"])
        .unwrap();
    let virt = connector.forward(&states, Exec::Fused).unwrap();
    let ev = rel_l2(&virt, &fx["virtual_tokens"]);
    let student = Tensor::cat(
        &[
            &llm.embed(&ids(&json_ids(&cfg, "prompt_prefix_ids")))
                .unwrap(),
            &virt,
            &llm.embed(&ids(&json_ids(&cfg, "prompt_suffix_ids")))
                .unwrap(),
        ],
        1,
    )
    .unwrap();
    let h = llm
        .forward_embeds(&student, None, None, Exec::Fused)
        .unwrap();
    let n = h.dim(1).unwrap();
    let logits = llm.logits(&h.i((.., n - 1)).unwrap()).unwrap();
    let el = rel_l2(&logits, &fx["student_last_logits"]);
    assert!(ev <= 1e-4 && el <= 1e-4, "virtual tokens {ev}, logits {el}");

    // A repo the cache lacks, offline: an error naming the repo, the cache and the remedy.
    let mut missing = cfg.clone();
    missing.reference_decoder = "meta-llama/not-cached".into();
    let err = missing.resolve_references(&model).unwrap_err().to_string();
    assert!(
        err.contains("meta-llama/not-cached")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains(&hub.display().to_string()),
        "{err}"
    );
}
