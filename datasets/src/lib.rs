//! The text side of distill: tokenizers and chat templates, problem sets, trace and eval files
//! on one run-record layer ([`records`]: sample record, verdict/finish-reason/status enums,
//! Parquet shards and resume index, seed derivation, provenance), SFT example building and the
//! synthetic quickstart task.
//!
//! Nothing here touches Burn: the `models` crate only ever sees token ids, and every conversion
//! between text and ids goes through [`tokenizer::TextTokenizer`] so that all stages agree on it.

pub mod atomic;
pub mod chat;
pub mod jsonl;
pub mod lock;
pub mod overrides;
pub mod progress;
pub mod problems;
pub mod records;
pub mod stop;
pub mod synthetic;
pub mod tokenizer;
pub mod decontam;
pub mod dedup;
pub mod export;
pub mod filter;
pub mod io_error;
pub mod sft;
pub mod traces;
pub mod eval_records;

pub use chat::{ChatMessage, ChatTemplate};
pub use problems::{load_problems, parse_problems_jsonl, Problem, ProblemColumns};
pub use stop::{Detokenize, IncrementalDecoder, StopStringMatcher};
pub use tokenizer::TextTokenizer;
pub use io_error::{PathError, PathIoError, PathJsonError};

use std::path::PathBuf;

/// One error type for the text side, so that every failure names the file, line, key or column
/// that caused it (the user fixes input files, not stack traces).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Reading or writing a file failed. The message names the path only: the OS error is the
    /// `source()`, printed once by whoever walks the chain.
    #[error("{path}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying OS error.
        source: std::io::Error,
    },
    /// A line of a JSON/JSONL file (1-based; 0 for whole-file JSON) could not be used.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file involved.
        path: PathBuf,
        /// 1-based line number (row number for Parquet, 0 when not line-oriented).
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A file as a whole is unusable (bad Parquet, missing column, bad JSON config, …).
    #[error("{path}: {message}")]
    File {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer failed (loading, encoding, decoding or training).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template failed to compile or to render.
    #[error("chat template: {0}")]
    Template(String),
    /// An invalid argument or configuration value.
    #[error("{0}")]
    Invalid(String),
    /// The output directory is locked by another run (or its lock file is unusable).
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// A trace or eval record file could not be read or written.
    #[error(transparent)]
    Records(#[from] records::RecordsError),
}

impl DatasetError {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for a whole-file error on `path`.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DatasetError::File {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an error at `line` (1-based) of `path`.
    pub fn line(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        DatasetError::Line {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
