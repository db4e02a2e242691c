//! Whisper from HF safetensors directories: parity with transformers on a tiny
//! random model (fixture from tools/reference/make_hf_whisper_fixture.py), the
//! sharded layout, and a checkpoint written by the test itself.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{fixtures, load_fixture, rel_l2};
use diva_core::models::whisper::{WhisperFormat, WhisperWeights};
use diva_core::models::Exec;

fn check_against_transformers(dir: &str) {
    let w = WhisperWeights::load_dir(&fixtures().join("hf-whisper-random").join(dir)).unwrap();
    assert_eq!(w.format, WhisperFormat::HfSafetensors);
    let exp = load_fixture("hf-whisper-random/expected.safetensors");
    let enc = w.encoder(DType::F32, &Device::Cpu).unwrap();
    let mel = exp["mel"].to_dtype(DType::F32).unwrap();
    let states = enc.forward(&mel).unwrap();
    let e = rel_l2(&states, &exp["encoder_out"]);
    assert!(e < 1e-5, "encoder rel L2 {e}");

    let dec = w.decoder(DType::F32, &Device::Cpu, true).unwrap();
    let ids = exp["decoder_ids"].to_dtype(DType::U32).unwrap();
    let mut cache = dec.new_cache(&states).unwrap();
    let logits = dec.forward_tokens(&ids, &mut cache).unwrap();
    let e = rel_l2(&logits, &exp["logits"]);
    assert!(e < 1e-5, "logits rel L2 {e}");

    // Incremental decoding with the KV cache gives the same logits as one pass.
    let mut cache = dec.new_cache(&states).unwrap();
    let n = ids.dim(1).unwrap();
    let mut steps = Vec::new();
    for t in 0..n {
        steps.push(
            dec.forward_tokens(&ids.narrow(1, t, 1).unwrap(), &mut cache)
                .unwrap(),
        );
    }
    let stepwise = Tensor::cat(&steps, 1).unwrap();
    let e = rel_l2(&stepwise, &exp["logits"]);
    assert!(e < 1e-5, "cached decoding rel L2 {e}");

    // The differentiable execution computes the same hidden states.
    let table = dec.embed_tokens.clone().unwrap();
    let x = table
        .index_select(&ids.flatten_all().unwrap(), 0)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .broadcast_add(&dec.embed_positions.narrow(0, 0, n).unwrap())
        .unwrap();
    for exec in [Exec::Fused, Exec::Autograd] {
        let mut cache = dec.new_cache(&states).unwrap();
        let h = dec.forward_embeds(&x, &mut cache, exec).unwrap();
        let e = rel_l2(&h, &exp["decoder_hidden"]);
        assert!(e < 1e-5, "{exec:?} decoder hidden rel L2 {e}");
    }
}

#[test]
fn single_file_checkpoint_matches_transformers() {
    check_against_transformers("model");
}

#[test]
fn sharded_checkpoint_matches_transformers() {
    let shards = std::fs::read_dir(fixtures().join("hf-whisper-random/model-sharded"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
        })
        .count();
    assert!(
        shards >= 2,
        "fixture should be sharded, has {shards} file(s)"
    );
    check_against_transformers("model-sharded");
}

#[test]
fn half_precision_tracks_f32() {
    let w = WhisperWeights::load_dir(&fixtures().join("hf-whisper-random/model")).unwrap();
    let exp = load_fixture("hf-whisper-random/expected.safetensors");
    for (dtype, tol) in [(DType::F16, 5e-3), (DType::BF16, 3e-2)] {
        let states = w
            .encoder(dtype, &Device::Cpu)
            .unwrap()
            .forward(&exp["mel"])
            .unwrap();
        assert_eq!(states.dtype(), dtype);
        let e = rel_l2(&states, &exp["encoder_out"]);
        assert!(e < tol, "{dtype:?} encoder rel L2 {e}");
    }
}

