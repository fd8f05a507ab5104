//! Teacher sampling: problems × k completions, verified and written to Parquet.
//!
//! - [`backend`]: the [`Backend`] trait shared with `eval` (one request → one completion).
//! - [`openai`]: the OpenAI-compatible HTTP client (SGLang, vLLM, DeepSeek API, `distill serve`).

pub mod backend;

pub use backend::{Backend, BackendError, ChatRequest, Completion, FinishReason, Message, Prompt};
