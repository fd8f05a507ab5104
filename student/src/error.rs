//! Errors of the trainer. Every variant names the file, key or tensor at fault so that a
//! failed run can be fixed without reading the code.

use std::path::PathBuf;

/// Everything that can stop a training or merge run.
#[derive(Debug, thiserror::Error)]
pub enum StudentError {
    /// A file could not be read or written. The message names the path only: the OS error is
    /// the `source()`, printed once by whoever walks the chain.
    #[error("{path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TOML config (or a `--set` override) is malformed or has an unknown key.
    #[error("config {path}: {msg}")]
    Config {
        /// The config file (or `--set` for overrides).
        path: String,
        /// What is wrong, with the key.
        msg: String,
    },
    /// A JSON state/manifest file is malformed.
    #[error("{path}: invalid JSON: {msg}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        msg: String,
    },
    /// Training data could not be loaded or is unusable (a problem found by this crate).
    #[error("data: {0}")]
    Data(String),
    /// A `datasets` operation (tokenizer, data files, problem sets) failed.
    #[error("{context}")]
    Dataset {
        /// What was being done, e.g. "loading the tokenizer of models/x".
        context: String,
        /// The typed error of the `datasets` crate.
        #[source]
        source: datasets::DatasetError,
    },
    /// The model could not be loaded, built, run or saved.
    #[error("{context}")]
    Model {
        /// What was being done, e.g. "loading the model models/x".
        context: String,
        /// The typed error of the `models` crate.
        #[source]
        source: models::ModelError,
    },
    /// A checkpoint (weights, optimizer or trainer state) is missing or inconsistent.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The output directory already holds a run, and neither resuming nor overwriting it was
    /// asked for (restarting at step 0 in place would mix two runs' metrics and checkpoints).
    #[error(
        "output dir {dir} already holds a training run ({found}): pass --resume to continue it, \
         or --overwrite to delete that run's files and start over"
    )]
    RunExists {
        /// The output directory.
        dir: PathBuf,
        /// The run files found there.
        found: String,
    },
    /// Resuming with a config that changes the training from the one the checkpoint was
    /// trained with.
    #[error(
        "checkpoint {checkpoint}: the config differs from the one it was trained with ({keys}); \
         pass --allow-config-change to resume anyway"
    )]
    ConfigChanged {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The changed keys (or why they cannot be named).
        keys: String,
    },
    /// A numerical problem that makes continuing pointless (e.g. a NaN loss).
    #[error("training diverged at step {step}: {msg}")]
    Diverged {
        /// The optimizer step.
        step: u64,
        /// What was observed.
        msg: String,
    },
    /// A data-parallel peer failed; the run stopped on every peer (see `distributed`).
    #[error("data-parallel peer {rank} failed")]
    Peer {
        /// The rank of the peer whose failure stopped the run.
        rank: usize,
        /// What went wrong on that peer.
        #[source]
        source: Box<StudentError>,
    },
    /// Collective communication between data-parallel peers failed, timed out, or was
    /// abandoned because another peer failed.
    #[error("collective {op} on peer {rank}: {msg}")]
    Collective {
        /// The operation (`register`, `all_reduce`, …).
        op: &'static str,
        /// The peer that observed it.
        rank: usize,
        /// What happened.
        msg: String,
    },
    /// The rollout server of `[rollouts] source = "openai"` failed or answered unusably.
    #[error("rollout server {url}: {msg}")]
    RolloutServer {
        /// The URL called.
        url: String,
        /// What went wrong.
        msg: String,
        /// The HTTP client's error, when there is one.
        #[source]
        source: Option<reqwest::Error>,
    },
}

impl StudentError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a `models` error with what was being done.
    pub fn model(context: impl Into<String>, source: models::ModelError) -> Self {
        Self::Model {
            context: context.into(),
            source,
        }
    }

    /// Wraps a `datasets` error with what was being done.
    pub fn dataset(context: impl Into<String>, source: datasets::DatasetError) -> Self {
        Self::Dataset {
            context: context.into(),
            source,
        }
    }

    /// This error and its causes on one line (`a: b: c`), each once: for logs and for the
    /// message other data-parallel peers stop with (the `Display` names this level only).
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(inner) = src {
            let text = inner.to_string();
            if !s.ends_with(&text) {
                s.push_str(": ");
                s.push_str(&text);
            }
            src = inner.source();
        }
        s
    }
}

/// Result alias of this crate.
pub type Result<T, E = StudentError> = std::result::Result<T, E>;
