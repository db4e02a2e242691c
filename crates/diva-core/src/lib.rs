//! diva-core: everything on the model side of diva.
//!
//! The modules follow the data path (see `ARCHITECTURE.md`):
//! `audio` (decode, resample, log-mel) → `models::whisper` (frozen encoder) → …
//! `weights` reads checkpoints of every supported layout into named tensors;
//! `text` holds tokenizers; `generate` turns models into text.

pub mod audio;
pub mod cpu_pools;
pub mod device;
pub mod error;
pub mod generate;
pub mod models;
pub mod testing;
pub mod text;
pub mod weights;

pub use error::{Error, Result};
