//! diva-train
