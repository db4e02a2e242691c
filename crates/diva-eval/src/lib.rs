//! diva-eval: metrics and evaluation tasks. So far: word error rate for ASR.

pub mod asr;
pub mod manifest;
pub mod wer;
