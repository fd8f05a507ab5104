//! The one error type of the models crate.
//!
//! Every variant names the file, key or tensor at fault, because a user staring at a 60 GB
//! checkpoint needs to know *which* of its thousand tensors is wrong, not just that one is.

use std::path::PathBuf;

/// Errors from loading, saving and running models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed. The message names the path only: the OS error is the
    /// `source()`, printed once by whoever walks the chain (`distill`'s `Caused by:`).
    #[error("{path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config.json, generation_config.json, index) is not valid JSON or has a
    /// value of the wrong type.
    #[error("{path}: invalid JSON: {message}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A required key is missing from a config file.
    #[error("{path}: missing required key `{key}`")]
    MissingKey {
        /// The config file.
        path: PathBuf,
        /// The key that is absent.
        key: String,
    },
    /// A config key has a value we cannot use.
    #[error("{path}: key `{key}`: {message}")]
    BadValue {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// Why the value is rejected.
        message: String,
    },
    /// `model_type` / `architectures` names a model we do not implement.
    #[error("{path}: unsupported model_type `{model_type}` (supported: qwen2, llama, deepseek_v3)")]
    UnsupportedArchitecture {
        /// The config file.
        path: PathBuf,
        /// The value found.
        model_type: String,
    },
    /// A tensor the architecture needs is not in any weight file.
    #[error("tensor `{tensor}` is missing from the checkpoint ({files})")]
    MissingTensor {
        /// HF tensor name.
        tensor: String,
        /// The weight files searched (or the one the index points to).
        files: String,
    },
    /// A tensor has a different shape than the config implies.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The weight file.
        file: PathBuf,
        /// HF tensor name.
        tensor: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype we cannot convert.
    #[error("{file}: tensor `{tensor}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The weight file.
        file: PathBuf,
        /// HF tensor name.
        tensor: String,
        /// The safetensors dtype.
        dtype: String,
    },
    /// A safetensors file is malformed or truncated.
    #[error("{file}: invalid safetensors file: {message}")]
    Safetensors {
        /// The weight file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A caller passed inconsistent inputs (shapes, ids out of range, cache overflow).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ModelError {
    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }
}
