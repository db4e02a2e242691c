//! `diva serve`: an OpenAI-compatible HTTP server over one loaded
//! [`diva_core::generate::Assistant`].
//!
//! - `api`: the wire format (requests, usage, OpenAI's error body);
//! - `prepare`: a request → system message, history, last user message with
//!   its audio decoded, sampling settings (every refusal a 400 naming it);
//! - `worker`: the thread that owns the model and streams replies back;
//! - `sources`: the `--allow-audio-url` allow-list for remote audio URLs;
//! - `ab`: the blind A/B study (two systems, random sides, votes in SQLite);
//! - `server`: routes, API key, admission (429 before any audio is decoded),
//!   JSON and server-sent-event responses, graceful shutdown.

mod ab;
pub mod api;
pub mod prepare;
pub mod server;
pub mod sources;
pub mod worker;

pub use server::{router, serve, ServeOptions};
pub use sources::AudioSources;
