//! diva-eval: metrics and evaluation tasks: word error rate for ASR, and the
//! blind A/B study's votes and win rates (`arena`).

pub mod arena;
pub mod asr;
pub mod manifest;
pub mod wer;
