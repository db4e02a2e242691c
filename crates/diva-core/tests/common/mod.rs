//! Shared helpers for diva-core's integration tests (see `diva_core::testing`).
#![allow(unused_imports, dead_code)]

pub use diva_core::testing::{fixtures, load_fixture, max_abs_diff, real_model, rel_l2};

use candle_core::{Device, Tensor};
use diva_core::models::checkpoint::DivaConfig;

/// Token ids as a `[1, n]` tensor.
pub fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// A list of ids from the fixture config's extra fields (`prompt_prefix_ids`, …).
pub fn json_ids(cfg: &DivaConfig, key: &str) -> Vec<u32> {
    cfg.extra[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}
