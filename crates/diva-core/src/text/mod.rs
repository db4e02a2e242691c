//! Tokenizers, chat templates, prompt splitting and streaming detokenisation.

pub mod chat_template;
pub mod gguf_tokenizer;
pub mod llm_tokenizer;
pub mod pycompat;
pub mod stream;
pub mod tiktoken;
pub mod whisper_tokenizer;

pub use chat_template::{ChatTemplate, ContentPart, Message, MessageContent};
pub use gguf_tokenizer::tokenizer_from_gguf;
pub use llm_tokenizer::LlmTokenizer;
pub use stream::TokenStream;
pub use tiktoken::{tokenizer_from_tiktoken, TiktokenSpec};
pub use whisper_tokenizer::WhisperTokenizer;
