pub mod bench;
pub mod eval;
pub mod models;
pub mod transcribe;
