//! Budget forcing over an OpenAI-compatible server (vLLM, SGLang, `distill serve`) with
//! continuation requests.
//!
//! Which API: every segment is a `/v1/completions` request whose prompt is **token ids** — the
//! chat prompt rendered locally with the served model's own tokenizer and chat template (the
//! same ids the native path and `/v1/chat/completions` produce), followed by the text generated
//! and forced so far, tokenised. Chat with `continue_final_message` / `add_generation_prompt =
//! false` (vLLM) was not used: R1-distill templates drop everything before `</think>` from
//! assistant messages and put the `<think>\n` opening only in the generation prompt, so a
//! continued answer would lose its own reasoning. Id prompts also avoid the second BOS that
//! text prompts get from servers that add special tokens.
//!
//! A thinking segment is sent with `max_tokens` = what is left of the thinking budget and
//! `stop: ["</think>"]`. Servers report `finish_reason: "stop"` for a stop string and for EOS
//! alike (vLLM's `stop_reason` is an extension), so a thinking segment that ends with `stop`
//! is read as a close: an EOS inside thinking is then closed and answered rather than ended.
//! Token counts are the server's `usage.completion_tokens` (less the marker's tokens when the
//! marker stopped the segment), or the local tokenizer's count when a server sends no usage.
//! The request's own stop strings apply to the answer segment.

use std::sync::Arc;
use std::time::Instant;

use datasets::TextTokenizer;
use futures::future::BoxFuture;

use crate::backend::{
    split_reasoning, Backend, BackendError, ChatRequest, Completion, FinishReason, Prompt,
};
use crate::budget::{
    force_budget, Segment, SegmentEnd, SegmentFailure, SegmentGenerator, ThinkingBudget,
};
use crate::budget_native::marker_ids;
use crate::InferenceError;

struct HttpSession<'a> {
    backend: &'a dyn Backend,
    tokenizer: &'a TextTokenizer,
    close: &'a str,
    close_tokens: u32,
    request: &'a ChatRequest,
    prompt: Vec<u32>,
    text: String,
    segments: u64,
    latency_ms: u64,
}

impl HttpSession<'_> {
    fn count(&self, text: &str) -> Result<u32, SegmentFailure> {
        let ids = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| SegmentFailure::Permanent(crate::error_chain(&e)))?;
        Ok(ids.len() as u32)
    }

    async fn segment(
        &mut self,
        max_new: u32,
        stop_at_close: bool,
    ) -> Result<Segment, SegmentFailure> {
        let mut ids = self.prompt.clone();
        if !self.text.is_empty() {
            let so_far = self.tokenizer.encode(&self.text, false);
            ids.extend(so_far.map_err(|e| SegmentFailure::Permanent(crate::error_chain(&e)))?);
        }
        let seed = self
            .request
            .seed
            .map(|s| s.wrapping_add(self.segments.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        self.segments += 1;
        let stop = if stop_at_close {
            vec![self.close.to_string()]
        } else {
            self.request.stop.clone()
        };
        let segment = ChatRequest {
            prompt: Prompt::Tokens(ids),
            max_tokens: max_new,
            temperature: self.request.temperature,
            top_p: self.request.top_p,
            seed,
            stop,
        };
        let c = self.backend.complete(segment).await?;
        self.latency_ms += c.latency_ms;
        if let Some(e) = c.error {
            return Err(SegmentFailure::Permanent(e));
        }
        let piece = c.completion;
        let end = match (c.finish_reason, stop_at_close) {
            (FinishReason::Length, _) => SegmentEnd::Length,
            (_, true) => SegmentEnd::Close,
            _ => SegmentEnd::Stop,
        };
        let tokens = match (c.completion_tokens, end) {
            (0, _) => self.count(&piece)?,
            (n, SegmentEnd::Close) => n.saturating_sub(self.close_tokens),
            (n, _) => n,
        };
        self.text.push_str(&piece);
        Ok(Segment { tokens, end })
    }
}

impl SegmentGenerator for HttpSession<'_> {
    fn generate(
        &mut self,
        max_new: u32,
        stop_at_close: bool,
    ) -> BoxFuture<'_, Result<Segment, SegmentFailure>> {
        Box::pin(self.segment(max_new, stop_at_close))
    }

    fn append(&mut self, text: &str) -> Result<u32, SegmentFailure> {
        self.text.push_str(text);
        self.count(text)
    }
}

/// An OpenAI-compatible backend generating under a thinking budget through continuation
/// requests (see the module docs); the eval's OpenAI path when a budget is set.
pub struct OpenAiBudgetBackend {
    inner: Arc<dyn Backend>,
    tokenizer: Arc<TextTokenizer>,
    budget: ThinkingBudget,
    close_tokens: u32,
}

impl OpenAiBudgetBackend {
    /// Wraps `inner` (normally an [`crate::OpenAiBackend`]); `tokenizer` is the served model's
    /// (its chat template renders the prompts).
    pub fn new(
        inner: Arc<dyn Backend>,
        tokenizer: Arc<TextTokenizer>,
        budget: ThinkingBudget,
    ) -> Result<Self, InferenceError> {
        let close_tokens = marker_ids(&tokenizer, &budget.close)?.len() as u32;
        Ok(OpenAiBudgetBackend {
            inner,
            tokenizer,
            budget,
            close_tokens,
        })
    }

    async fn complete_inner(&self, req: ChatRequest) -> Result<Completion, BackendError> {
        let started = Instant::now();
        let prompt = match crate::text::prompt_ids(&self.tokenizer, &req.prompt) {
            Ok(ids) => ids,
            Err(e) => {
                return Ok(Completion::failed(
                    format!("prompt: {}", crate::error_chain(&e)),
                    0,
                ))
            }
        };
        let prompt_tokens = prompt.len() as u32;
        let mut session = HttpSession {
            backend: self.inner.as_ref(),
            tokenizer: &self.tokenizer,
            close: &self.budget.close,
            close_tokens: self.close_tokens,
            request: &req,
            prompt,
            text: String::new(),
            segments: 0,
            latency_ms: 0,
        };
        match force_budget(&mut session, &self.budget, req.max_tokens).await {
            Ok(forced) => {
                let (reasoning, content) = split_reasoning(&session.text);
                Ok(Completion {
                    reasoning,
                    content,
                    completion: session.text,
                    finish_reason: forced.finish_reason,
                    prompt_tokens,
                    completion_tokens: forced.completion_tokens,
                    latency_ms: started.elapsed().as_millis() as u64,
                    error: None,
                    thinking: Some(forced.stats),
                })
            }
            Err(SegmentFailure::Retry(e)) => Err(e),
            Err(SegmentFailure::Permanent(m)) => Ok(Completion::failed(m, session.latency_ms)),
        }
    }
}

impl Backend for OpenAiBudgetBackend {
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        Box::pin(self.complete_inner(request))
    }
}
