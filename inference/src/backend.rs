//! The backend trait: one completion per call, whatever serves the model.
//!
//! Both the teacher sampler and the evaluator (`eval`) talk to models only through [`Backend`],
//! so the R1 teacher behind SGLang/vLLM/the DeepSeek API and a student running in-process are
//! scored by exactly the same loop. A backend turns one [`ChatRequest`] into one
//! [`Completion`]; concurrency, batching and retries are the backend's business (the HTTP
//! backend retries transient faults, the native backend batches concurrent calls into shared
//! forward passes), so callers simply issue many `complete` calls at once.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// One chat message as sent on the wire (OpenAI `messages` entry).
///
/// Kept as plain strings so the trait does not depend on tokenizer types; it converts 1:1 into
/// `datasets`' chat message for templating.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

impl Message {
    /// A `user` message: the usual single-turn prompt.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
}

/// What the model is asked to continue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Chat messages; the serving side applies the model's own chat template
    /// (`/v1/chat/completions`).
    Messages(Vec<Message>),
    /// Raw text continued as is (`/v1/completions` with a string prompt): for callers that
    /// render the template themselves.
    Text(String),
    /// Token ids continued as is (`/v1/completions` with an integer-array prompt).
    Tokens(Vec<u32>),
}

/// One sampling request: a prompt and the sampling parameters recorded with every trace row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Maximum number of new tokens.
    pub max_tokens: u32,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass; 1 disables it.
    pub top_p: f32,
    /// Per-sample seed, so a sample can be reproduced where the server honours seeds.
    pub seed: Option<u64>,
    /// Extra stop strings (EOS always stops).
    pub stop: Vec<String>,
}

pub use datasets::records::FinishReason;

/// Where completions come from; the `backend` key of teacher and eval configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// An OpenAI-compatible HTTP server (SGLang, vLLM, DeepSeek API, `distill serve`).
    Openai,
    /// The `models` engine in-process over a Hugging Face checkpoint directory (batched).
    Native,
}

impl BackendKind {
    /// The config spelling (`openai` / `native`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Openai => "openai",
            BackendKind::Native => "native",
        }
    }
}

/// One finished sample. Always produced for a request that reached a definitive answer,
/// including permanent failures (then `error` is set and `finish_reason` is `Error`), so a run
/// records a bad prompt once instead of retrying it forever.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The thinking part: `reasoning_content` from the server, or the text inside
    /// `<think>…</think>` of the content. Empty when the model did not think.
    pub reasoning: String,
    /// The answer after the reasoning (what graders look at).
    pub content: String,
    /// The full text as the model produced it. When the server split the reasoning off into
    /// `reasoning_content`, this is rebuilt in R1 form with [`join_reasoning`]
    /// (`reasoning\n</think>\n\ncontent`; R1 templates open `<think>\n` in the prompt).
    pub completion: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Prompt length in tokens as counted by the server (0 when unknown).
    pub prompt_tokens: u32,
    /// Generated tokens as counted by the server (0 when unknown).
    pub completion_tokens: u32,
    /// Wall time of the successful attempt(s), milliseconds, including retries.
    pub latency_ms: u64,
    /// Permanent failure message (HTTP 4xx other than 429, invalid response); `None` on success.
    pub error: Option<String>,
    /// What thinking-budget forcing did ([`crate::budget`]); `None` when no budget was set.
    #[serde(default)]
    pub thinking: Option<crate::budget::ThinkingStats>,
}

impl Completion {
    /// A permanently failed sample carrying its message.
    pub fn failed(message: impl Into<String>, latency_ms: u64) -> Self {
        Self {
            reasoning: String::new(),
            content: String::new(),
            completion: String::new(),
            finish_reason: FinishReason::Error,
            prompt_tokens: 0,
            completion_tokens: 0,
            latency_ms,
            error: Some(message.into()),
            thinking: None,
        }
    }
}

/// Why no [`Completion`] could be produced. Unlike [`Completion::error`], nothing is recorded:
/// the sample stays "not done" and a rerun does it again.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Transient faults (429, 5xx, resets, timeouts) outlasted every retry.
    #[error("request failed after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last fault seen.
        last: String,
    },
    /// The backend is shutting down (Ctrl-C, engine stopped).
    #[error("backend is shut down")]
    Shutdown,
    /// The in-process engine failed.
    #[error("engine error: {0}")]
    Engine(String),
}

/// A source of completions: the OpenAI-compatible HTTP client or the in-process engine.
///
/// Object-safe (`Arc<dyn Backend>`) so commands pick the backend at run time. Implementations
/// must be cheap to call concurrently: callers keep up to `concurrency` calls in flight.
pub trait Backend: Send + Sync {
    /// The model name recorded in every row's `teacher` column (e.g. `deepseek-ai/DeepSeek-R1`).
    fn model_name(&self) -> &str;

