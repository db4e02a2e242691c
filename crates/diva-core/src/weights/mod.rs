//! Reading checkpoints of every supported layout into named tensors.
//!
//! Each reader returns a plain `name → Tensor` map in the file's own naming;
//! models translate names (if at all) in one place next to their code.
//! Where the files come from: the model cache and name resolution (`cache`),
//! the pinned base models (`pins`) and their installer (`fetch`), and the
//! model compiled into the binary (`shipped`).

pub mod cache;
pub mod ct2;
pub mod fetch;
pub mod gguf;
pub mod hf;
pub mod pins;
pub mod random;
pub mod safetensors_io;
pub mod shipped;

use std::collections::HashMap;

use candle_core::Tensor;

/// Named tensors as read from a checkpoint.
pub type TensorMap = HashMap<String, Tensor>;
