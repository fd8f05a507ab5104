//! The run-record layer shared by teacher sampling (`traces`) and evaluation (`eval_records`).
//!
//! Both stages do the same thing — problems × k samples through a model, each graded and stored
//! as one Parquet row, resumable after a kill — so the pieces live here once:
//!
//! - [`kinds`]: verdict, finish reason and run status as enums, stored as their old strings.
//! - [`sample`]: [`SampleRecord`], the columns every sample row has; [`crate::traces::TraceRow`]
//!   and [`crate::eval_records::EvalRecord`] extend it with their own columns.
//! - [`shards`]: the generic Parquet shard codec, atomic shard writer and resume index.
//! - [`supersede`]: replacing redone samples' older rows (two atomic steps, later shard wins).
//! - [`seed`]: the one per-sample seed derivation.
//! - [`provenance`]: input hashes, git revision and RFC 3339 times for run manifests.
//!
//! Whole-file atomic writes are [`crate::atomic`].

pub mod columns;
pub mod kinds;
pub mod provenance;
pub mod sample;
pub mod seed;
pub mod shards;
pub mod supersede;

pub use kinds::{FinishReason, RunStatus, UnknownValue, Verdict};
pub use sample::SampleRecord;
pub use seed::sample_seed;
pub use shards::{ResumeIndex, ShardRecord, ShardWriter};

use std::path::PathBuf;

/// Errors reading or writing record files; each names the file (and column or row) at fault.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// Filesystem failure.
    #[error("{path}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not readable Parquet (truncated, corrupt) or could not be written.
    #[error("{path}: Parquet")]
    Parquet {
        /// File involved.
        path: PathBuf,
        /// What the Parquet library said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow encoding or decoding failed.
    #[error("{path}: Arrow")]
    Arrow {
        /// File involved.
        path: PathBuf,
        /// What the Arrow library said.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A required column is absent or has the wrong type.
    #[error("{path}: column `{column}` {problem}")]
    Column {
        /// File involved.
        path: PathBuf,
        /// Column name.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A value outside a column's vocabulary (e.g. an unknown verdict).
    #[error("{path}: row {row}: column `{column}`")]
    Value {
        /// File involved.
        path: PathBuf,
        /// 0-based row within the file.
        row: usize,
        /// Column name.
        column: &'static str,
        /// The unknown value.
        #[source]
        source: UnknownValue,
    },
    /// Atomic file creation or commit failed.
    #[error(transparent)]
    Dataset(Box<crate::DatasetError>),
}

impl From<crate::DatasetError> for RecordsError {
    fn from(e: crate::DatasetError) -> Self {
        RecordsError::Dataset(Box::new(e))
    }
}

impl RecordsError {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RecordsError::Io {
            path: path.into(),
            source,
        }
    }
}
