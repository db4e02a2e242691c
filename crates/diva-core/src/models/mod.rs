//! The networks: Whisper (encoder + decoder), and later the LLM and connector.

pub mod exec;
pub mod whisper;

pub use exec::Exec;
