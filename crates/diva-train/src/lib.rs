//! diva-train: distillation training. So far: the two DiVA losses.

pub mod losses;
