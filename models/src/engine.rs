//! Continuous-batching generation engine.
//!
//! The server and the native teacher backend feed requests in as they arrive; every
//! [`Engine::step`] decodes one token for every running sequence in a single batched forward
//! pass, then admits waiting requests into free cache slots (prefilling their prompts). A
//! finished sequence frees its slot at once, so a long completion never holds up short ones.
//!
//! Each request owns its sampler (seeded RNG) and cache slot, so its tokens do not depend on
//! what else is in the batch (exactly so for greedy decoding).

use std::collections::VecDeque;
use std::marker::PhantomData;

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::error::ModelError;
use crate::generate::{FinishReason, GenerationOutput, GenerationRequest, StopCheck};
use crate::lm::{CachedInput, CausalLm, KvCache};
use crate::sampling::Sampler;

/// Identifies a request within one engine.
pub type RequestId = u64;

/// Engine sizing. The KV cache for `max_batch × max_seq_len` tokens is allocated up front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Sequences decoded together (cache slots). Default 8.
    pub max_batch: usize,
    /// Prompt + completion tokens per sequence (cache capacity). Default 4096.
    pub max_seq_len: usize,
    /// Prompts are prefilled in chunks of at most this many tokens, bounding the attention
    /// score memory of long prompts. Default 512.
    pub prefill_chunk: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_batch: 8, max_seq_len: 4096, prefill_chunk: 512 }
    }
}

/// What one step produced for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct StepEvent {
    /// The request.
    pub id: RequestId,
    /// Tokens generated in this step (for streaming), usually one.
    pub new_tokens: Vec<u32>,
    /// Log-probabilities of `new_tokens`.
    pub new_logprobs: Vec<f32>,
    /// Per new token, the `top_logprobs` most likely (id, logprob) of its raw distribution
    /// (empty lists when the request asked for none).
    pub new_top: Vec<Vec<(u32, f32)>>,
    /// Set when the request finished in this step; it is then removed from the engine.
    pub finished: Option<GenerationOutput>,
}

struct Running {
    id: RequestId,
    slot: usize,
    sampler: Sampler,
    stop_check: Option<StopCheck>,
    prompt_tokens: usize,
    max_new_tokens: usize,
    new_ids: Vec<u32>,
    logprobs: Vec<f32>,
}

struct Waiting {
    id: RequestId,
    request: GenerationRequest,
}

/// A continuous-batching generator over any [`CausalLm`].
pub struct Engine<B: Backend, M: CausalLm<B>> {
    model: M,
    config: EngineConfig,
    cache: M::Cache,
    free_slots: Vec<usize>,
    waiting: VecDeque<Waiting>,
    running: Vec<Running>,
    next_id: RequestId,
    _backend: PhantomData<B>,
}

impl<B: Backend, M: CausalLm<B>> Engine<B, M> {
    /// Allocates the cache and an empty queue. `model` may be a reference (`&Model<B>`).
    pub fn new(model: M, config: EngineConfig) -> Self {
        let config = EngineConfig {
            max_batch: config.max_batch.max(1),
            max_seq_len: config.max_seq_len.max(1),
            prefill_chunk: config.prefill_chunk.max(1),
        };
        let cache = model.new_cache(config.max_batch, config.max_seq_len);
        let free_slots = (0..config.max_batch).rev().collect();
        Engine {
            model,
            config,
            cache,
            free_slots,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 0,
            _backend: PhantomData,
        }
    }

