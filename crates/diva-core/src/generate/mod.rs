//! Turning models into text: Whisper transcription and LLM generation.

pub mod llm;
pub mod sampling;
pub mod transcribe;

pub use llm::{Generation, StopReason, TextGenerator};
pub use sampling::{Sampler, SamplingParams};
pub use transcribe::{TranscribeOptions, Transcriber, Transcript};
