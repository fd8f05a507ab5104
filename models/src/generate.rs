//! Batched generation: the simple "many prompts in, completions out" API, built on the
//! continuous-batching [`crate::engine::Engine`] so there is exactly one decoding code path.

use burn::prelude::*;

use crate::engine::{Engine, EngineConfig};
use crate::error::ModelError;
use crate::lm::CausalLm;
use crate::sampling::SamplingParams;

/// Why a sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// A stop token id was generated or the caller's stop check fired.
    Stop,
    /// `max_new_tokens` was reached (or the cache/context was full).
    Length,
}

impl FinishReason {
    /// The OpenAI / vLLM spelling: `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Caller-supplied stop condition, called with all new ids so far after every token. Returns
/// true to finish with [`FinishReason::Stop`]. Stop *strings* are text, which this crate never
/// sees, so the caller decodes and checks them here.
pub type StopCheck = Box<dyn FnMut(&[u32]) -> bool + Send>;

/// One sequence to complete.
pub struct GenerationRequest {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// Sampling and stopping parameters.
    pub params: SamplingParams,
    /// Optional text-level stop condition.
    pub stop_check: Option<StopCheck>,
}

impl GenerationRequest {
    /// A request without a stop check.
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> Self {
        GenerationRequest { prompt, params, stop_check: None }
    }

    /// Adds a stop check.
    pub fn with_stop_check(mut self, check: impl FnMut(&[u32]) -> bool + Send + 'static) -> Self {
        self.stop_check = Some(Box::new(check));
        self
    }
}

impl std::fmt::Debug for GenerationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationRequest")
            .field("prompt_len", &self.prompt.len())
            .field("params", &self.params)
            .field("stop_check", &self.stop_check.is_some())
            .finish()
    }
}

/// A finished sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationOutput {
    /// Generated ids, including the stop token when one ended the sequence.
    pub new_ids: Vec<u32>,
    /// Log-probability of each generated id under the model (temperature 1, untruncated).
    pub token_logprobs: Vec<f32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (`new_ids.len()`).
    pub completion_tokens: usize,
}

/// Completes `prompts` (of any lengths) with the same parameters, batching them through one
/// engine. Prompt `i` uses seed `params.seed + i` so repeated prompts get distinct samples;
/// with greedy decoding every output equals running its prompt alone.
pub fn generate<B: Backend, M: CausalLm<B>>(
    model: &M,
    prompts: Vec<Vec<u32>>,
    params: &SamplingParams,
) -> Result<Vec<GenerationOutput>, ModelError> {
    let requests = prompts
        .into_iter()
        .enumerate()
        .map(|(i, prompt)| {
            let p = SamplingParams { seed: params.seed.wrapping_add(i as u64), ..params.clone() };
            GenerationRequest::new(prompt, p)
        })
        .collect();
    generate_requests(model, requests, usize::MAX)
}

/// Completes arbitrary requests, at most `max_batch` decoding at once (the rest wait for a
/// free slot). Outputs are in request order.
pub fn generate_requests<B: Backend, M: CausalLm<B>>(
    model: &M,
    requests: Vec<GenerationRequest>,
    max_batch: usize,
) -> Result<Vec<GenerationOutput>, ModelError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let max_seq_len = requests
        .iter()
        .map(|r| r.prompt.len() + r.params.max_new_tokens.max(1))
        .max()
        .unwrap_or(1);
    let config = EngineConfig { max_batch: max_batch.clamp(1, requests.len()), max_seq_len, ..Default::default() };
    let mut engine = Engine::new(model, config);
    let mut ids = Vec::with_capacity(requests.len());
    for r in requests {
        ids.push(engine.add_request(r)?);
    }
    let mut done: std::collections::HashMap<_, GenerationOutput> = Default::default();
    while engine.has_work() {
        for ev in engine.step()? {
            if let Some(out) = ev.finished {
                done.insert(ev.id, out);
            }
        }
    }
    ids.iter()
        .map(|id| done.remove(id).ok_or_else(|| ModelError::InvalidInput(format!("request {id} never finished"))))
        .collect()
}
