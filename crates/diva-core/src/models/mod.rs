//! The networks: Whisper (encoder + decoder), and later the LLM and connector.

pub mod checkpoint;
pub mod connector;
pub mod diva;
pub mod exec;
pub mod linear;
pub mod llm;
pub mod shapes;
pub mod whisper;

pub use exec::Exec;
