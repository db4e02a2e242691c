pub mod bench;
pub mod chat;
pub mod eval;
pub mod export;
pub mod generate;
pub mod models;
pub mod transcribe;
