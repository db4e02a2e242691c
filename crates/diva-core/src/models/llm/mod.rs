//! The frozen text LLM: one decoder for the Llama family and Qwen2.

pub mod config;
pub mod layers;
pub mod load;
pub mod model;
pub mod rope;

pub use config::{Family, LlmConfig, RopeStyle};
pub use layers::KvCache;
pub use load::{
    keeps_quantized_weights, load_llm, random_llm, LlmWeights, WeightMode, EXACT_DEFAULT_BYTES,
};
pub use model::Llm;
