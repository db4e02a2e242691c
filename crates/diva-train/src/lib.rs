//! diva-train: distillation training. So far: the two DiVA losses.

pub mod data;
pub mod losses;
pub mod optim;
pub mod teacher_cache;
