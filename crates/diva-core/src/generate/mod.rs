//! Turning models into text: Whisper transcription (and later LLM generation).

pub mod transcribe;

pub use transcribe::{TranscribeOptions, Transcriber, Transcript};
