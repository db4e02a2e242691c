//! The DiVA assembly against the official PyTorch logic on a tiny random
//! model (tools/reference/make_diva_fixture.py): an official-layout
//! checkpoint loads, its virtual tokens, the student's final hidden states and
//! next-token logits match, and save → load is bit-identical.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{fixtures, ids, json_ids, load_fixture, rel_l2};
use diva_core::models::checkpoint::{self, DivaConfig};
use diva_core::models::whisper::WhisperWeights;
use diva_core::models::Exec;
use diva_core::testing::{tiny_diva, TinyDiva};

#[test]
fn official_checkpoint_matches_pytorch() {
    // Loads the official-layout checkpoint and its references by relative path.
    let TinyDiva {
        config: cfg,
        whisper,
        llm,
        connector,
    } = tiny_diva(DType::F32);
    let fx = load_fixture("diva/expected.safetensors");
    for exec in [Exec::Fused, Exec::Autograd] {
        let states = whisper
            .encoder(DType::F32, &Device::Cpu)
            .unwrap()
            .forward(&fx["mel"])
            .unwrap();
        assert!(rel_l2(&states, &fx["encoder_out"]) < 1e-5);
        let virt = connector.forward(&states, exec).unwrap();
        let e = rel_l2(&virt, &fx["virtual_tokens"]);
        assert!(e <= 1e-4, "{exec:?} virtual tokens rel L2 {e}");

        let prefix = llm
            .embed(&ids(&json_ids(&cfg, "prompt_prefix_ids")))
            .unwrap();
        let suffix = llm
            .embed(&ids(&json_ids(&cfg, "prompt_suffix_ids")))
            .unwrap();
        let student = Tensor::cat(&[&prefix, &virt, &suffix], 1).unwrap();
        let h = llm.forward_embeds(&student, None, None, exec).unwrap();
        let eh = rel_l2(&h, &fx["student_hidden"]);
        let n = h.dim(1).unwrap();
        let logits = llm.logits(&h.i((.., n - 1)).unwrap()).unwrap();
        let el = rel_l2(&logits, &fx["student_last_logits"]);
        eprintln!("{exec:?}: virtual tokens {e:.2e}, student hidden {eh:.2e}, logits {el:.2e}");
        assert!(
            eh <= 1e-4 && el <= 1e-4,
            "{exec:?}: hidden {eh}, logits {el}"
        );
    }
}

#[test]
fn save_then_load_is_bit_identical() {
    let dir = fixtures().join("diva/checkpoint");
    let cfg = DivaConfig::read(&dir).unwrap();
    let whisper = WhisperWeights::load_dir(
        &DivaConfig::local_reference(&dir, &cfg.reference_encoder).unwrap(),
    )
    .unwrap();
    let c = checkpoint::load_connector(&dir, &whisper.config, DType::F32, &Device::Cpu).unwrap();
    let original =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let table = original["connector.embed_tokens.weight"].clone();

    let out = tempfile::tempdir().unwrap();
    checkpoint::save(out.path(), &c, &cfg, Some(&table)).unwrap();
    let written =
        candle_core::safetensors::load(out.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut keys: Vec<_> = original.keys().collect();
    keys.sort();
    let mut wkeys: Vec<_> = written.keys().collect();
    wkeys.sort();
    assert_eq!(
        keys, wkeys,
        "the full official key set, embed_tokens included"
    );
    for k in keys {
        let (a, b) = (&original[k], &written[k]);
        assert_eq!(a.dims(), b.dims(), "{k}");
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0, "{k} differs");
    }
    assert!(
        !out.path().join(".model.safetensors.tmp").exists(),
        "no temporary file left behind"
    );
    let back = DivaConfig::read(out.path()).unwrap();
    assert_eq!(back.reference_encoder, cfg.reference_encoder);
    assert_eq!(back.extra, cfg.extra);
}

#[test]
fn fresh_connector_follows_the_paper_init() {
    let whisper = WhisperWeights::load_dir(&fixtures().join("hf-whisper-random/model")).unwrap();
    let c = diva_core::models::connector::Connector::init(
        &whisper,
        16,
        48,
        7,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let q = c.queries.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let std = (q.iter().map(|v| v * v).sum::<f32>() / q.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.003, "query std {std}");
    let bound = 1.0 / 64f32.sqrt();
    let w = c
        .projection
        .weight
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > 0.9 * bound));
    assert_eq!(c.projection.weight.dims(), &[48, 64]);
    // Decoder blocks are Whisper's own weights.
    let src = &whisper.tensors["decoder.layers.1.fc2.weight"];
    assert_eq!(rel_l2(&c.decoder.layers[1].mlp.fc2.weight, src), 0.0);
    let again = diva_core::models::connector::Connector::init(
        &whisper,
        16,
        48,
        7,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(rel_l2(&again.queries, &c.queries), 0.0, "seeded");
    assert!(diva_core::models::connector::Connector::init(
        &whisper,
        65,
        48,
        7,
        DType::F32,
        &Device::Cpu
    )
    .is_err());
}
