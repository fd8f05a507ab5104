//! Budget forcing inside the in-process engine, with token ids.
//!
//! Each thinking segment is an engine request over the prompt plus every id so far, bounded by
//! `max_new_tokens` (the thinking maximum lands exactly) and stopped by an engine stop check the
//! moment the generated ids end with the close marker's ids (`</think>` from the tokenizer: one
//! added token in R1 tokenizers). Forced text (the wait token, the marker and separator) is
//! tokenised and appended as ids, so the model continues exactly the sequence recorded. A
//! continuation re-prefills the sequence (the engine keeps no prefix cache), at most
//! `max_waits + 2` times per sample.

use std::time::Instant;

use datasets::{DatasetError, TextTokenizer};
use futures::future::BoxFuture;
use models::generate::GenerationRequest;
use models::sampling::SamplingParams;

use crate::backend::{split_reasoning, Backend, BackendError, ChatRequest, Completion};
use crate::budget::{
    force_budget, Forced, Segment, SegmentEnd, SegmentFailure, SegmentGenerator, ThinkingBudget,
};
use crate::engine_worker::{EngineEvent, EngineFailure};
use crate::native::{GenParams, NativeModel};
use crate::text::TextStream;
use crate::InferenceError;

/// The ids of `marker`: its own token when the tokenizer has one (R1's `</think>`), else its
/// encoding.
pub fn marker_ids(tokenizer: &TextTokenizer, marker: &str) -> Result<Vec<u32>, DatasetError> {
    match tokenizer.token_to_id(marker) {
        Some(id) => Ok(vec![id]),
        None => tokenizer.encode(marker, false),
    }
}

/// One sample's sequence in the engine.
struct NativeSession<'a> {
    model: &'a NativeModel,
    prompt: Vec<u32>,
    generated: Vec<u32>,
    close: &'a str,
    close_ids: &'a [u32],
    params: &'a GenParams,
    segments: u64,
}

fn engine_failure(f: EngineFailure) -> SegmentFailure {
    match f {
        EngineFailure::Stopped => SegmentFailure::Retry(BackendError::Shutdown),
        other => SegmentFailure::Permanent(crate::error_chain(&other)),
    }
}

impl NativeSession<'_> {
    async fn segment(
        &mut self,
        max_new: u32,
        stop_at_close: bool,
    ) -> Result<Segment, SegmentFailure> {
        let mut ids = self.prompt.clone();
        ids.extend_from_slice(&self.generated);
        // Segment 0 uses the sample's seed, so an unforced sample equals a plain generation.
        let seed = self
            .params
            .seed
            .wrapping_add(self.segments.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.segments += 1;
        let sampling = SamplingParams {
            max_new_tokens: max_new as usize,
            temperature: self.params.temperature,
            top_p: self.params.top_p,
            top_k: self.params.top_k,
            seed,
            stop_token_ids: self.model.eos_ids().to_vec(),
            ..Default::default()
        };
        let mut request = GenerationRequest::new(ids, sampling);
        if stop_at_close {
            let close = self.close_ids.to_vec();
            request = request.with_stop_check(move |new| new.ends_with(&close));
        }
        let mut rx = self
            .model
            .engine()
            .submit(request)
            .map_err(engine_failure)?;
        let out = loop {
            match rx.recv().await {
                Some(EngineEvent::Tokens(_) | EngineEvent::Logprobs(..)) => {}
                Some(EngineEvent::Finished(out)) => break out,
                Some(EngineEvent::Failed(f)) => return Err(engine_failure(f)),
                None => return Err(engine_failure(EngineFailure::Stopped)),
            }
        };
        let mut new = out.new_ids;
        let n = new.len() as u32;
        if stop_at_close && new.ends_with(self.close_ids) {
            new.truncate(new.len() - self.close_ids.len());
            self.generated.extend_from_slice(&new);
            return Ok(Segment {
                tokens: new.len() as u32,
                end: SegmentEnd::Close,
            });
        }
        let end = match out.finish_reason {
            models::FinishReason::Stop => {
                // The EOS id counts as generated but is not part of the sequence.
                new.pop();
                SegmentEnd::Stop
            }
            models::FinishReason::Length => SegmentEnd::Length,
        };
        self.generated.extend_from_slice(&new);
        Ok(Segment { tokens: n, end })
    }
}

