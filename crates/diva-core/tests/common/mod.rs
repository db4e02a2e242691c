//! Shared helpers for diva-core's integration tests (see `diva_core::testing`).
#![allow(unused_imports)]

pub use diva_core::testing::{fixtures, load_fixture, max_abs_diff, real_model, rel_l2};
