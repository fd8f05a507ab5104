//! Inference: everything that turns a prompt into a completion, whoever serves the model.
//!
//! - [`backend`]: the [`Backend`] trait (one request → one completion) that the teacher sampler
//!   and the evaluator both talk to, its request/completion types and [`BackendKind`].
//! - [`wire`]: the OpenAI wire format as serde structs, shared by the client and the server.
//! - [`openai`]: the OpenAI-compatible HTTP client (SGLang, vLLM, DeepSeek API, `distill serve`),
//!   with [`server_info`]: what each replica serves, checked before a run starts.
//! - [`engine_worker`]: the thread that owns the `models` continuous-batching engine.
//! - [`text`]: the one text generator — prompt → ids, then token stream → text with EOS
//!   handling, incremental detokenisation and stop strings, in linear time.
//! - [`native`]: a checkpoint run in-process ([`native::NativeModel`]) behind [`Backend`].
//! - [`server`]: `distill serve`, the OpenAI-compatible HTTP server over the native engine;
//!   [`serve_guard`] (auth, content type, body size and deadline), [`serve_limits`]
//!   (prompts and tokens per request), [`auth`] and
//!   [`http_serve`] (connection loop with header/idle timeouts) around it, and
//!   [`scheduler`] (fair slot admission across requests) inside the engine thread.
//! - [`budget`], [`budget_native`], [`budget_openai`]: thinking budgets (s1's budget forcing)
//!   on the in-process engine (token ids) and over HTTP (continuation requests).
//!   [`serve_params`] (request fields, generation_config defaults, seeds), `serve_request`
//!   (a request body validated into prompt ids × choices, or a field-precise 400), [`serve_choice`]
//!   and [`logprobs`] (choices on the wire), [`reasoning_parser`] (`<think>` split) and
//!   [`reload`] (`/update_weights_from_disk`) are its parts.
//! - [`drive`]: bounded-concurrency fan-out of many requests with cancellation.
//! - [`sample`]: problem → messages → request, completion → shared row columns, for both the
//!   teacher sampler and the evaluator.
//! - [`instant_server`] and [`byte_tokenizer`]: a zero-cost responder and a byte-level
//!   tokenizer for tests and benchmarks of the serving path; [`stub_server`]: a scriptable
//!   OpenAI-compatible server that reproduces third-party servers' quirks for client tests.

pub mod auth;
pub mod backend;
pub mod budget;
pub mod budget_native;
pub mod budget_openai;
pub mod byte_tokenizer;
pub mod drive;
pub mod engine_worker;
pub mod http_serve;
pub mod instant_server;
pub mod logprobs;
pub mod native;
mod native_backend;
pub mod openai;
mod openai_stream;
pub mod sample;
pub mod scheduler;
pub mod serve_guard;
pub mod serve_limits;
pub mod reasoning_parser;
pub mod reload;
pub mod serve_choice;
pub mod serve_params;
mod serve_request;
pub mod server;
pub mod server_info;
pub mod stub_server;
pub mod text;
pub mod wire;

pub use backend::{
    Backend, BackendError, BackendKind, ChatRequest, Completion, FinishReason, Message, Prompt,
    RunBounds,
};
pub use drive::drive;
pub use native::{NativeBackend, NativeModel};
pub use openai::{OpenAiBackend, OpenAiConfig};

use std::path::PathBuf;

/// Errors setting up inference (loading a model, building a client). Per-request failures are
/// [`BackendError`]s or recorded in [`Completion::error`].
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A configuration value that cannot be used (names the key).
    #[error("{0}")]
    Config(String),
    /// An environment variable named by the configuration is not set.
    #[error("{key} names `{var}`, but that environment variable is not set")]
    MissingEnv {
        /// The configuration key naming the variable.
        key: &'static str,
        /// The variable.
        var: String,
        /// Why reading it failed.
        #[source]
        source: std::env::VarError,
    },
    /// A serving replica could not be reached at start (connection refused, DNS failure, no
    /// answer in time): reported at once instead of retried as a transient fault.
    #[error("{url} is unreachable")]
    Unreachable {
        /// The replica's base URL.
        url: String,
        /// What the HTTP client said.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
    /// Filesystem failure on a named path.
    #[error(transparent)]
    Io(#[from] datasets::PathIoError),
    /// Tokenizer, chat template or file failure (names the file).
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    /// Model loading or engine start-up failure.
    #[error(transparent)]
    Model(#[from] models::ModelError),
}

impl InferenceError {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        InferenceError::Io(datasets::PathIoError::new(path, source))
    }
}

/// An error and its causes on one line (`a: b: c`), for messages that leave the process as
/// text: recorded sample failures, HTTP error bodies, retry logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
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
