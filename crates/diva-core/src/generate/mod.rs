//! Turning models into text: Whisper transcription, LLM generation, and the
//! spoken-chat session that joins them.

pub mod assistant;
pub mod llm;
pub mod sampling;
pub mod transcribe;

pub use assistant::{
    Assistant, AssistantOptions, ConnectorSource, Conversation, Part, Reply, UserInput,
};
pub use llm::{Decoder, Generation, StopReason, TextGenerator};
pub use sampling::{Sampler, SamplingParams};
pub use transcribe::{TranscribeOptions, Transcriber, Transcript};