impl SegmentGenerator for NativeSession<'_> {
    fn generate(
        &mut self,
        max_new: u32,
        stop_at_close: bool,
    ) -> BoxFuture<'_, Result<Segment, SegmentFailure>> {
        Box::pin(self.segment(max_new, stop_at_close))
    }

    fn append(&mut self, text: &str) -> Result<u32, SegmentFailure> {
        let tok = self.model.tokenizer();
        let encode = |t: &str| {
            tok.encode(t, false)
                .map_err(|e| SegmentFailure::Permanent(crate::error_chain(&e)))
        };
        // The close marker goes in as its own ids (what the model emits), the rest as text.
        let ids = match text.strip_prefix(self.close) {
            Some(rest) => {
                let mut ids = self.close_ids.to_vec();
                if !rest.is_empty() {
                    ids.extend(encode(rest)?);
                }
                ids
            }
            None if text.is_empty() => Vec::new(),
            None => encode(text)?,
        };
        self.generated.extend_from_slice(&ids);
        Ok(ids.len() as u32)
    }
}

/// A budget-forced native generation.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetOutput {
    /// Every id after the prompt, forced ones included (EOS excluded).
    pub ids: Vec<u32>,
    /// Those ids as text (cut at a stop string).
    pub text: String,
    /// Thinking tokens, waits, closes, completion tokens and finish reason.
    pub forced: Forced,
}

/// A [`NativeModel`] generating under a thinking budget; also a [`Backend`] (the eval's native
/// path when `protocol.max_thinking_tokens` / `min_thinking_tokens` is set).
pub struct NativeBudgetBackend {
    model: NativeModel,
    budget: ThinkingBudget,
    close_ids: Vec<u32>,
}

impl NativeBudgetBackend {
    /// Wraps `model`; the close marker's ids come from its tokenizer.
    pub fn new(model: NativeModel, budget: ThinkingBudget) -> Result<Self, InferenceError> {
        let close_ids = marker_ids(model.tokenizer(), &budget.close)?;
        if close_ids.is_empty() {
            return Err(InferenceError::Config(format!(
                "the close marker {:?} encodes to no tokens",
                budget.close
            )));
        }
        Ok(NativeBudgetBackend {
            model,
            budget,
            close_ids,
        })
    }

    /// The model.
    pub fn model(&self) -> &NativeModel {
        &self.model
    }

    /// Generates from `prompt_ids` under the budget (`params.max_tokens` bounds everything).
    pub async fn generate(
        &self,
        prompt_ids: Vec<u32>,
        params: &GenParams,
    ) -> Result<BudgetOutput, SegmentFailure> {
        let mut session = NativeSession {
            model: &self.model,
            prompt: prompt_ids,
            generated: Vec::new(),
            close: &self.budget.close,
            close_ids: &self.close_ids,
            params,
            segments: 0,
        };
        let mut forced = force_budget(&mut session, &self.budget, params.max_tokens as u32).await?;
        let ids = session.generated;
        let tok = self.model.tokenizer();
        let mut stream = TextStream::new(self.model.eos_ids().to_vec(), &params.stop);
        let mut text = String::new();
        let decode_err = |e: DatasetError| SegmentFailure::Permanent(crate::error_chain(&e));
        for &id in &ids {
            let step = stream.push(tok, id).map_err(decode_err)?;
            text.push_str(&step.text);
            if step.stopped {
                forced.finish_reason = crate::FinishReason::Stop;
                break;
            }
        }
        text.push_str(&stream.finish(tok).map_err(decode_err)?.text);
        Ok(BudgetOutput { ids, text, forced })
    }

    async fn complete_inner(&self, req: ChatRequest) -> Result<Completion, BackendError> {
        let started = Instant::now();
        let ids = match self.model.prompt_ids(&req.prompt) {
            Ok(ids) => ids,
            Err(e) => return Ok(crate::native_backend::prompt_failure(&e)),
        };
        let prompt_tokens = ids.len() as u32;
        let params = GenParams::from_chat(&req);
        let latency = || started.elapsed().as_millis() as u64;
        match self.generate(ids, &params).await {
            Ok(out) => {
                let (reasoning, content) = split_reasoning(&out.text);
                Ok(Completion {
                    reasoning,
                    content,
                    completion: out.text,
                    finish_reason: out.forced.finish_reason,
                    prompt_tokens,
                    completion_tokens: out.forced.completion_tokens,
                    latency_ms: latency(),
                    error: None,
                    thinking: Some(out.forced.stats),
                })
            }
            Err(SegmentFailure::Retry(e)) => Err(e),
            Err(SegmentFailure::Permanent(m)) => Ok(Completion::failed(m, latency())),
        }
    }
}

impl Backend for NativeBudgetBackend {
    fn model_name(&self) -> &str {
        self.model.name()
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        Box::pin(self.complete_inner(request))
    }
}