    /// Produces one completion. `Ok` with `error` set is a permanent, recorded failure; `Err`
    /// means nothing should be recorded (retry later).
    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>>;

    /// Whether [`Backend::complete_together`] hands its requests to one batching engine as one
    /// unit (the in-process engine): [`crate::drive`] then submits fixed chunks of a run, one
    /// after another, so the engine forms the same batches — and samples the same tokens — on
    /// every run. Default false: requests go out one by one with bounded concurrency (a remote
    /// server batches as its own load dictates).
    fn submits_together(&self) -> bool {
        false
    }

    /// Starts every request at once, in order, and returns one future per request in the same
    /// order. Default: [`Backend::complete`] for each.
    fn complete_together(&self, requests: Vec<ChatRequest>) -> Vec<BoxFuture<'_, Result<Completion, BackendError>>> {
        requests.into_iter().map(|r| self.complete(r)).collect()
    }

    /// Checks, before the first request, that the serving side can answer a run of `bounds`
    /// (reachable, serving this model, with room for the prompts and `max_tokens`), so a run that
    /// cannot succeed stops at once with one error instead of recording failed samples. Default:
    /// nothing to check.
    fn preflight<'a>(
        &'a self,
        bounds: &'a RunBounds,
    ) -> BoxFuture<'a, Result<(), crate::InferenceError>> {
        let _ = bounds;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What every request of a run will ask for, checked by [`Backend::preflight`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunBounds {
    /// `max_tokens` of every request.
    pub max_tokens: u32,
    /// UTF-8 length of the longest prompt (all messages' text together), in bytes.
    pub longest_prompt_bytes: usize,
}

impl RunBounds {
    /// Bounds of `prompts` (each a list of messages) sampled with `max_tokens`.
    pub fn of_messages<'a>(
        max_tokens: u32,
        prompts: impl IntoIterator<Item = &'a [Message]>,
    ) -> Self {
        let longest_prompt_bytes = prompts
            .into_iter()
            .map(|m| m.iter().map(|m| m.content.len()).sum::<usize>())
            .max()
            .unwrap_or(0);
        RunBounds {
            max_tokens,
            longest_prompt_bytes,
        }
    }
}

/// Splits a raw completion into (reasoning, content) the way R1 output is read: the text
/// before the last `</think>` is the reasoning (a leading `<think>` is dropped, since R1
/// templates open the block in the prompt), the rest is the content. Without `</think>` there
/// is no reasoning — unless the text opens `<think>` and never closes it (truncated thinking),
/// in which case all of it is reasoning and the content is empty.
pub fn split_reasoning(text: &str) -> (String, String) {
    if let Some(pos) = text.rfind("</think>") {
        let before = &text[..pos];
        let before = before.trim_start();
        let before = before.strip_prefix("<think>").unwrap_or(before);
        let after = &text[pos + "</think>".len()..];
        (before.trim().to_string(), after.trim_start().to_string())
    } else if let Some(rest) = text.trim_start().strip_prefix("<think>") {
        (rest.trim().to_string(), String::new())
    } else {
        (String::new(), text.to_string())
    }
}

/// Rebuilds the full R1-style text from a server that returned the reasoning separately, so the
/// `completion` column always carries what the model generated after the prompt: the thinking,
/// the closing `</think>` and the answer (R1 templates put `<think>\n` in the prompt, so it is
/// not repeated here).
pub fn join_reasoning(reasoning: &str, content: &str) -> String {
    if reasoning.is_empty() {
        content.to_string()
    } else {
        format!("{reasoning}\n</think>\n\n{content}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_think_blocks() {
        assert_eq!(
            split_reasoning("<think>\nlet x=2\n</think>\n\nThe answer is \\boxed{2}."),
            ("let x=2".into(), "The answer is \\boxed{2}.".into())
        );
        // Template already opened <think>: the completion starts inside the block.
        assert_eq!(split_reasoning("a\n</think>b"), ("a".into(), "b".into()));
        assert_eq!(
            split_reasoning("no thinking"),
            ("".into(), "no thinking".into())
        );
        assert_eq!(
            split_reasoning("<think> truncated"),
            ("truncated".into(), "".into())
        );
    }

    #[test]
    fn joins_round_trip() {
        let full = join_reasoning("step 1", "\\boxed{3}");
        assert_eq!(
            split_reasoning(&full),
            ("step 1".into(), "\\boxed{3}".into())
        );
        assert_eq!(join_reasoning("", "x"), "x");
    }

    #[test]
    fn backend_kind_spellings() {
        for k in [BackendKind::Openai, BackendKind::Native] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
