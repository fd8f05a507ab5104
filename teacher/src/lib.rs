//! Teacher sampling: problems × k completions, graded and written to Parquet trace shards.
//!
//! This crate is the sampling stage only; the models it samples from are reached through the
//! `inference` crate's [`inference::Backend`] (HTTP client or in-process engine).
//!
//! - [`config`]: the `distill teacher sample` configuration and `--set` overrides.
//! - [`sampler`]: the resumable problems × k loop.
//! - [`manifest`]: `_manifest.json` of a trace directory.
//! - [`progress`]: the progress bar / periodic log line.

pub mod config;
pub mod manifest;
pub mod progress;
mod report;
pub mod sampler;

pub use config::TeacherConfig;
pub use sampler::{run_sampling, RunReport};

use std::path::PathBuf;

/// Errors of the teacher stage. Each names the file, key or request at fault and keeps the
/// underlying error as its source (the CLI prints the chain).
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// Bad configuration (a key, a value, an override).
    #[error("config: {0}")]
    Config(String),
    /// A TOML config file that does not parse or does not fit the schema.
    #[error("{path}")]
    Toml {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said (names the key).
        #[source]
        source: toml::de::Error,
    },
    /// A JSON file (the run manifest) that does not parse.
    #[error(transparent)]
    Json(#[from] datasets::PathJsonError),
    /// Filesystem failure on a named path.
    #[error(transparent)]
    Io(#[from] datasets::PathIoError),
    /// Problem set or tokenizer failure (names the file and line).
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    /// Trace shard failure (names the file).
    #[error(transparent)]
    Records(#[from] datasets::records::RecordsError),
    /// Backend set-up failure (HTTP client, model loading).
    #[error(transparent)]
    Inference(#[from] inference::InferenceError),
    /// The output directory holds a run made with different settings.
    #[error("{0}")]
    Mismatch(String),
}

impl TeacherError {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TeacherError::Io(datasets::PathIoError::new(path, source))
    }
}
