//! Helpers shared by the test suites of every crate: where the committed
//! fixtures live, fetched models, and tensor comparisons.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};

/// The repository's `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fixture safetensors file, by path relative to `tests/fixtures`.
pub fn load_fixture(rel: &str) -> HashMap<String, Tensor> {
    let p = fixtures().join(rel);
    candle_core::safetensors::load(&p, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// A fetched model directory; panics (tests fail, never skip) when missing,
/// since the test command fetches the models first.
pub fn real_model(dir: &str) -> PathBuf {
    let p = crate::weights::cache::models_dir().join(dir);
    assert!(
        crate::weights::cache::is_complete(&p),
        "{} is missing: run scripts/fetch-models (the test command does this)",
        p.display()
    );
    p
}

/// ‖a − b‖ / ‖b‖, computed in f64.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let f = |t: &Tensor| {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .expect("tensor to f64")
    };
    let (a, b) = (f(a), f(b));
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let norm = |t: &Tensor| {
        t.sqr()
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f64>())
            .expect("norm")
            .sqrt()
    };
    norm(&(&a - &b).expect("difference")) / norm(&b)
}

/// Largest absolute elementwise difference of two tensors (any dtype), in f64.
pub fn max_abs_diff_tensors(a: &Tensor, b: &Tensor) -> f64 {
    let f = |t: &Tensor| {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .expect("tensor to f64")
    };
    (f(a) - f(b))
        .and_then(|d| d.abs())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f64>())
        .expect("difference")
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The tiny random DiVA of `tests/fixtures/diva` (official-layout checkpoint
/// plus its reference Whisper and Llama), loaded in `dtype`.
pub struct TinyDiva {
    pub config: crate::models::checkpoint::DivaConfig,
    pub whisper: crate::models::whisper::WhisperWeights,
    pub llm: crate::models::llm::Llm,
    pub connector: crate::models::connector::Connector,
}

impl TinyDiva {
    /// Encoder states `[2, 1500, d]` of the fixture's two clips (`mel`, `mel2`
    /// of `diva/expected.safetensors`), the batch the loss fixtures use.
    pub fn batch_states(&self, dtype: DType) -> Tensor {
        let fx = load_fixture("diva/expected.safetensors");
        let mel = Tensor::cat(&[&fx["mel"], &fx["mel2"]], 0)
            .and_then(|m| m.to_dtype(dtype))
            .expect("fixture mels");
        let encoder = self
            .whisper
            .encoder(dtype, &candle_core::Device::Cpu)
            .expect("fixture encoder");
        encoder.forward(&mel).expect("fixture encoder states")
    }
}

pub fn tiny_diva(dtype: DType) -> TinyDiva {
    use crate::models::checkpoint::{self, DivaConfig};
    let dir = fixtures().join("diva/checkpoint");
    let config = DivaConfig::read(&dir).expect("fixture config");
    let reference = |r: &str| DivaConfig::local_reference(&dir, r).expect("fixture reference");
    let whisper =
        crate::models::whisper::WhisperWeights::load_dir(&reference(&config.reference_encoder))
            .expect("fixture Whisper");
    let llm = crate::models::llm::load_llm(
        &reference(&config.reference_decoder),
        crate::models::llm::WeightMode::Dense(dtype),
        &candle_core::Device::Cpu,
    )
    .expect("fixture LLM");
    let connector =
        checkpoint::load_connector(&dir, &whisper.config, dtype, &candle_core::Device::Cpu)
            .expect("fixture connector");
    TinyDiva {
        config,
        whisper,
        llm,
        connector,
    }
}
