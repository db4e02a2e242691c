//! diva-eval: metrics and evaluation tasks: word error rate for ASR; BLEU and
//! chrF as sacrebleu computes them, classification accuracy and weighted F1
//! with label extraction from replies, spoken-QA exact match, token F1 and
//! PEDANTS, and paired bootstrap intervals and p-values between two systems;
//! the blind A/B study's votes and win rates (`arena`); and `diva eval run`:
//! tasks and prompts (`tasks`), the runner (`run`) and its report (`report`);
//! importers of the evaluation datasets' HF parquet exports (`import`);
//! VoiceBench's scoring (`voicebench`) and its LLM judge (`judge`).

pub mod arena;
pub mod asr;
pub mod bleu;
pub mod bootstrap;
pub mod chrf;
pub mod classify;
pub mod import;
pub mod judge;
pub mod manifest;
pub mod pedant;
mod pytext;
pub mod qa;
pub mod report;
pub mod run;
pub mod tasks;
pub mod voicebench;
pub mod wer;
