//! One error type for diva-core. Every variant says what went wrong *and* which
//! file or setting it concerns, so the CLI can print it as is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Audio that cannot be decoded or used (empty, corrupt, unsupported, silent…).
    #[error("{path}: {problem}")]
    Audio { path: PathBuf, problem: String },

    /// A model file that is missing, truncated or not what we expected.
    #[error("model {path}: {problem}")]
    Model { path: PathBuf, problem: String },

    /// The model cache has not been populated yet.
    #[error("{what} not found at {path}. Run `diva models fetch` (or scripts/fetch-models) first, or set DIVA_HOME to a cache that has it")]
    MissingCache { what: String, path: PathBuf },

    /// Invalid user-supplied configuration or arguments.
    #[error("{0}")]
    Config(String),

    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn audio(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Audio {
            path: path.into(),
            problem: problem.into(),
        }
    }
    pub fn model(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            problem: problem.into(),
        }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