    /// The model being run.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The sizing the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Queues a request. Fails if the prompt is empty, has ids outside the vocabulary, leaves
    /// no room in `max_seq_len`, or the sampling parameters are invalid. A completion that
    /// would overflow `max_seq_len` ends early with `Length`.
    pub fn add_request(&mut self, request: GenerationRequest) -> Result<RequestId, ModelError> {
        request.params.validate()?;
        let vocab = self.model.config().vocab_size;
        if request.prompt.is_empty() {
            return Err(ModelError::InvalidInput("empty prompt".into()));
        }
        if let Some(&bad) = request.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::InvalidInput(format!("prompt token id {bad} >= vocab_size {vocab}")));
        }
        if request.prompt.len() >= self.config.max_seq_len {
            return Err(ModelError::InvalidInput(format!(
                "prompt of {} tokens leaves no room for generation (max_seq_len {})",
                request.prompt.len(),
                self.config.max_seq_len
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiting { id, request });
        Ok(id)
    }

    /// Drops a waiting or running request. Returns false if it is unknown (e.g. finished).
    pub fn cancel(&mut self, id: RequestId) -> bool {
        if let Some(pos) = self.waiting.iter().position(|w| w.id == id) {
            self.waiting.remove(pos);
            return true;
        }
        if let Some(pos) = self.running.iter().position(|r| r.id == id) {
            let r = self.running.remove(pos);
            self.release(r.slot);
            return true;
        }
        false
    }

    /// True while any request is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Requests currently decoding.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Requests queued for a free slot.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Decodes one token for every running request (one batched forward), then admits and
    /// prefills waiting requests into free slots (each yields its first token).
    pub fn step(&mut self) -> Result<Vec<StepEvent>, ModelError> {
        let mut events = Vec::new();
        if !self.running.is_empty() {
            self.decode_running(&mut events)?;
        }
        while !self.free_slots.is_empty() {
            let Some(w) = self.waiting.pop_front() else { break };
            self.admit(w, &mut events)?;
        }
        Ok(events)
    }

    fn release(&mut self, slot: usize) {
        self.cache.reset(slot);
        self.free_slots.push(slot);
    }

    fn decode_running(&mut self, events: &mut Vec<StepEvent>) -> Result<(), ModelError> {
        let device = self.model.device();
        let n = self.running.len();
        let last: Vec<i64> = self.running.iter().map(|r| *r.new_ids.last().expect("running has a token") as i64).collect();
        let slots: Vec<usize> = self.running.iter().map(|r| r.slot).collect();
        let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(last, [n, 1]), &device);
        let hidden = self.model.forward_cached(CachedInput { input_ids, slots, lengths: None }, &mut self.cache)?;
        let rows = self.logits_rows(hidden)?;
        let mut finished = Vec::new();
        for (i, row) in rows.chunks(self.model.config().vocab_size).enumerate() {
            let ev = Self::advance(&mut self.running[i], row, self.config.max_seq_len);
            if ev.finished.is_some() {
                finished.push(i);
            }
            events.push(ev);
        }
        for &i in finished.iter().rev() {
            let r = self.running.remove(i);
            self.release(r.slot);
        }
        Ok(())
    }

    fn admit(&mut self, w: Waiting, events: &mut Vec<StepEvent>) -> Result<(), ModelError> {
        let GenerationRequest { prompt, params, stop_check } = w.request;
        let mut sampler = Sampler::new(params);
        sampler.observe_prompt(&prompt);
        let mut r = Running {
            id: w.id,
            slot: usize::MAX,
            max_new_tokens: sampler.params().max_new_tokens,
            sampler,
            stop_check,
            prompt_tokens: prompt.len(),
            new_ids: Vec::new(),
            logprobs: Vec::new(),
        };
        if r.max_new_tokens == 0 {
            events.push(StepEvent { id: r.id, new_tokens: vec![], new_logprobs: vec![], new_top: vec![], finished: Some(Self::output(&r, FinishReason::Length)) });
            return Ok(());
        }
        let slot = self.free_slots.pop().expect("caller checked a free slot");
        r.slot = slot;
        let device = self.model.device();
        let mut hidden = None;
        for chunk in prompt.chunks(self.config.prefill_chunk) {
            let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
            let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, chunk.len()]), &device);
            let input = CachedInput { input_ids, slots: vec![slot], lengths: None };
            match self.model.forward_cached(input, &mut self.cache) {
                Ok(h) => hidden = Some(h),
                Err(e) => {
                    self.release(slot);
                    return Err(e);
                }
            }
        }
        let hidden = hidden.expect("prompt is non-empty");
        let t = hidden.dims()[1];
        let rows = self.logits_rows(hidden.narrow(1, t - 1, 1))?;
        let ev = Self::advance(&mut r, &rows, self.config.max_seq_len);
        let done = ev.finished.is_some();
        events.push(ev);
        if done {
            self.release(slot);
        } else {
            self.running.push(r);
        }
        Ok(())
    }

    /// Last-position hidden `[n, 1, H]` → host f32 logits, row-major `[n × vocab]`.
    fn logits_rows(&self, hidden: Tensor<B, 3>) -> Result<Vec<f32>, ModelError> {
        let logits = self.model.logits(hidden).cast(FloatDType::F32);
        logits
            .into_data()
            .to_vec::<f32>()
            .map_err(|e| ModelError::InvalidInput(format!("reading logits: {e:?}")))
    }

    /// Samples one token for `r` and decides whether it is finished.
    fn advance(r: &mut Running, logits: &[f32], max_seq_len: usize) -> StepEvent {
        let tok = r.sampler.sample(logits);
        r.new_ids.push(tok.id);
        r.logprobs.push(tok.logprob);
        let stop = r.sampler.params().stop_token_ids.contains(&tok.id)
            || r.stop_check.as_mut().is_some_and(|check| check(&r.new_ids));
        let full = r.new_ids.len() >= r.max_new_tokens || r.prompt_tokens + r.new_ids.len() >= max_seq_len;
        let finished = if stop {
            Some(Self::output(r, FinishReason::Stop))
        } else if full {
            Some(Self::output(r, FinishReason::Length))
        } else {
            None
        };
        StepEvent { id: r.id, new_tokens: vec![tok.id], new_logprobs: vec![tok.logprob], new_top: vec![tok.top], finished }
    }

    fn output(r: &Running, reason: FinishReason) -> GenerationOutput {
        GenerationOutput {
            new_ids: r.new_ids.clone(),
            token_logprobs: r.logprobs.clone(),
            finish_reason: reason,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.new_ids.len(),
        }
    }
}
