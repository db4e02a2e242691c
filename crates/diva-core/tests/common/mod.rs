//! Shared helpers for diva-core's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{DType, Tensor};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fetched model directory; fails (never skips) when it is missing, since
/// the test command fetches the models first.
pub fn real_model(dir: &str) -> PathBuf {
    let p = diva_core::weights::cache::models_dir().join(dir);
    assert!(
        diva_core::weights::cache::is_complete(&p),
        "{} is missing: run scripts/fetch-models (the test command does this)",
        p.display()
    );
    p
}

pub fn load_fixture(rel: &str) -> std::collections::HashMap<String, Tensor> {
    let p = fixtures().join(rel);
    candle_core::safetensors::load(&p, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// ‖a − b‖ / ‖b‖ in f64.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let d = (&a - &b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt();
    d / b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
