//! diva-core: everything on the model side of diva.
//!
//! The modules follow the data path (see `ARCHITECTURE.md`):
//! `audio` (decode, resample, log-mel) → `models::whisper` (frozen encoder) → …
//! `weights` reads checkpoints of every supported layout into named tensors;
//! `text` holds tokenizers; `generate` turns models into text. `ops` is the layer under
//! `models`: CPU kernels (fused forward and backward) where candle's generic ones are
//! the bottleneck; it knows no model.

pub mod audio;
pub mod cpu_pools;
pub mod device;
pub mod error;
pub mod generate;
pub mod models;
pub mod ops;
pub mod testing;
pub mod text;
pub mod weights;

pub use error::{Error, Result};
