//! diva-train: distillation training, the DiVA recipe.
//!
//! data (manifests, importers) → setup (frozen models, caches, examples) →
//! student (forward + losses) → optim (AdamW, schedule) → trainer (the loop,
//! checkpoints in run_state, validation in validate/metrics).

pub mod config;
pub mod data;
pub mod data_order;
pub mod features;
pub mod integrity;
pub mod losses;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod projection_init;
pub mod response;
pub mod run_state;
pub mod session;
pub mod setup;
pub mod student;
pub mod teacher_cache;
pub mod trainer;
pub mod validate;
pub mod virtual_transcript;
