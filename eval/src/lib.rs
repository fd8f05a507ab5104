//! Benchmark evaluation with the DeepSeek-R1 protocol.
//!
//! A run samples k responses per problem from a model through the same [`teacher::Backend`]
//! the teacher sampler uses (native in-process engine or any OpenAI-compatible endpoint), grades
//! each with `grader`, stores one Parquet row per sample (resumable), and summarises:
//!
//! - [`benchmarks`]: the shipped AIME 2024/2025 and MATH-500 sets and any JSONL/Parquet file.
//! - [`config`]: the run configuration (`configs/eval/*.toml`) and `--set` overrides.
//! - [`runner`]: problems × k → graded records, resuming where a run stopped.
//! - [`metrics`]: pass@1 ± SE with bootstrap CI, unbiased pass@k, cons@k, length statistics.
//! - [`summary`]: `summary.json` / `summary.md` per run.
//! - [`compare`]: side-by-side reports across runs (`report.md`, `report.json`, SVG plots).

pub mod backends;
pub mod benchmarks;
pub mod compare;
pub mod config;
mod io;
pub mod metrics;
pub mod runner;
pub mod summary;
pub mod svg;

pub use compare::{compare_runs, CompareOptions};
pub use config::EvalConfig;
pub use runner::run_eval;
pub use summary::{BenchmarkSummary, RunSummary};

use std::path::{Path, PathBuf};

/// Errors of evaluation runs and reports; each names the file, key or benchmark involved.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Filesystem failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A config, summary or benchmark file that cannot be used, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// Record shard failure.
    #[error(transparent)]
    Records(#[from] datasets::eval_records::EvalRecordsError),
    /// The model backend failed in a way that stops the run.
    #[error("backend: {0}")]
    Backend(String),
}

impl EvalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        EvalError::Io { path: path.to_path_buf(), source }
    }
}
