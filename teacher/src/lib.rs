//! Teacher sampling: problems × k completions, verified and written to Parquet.
//!
//! - [`backend`]: the [`Backend`] trait shared with `eval` (one request → one completion).
//! - [`openai`]: the OpenAI-compatible HTTP client (SGLang, vLLM, DeepSeek API, `distill serve`).
//! - [`native`]: the in-process `models` engine behind the same trait (batched).
//! - [`config`]: the `distill teacher sample` configuration and `--set` overrides.
//! - [`sampler`]: the resumable problems × k loop ([`sampler::drive`] is reusable by `eval`).
//! - [`manifest`]: `manifest.json` of a trace directory.
//! - [`server`]: the OpenAI-compatible HTTP server over the native engine (`distill serve`).

pub mod backend;
pub mod byte_tokenizer;
pub mod config;
pub mod engine_worker;
pub mod instant_server;
pub mod manifest;
pub mod native;
pub mod openai;
pub mod progress;
pub mod sampler;
pub mod server;

pub use backend::{Backend, BackendError, ChatRequest, Completion, FinishReason, Message, Prompt};
pub use config::{BackendKind, TeacherConfig};
pub use openai::{OpenAiBackend, OpenAiConfig};
pub use sampler::{run_sampling, RunReport};

use std::path::PathBuf;

/// Errors of the teacher stage. Each names the file, key or request at fault.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// Bad configuration (a key, a value, a missing environment variable).
    #[error("config: {0}")]
    Config(String),
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Problem set or tokenizer failure (names the file and line).
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    /// Trace shard failure (names the file).
    #[error(transparent)]
    Trace(#[from] datasets::traces::TraceError),
    /// Model loading or generation failure.
    #[error("model: {0}")]
    Model(String),
    /// The output directory holds a run made with different settings.
    #[error("{0}")]
    Mismatch(String),
}

impl TeacherError {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TeacherError::Io {
            path: path.into(),
            source,
        }
    }
}
