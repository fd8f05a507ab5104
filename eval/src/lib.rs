//! Benchmark evaluation with the DeepSeek-R1 protocol.
//!
//! A run samples k responses per problem from a model through the same [`inference::Backend`]
//! the teacher sampler uses (native in-process engine or any OpenAI-compatible endpoint), grades
//! each with `grader`, stores one Parquet row per sample through the shared record layer
//! (`datasets::records`: resumable shards, seeds), and summarises:
//!
//! - [`benchmarks`]: the shipped AIME 2024/2025 and MATH-500 sets and any JSONL/Parquet file.
//! - [`config`]: the run configuration (`configs/eval/*.toml`) and `--set` overrides.
//! - [`runner`]: problems × k → graded records, resuming where a run stopped.
//! - [`metrics`]: pass@1 ± SE with bootstrap CI, unbiased pass@k, cons@k, length statistics.
//! - [`summary`]: `summary.json` / `summary.md` per run.
//! - [`compare`]: side-by-side reports across runs (`report.md`, `report.json`, SVG plots).
//! - [`sweep`] and [`budget_chart`]: one run per thinking budget (s1 budget forcing) and the
//!   accuracy-vs-budget curve.

pub mod backends;
pub mod benchmarks;
pub mod budget_chart;
pub mod compare;
pub mod config;
pub mod metrics;
pub mod runner;
pub mod summary;
pub mod svg;
mod png;
pub mod sweep;

pub use compare::{compare_runs, CompareOptions};
pub use config::EvalConfig;
pub use runner::run_eval;
pub use summary::{BenchmarkSummary, RunSummary};

use std::path::Path;

/// Errors of evaluation runs and reports; each names the file, key, benchmark or sample
/// involved and keeps the underlying error as its source (the CLI prints the chain).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Filesystem failure on a named path.
    #[error(transparent)]
    Io(#[from] datasets::PathIoError),
    /// A config, summary or benchmark that cannot be used, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// A TOML config that does not parse or does not fit the schema.
    #[error("{origin}")]
    Toml {
        /// The config file (or `eval config`).
        origin: String,
        /// What the TOML parser said (names the key).
        #[source]
        source: toml::de::Error,
    },
    /// A JSON file (summary, run identity) that does not parse.
    #[error(transparent)]
    Json(#[from] datasets::PathJsonError),
    /// A document that could not be serialised (a bug, reported rather than panicking).
    #[error("cannot serialise the {what}")]
    Serialize {
        /// Which document.
        what: &'static str,
        /// The serialiser's message.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Problem set, tokenizer or atomic-write failure (names the file and line).
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    /// Record shard failure (names the file).
    #[error(transparent)]
    Records(#[from] datasets::records::RecordsError),
    /// The model backend could not be set up (HTTP client, checkpoint loading).
    #[error("model backend for `{checkpoint}`")]
    Inference {
        /// The checkpoint directory or served model name.
        checkpoint: String,
        /// Why.
        #[source]
        source: inference::InferenceError,
    },
    /// The model backend failed on a sample in a way that stops the run (retries exhausted,
    /// shutdown); a rerun resumes.
    #[error("{benchmark}/{problem_id}#{sample_index}; rerun to resume")]
    Backend {
        /// Benchmark of the sample.
        benchmark: String,
        /// Problem of the sample.
        problem_id: String,
        /// Index of the sample.
        sample_index: u32,
        /// What the backend said.
        #[source]
        source: inference::BackendError,
    },
    /// Ctrl-C stopped the run after finished samples were written.
    #[error("interrupted (Ctrl-C); rerun to resume")]
    Interrupted,
}

impl EvalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        EvalError::Io(datasets::PathIoError::new(path, source))
    }

    pub(crate) fn serialize(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        EvalError::Serialize { what, source: Box::new(source) }
    }
}
