//! Tokenizers (and later chat templates and prompt splitting).

pub mod whisper_tokenizer;

pub use whisper_tokenizer::WhisperTokenizer;
