//! Whisper tiny.en on real weights (CTranslate2 f16 from the fetch script):
//! encoder parity with CTranslate2, precision variants, and broken model files.

mod common;

use std::io::Read;

use candle_core::{DType, Device};
use common::{load_fixture, real_model, rel_l2};
use diva_core::models::whisper::{WhisperFormat, WhisperWeights};

#[test]
fn encoder_matches_ctranslate2_on_a_real_clip() {
    let w = WhisperWeights::load_dir(&real_model("whisper-tiny.en")).unwrap();
    assert_eq!(w.format, WhisperFormat::Ctranslate2);
    assert_eq!(
        (
            w.config.d_model,
            w.config.encoder_layers,
            w.config.encoder_attention_heads
        ),
        (384, 4, 6)
    );
    let fx = load_fixture("encoder/tiny_en_ct2.safetensors");
    let mel = fx["mel"].unsqueeze(0).unwrap();
    let states = w
        .encoder(DType::F32, &Device::Cpu)
        .unwrap()
        .forward(&mel)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let e = rel_l2(&states, &fx["encoder_out"]);
    eprintln!("tiny.en encoder vs CTranslate2 (f32): rel L2 {e:.2e}");
    assert!(e <= 1e-3, "rel L2 {e}");

    for (dtype, tol) in [(DType::F16, 5e-3), (DType::BF16, 3e-2)] {
        let s = w
            .encoder(dtype, &Device::Cpu)
            .unwrap()
            .forward(&mel)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let e = rel_l2(&s, &fx["encoder_out"]);
        eprintln!("tiny.en encoder {dtype:?}: rel L2 {e:.2e}");
        assert!(e <= tol, "{dtype:?} rel L2 {e}");
    }
}

fn copy_dir_with_model_bin(bytes: &[u8]) -> tempfile::TempDir {
    let src = real_model("whisper-tiny.en");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("model.bin"), bytes).unwrap();
    dir
}

#[test]
fn truncated_model_file_is_reported_not_panicked() {
    let mut head = vec![0u8; 3_000_000];
    std::fs::File::open(real_model("whisper-tiny.en").join("model.bin"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let dir = copy_dir_with_model_bin(&head);
    let e = WhisperWeights::load_dir(dir.path())
        .err()
        .expect("truncated file must fail")
        .to_string();
    assert!(e.contains("model.bin") && e.contains("truncated"), "{e}");
}

#[test]
fn wrong_model_file_is_reported() {
    // The LLM's GGUF file is not a Whisper model.bin.
    let mut gguf = vec![0u8; 4096];
    std::fs::File::open(real_model("smollm2-135m-instruct").join("model.gguf"))
        .unwrap()
        .read_exact(&mut gguf)
        .unwrap();
    let dir = copy_dir_with_model_bin(&gguf);
    let e = WhisperWeights::load_dir(dir.path())
        .err()
        .expect("GGUF must be rejected")
        .to_string();
    assert!(e.contains("model.bin") && e.contains("CTranslate2"), "{e}");
    let dir = copy_dir_with_model_bin(b"");
    let e = WhisperWeights::load_dir(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("empty"), "{e}");
}