/// A checkpoint written here, in HF names with the `model.` prefix and two
/// shards plus an index, loads to exactly the tensors that were written.
#[test]
fn hf_directory_written_by_the_test_loads_exactly() {
    let (d, ffn, mels, vocab, layers) = (8usize, 16usize, 4usize, 11usize, 1usize);
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: &str, shape: &[usize]| {
        t.insert(
            format!("model.{name}"),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
        );
    };
    add("encoder.conv1.weight", &[d, mels, 3]);
    add("encoder.conv1.bias", &[d]);
    add("encoder.conv2.weight", &[d, d, 3]);
    add("encoder.conv2.bias", &[d]);
    add("encoder.embed_positions.weight", &[1500, d]);
    add("encoder.layer_norm.weight", &[d]);
    add("encoder.layer_norm.bias", &[d]);
    add("decoder.embed_tokens.weight", &[vocab, d]);
    add("decoder.embed_positions.weight", &[448, d]);
    add("decoder.layer_norm.weight", &[d]);
    add("decoder.layer_norm.bias", &[d]);
    for side in ["encoder", "decoder"] {
        for l in 0..layers {
            let p = format!("{side}.layers.{l}");
            let attns: &[&str] = if side == "encoder" {
                &["self_attn"]
            } else {
                &["self_attn", "encoder_attn"]
            };
            for a in attns {
                for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                    add(&format!("{p}.{a}.{proj}.weight"), &[d, d]);
                    if proj != "k_proj" {
                        add(&format!("{p}.{a}.{proj}.bias"), &[d]);
                    }
                }
                add(&format!("{p}.{a}_layer_norm.weight"), &[d]);
                add(&format!("{p}.{a}_layer_norm.bias"), &[d]);
            }
            add(&format!("{p}.fc1.weight"), &[ffn, d]);
            add(&format!("{p}.fc1.bias"), &[ffn]);
            add(&format!("{p}.fc2.weight"), &[d, ffn]);
            add(&format!("{p}.fc2.bias"), &[d]);
            add(&format!("{p}.final_layer_norm.weight"), &[d]);
            add(&format!("{p}.final_layer_norm.bias"), &[d]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (enc, dec): (HashMap<_, _>, HashMap<_, _>) = t
        .clone()
        .into_iter()
        .partition(|(k, _)| k.contains("encoder"));
    candle_core::safetensors::save(&enc, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&dec, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    let weight_map: serde_json::Map<String, serde_json::Value> = t
        .keys()
        .map(|k| {
            let f = if k.contains("encoder") {
                "model-00001-of-00002.safetensors"
            } else {
                "model-00002-of-00002.safetensors"
            };
            (k.clone(), serde_json::Value::from(f))
        })
        .collect();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({
            "num_mel_bins": mels, "d_model": d, "encoder_layers": layers, "decoder_layers": layers,
            "encoder_attention_heads": 2, "decoder_attention_heads": 2,
            "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn, "vocab_size": vocab,
        })
        .to_string(),
    )
    .unwrap();

    let w = WhisperWeights::load_dir(dir.path()).unwrap();
    assert_eq!(w.tensors.len(), t.len());
    for (k, v) in &t {
        let got = &w.tensors[k.strip_prefix("model.").unwrap()];
        assert_eq!(rel_l2(got, v), 0.0, "{k}");
    }
    let enc = w.encoder(DType::F32, &dev).unwrap();
    let mel = Tensor::randn(0f32, 1.0, (1, mels, 3000), &dev).unwrap();
    assert_eq!(enc.forward(&mel).unwrap().dims(), &[1, 1500, d]);
    let dec = w.decoder(DType::F32, &dev, false).unwrap();
    assert!(dec.embed_tokens.is_none(), "the token table is optional");
}

#[test]
fn directories_without_weights_or_config_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let e = WhisperWeights::load_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let e = WhisperWeights::load_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a Whisper config"), "{e}");
}
