//! The native backend: a checkpoint run in-process by the `models` engine, behind the same
//! [`crate::backend::Backend`] trait as the HTTP client, and the model `distill serve` serves.
//!
//! [`NativeModel`] is the text generator over the engine thread: prompts become ids through
//! [`crate::text::prompt_ids`], the engine's token stream becomes text through
//! [`crate::text::TextStream`]. Concurrent calls are batched by the engine into shared forward
//! passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::Backend as BurnBackend;
use burn::tensor::DType;
use datasets::{DatasetError, TextTokenizer};
use models::generate::GenerationRequest;
use models::sampling::SamplingParams;
use models::{EngineConfig, GenerationConfig, ModelConfig};
use tokio::sync::mpsc;

use crate::backend::{ChatRequest, FinishReason, Prompt};
use crate::engine_worker::{EngineEvent, EngineFailure, EngineHandle};
use crate::logprobs::TokenLogprob;
use crate::serve_params::SamplingDefaults;
use crate::text::{self, TextStream};
use crate::InferenceError;
pub use crate::native_backend::NativeBackend;

/// Sampling settings of one native generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenParams {
    /// Maximum new tokens.
    pub max_tokens: usize,
    /// Temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Top-k (0 = off).
    pub top_k: usize,
    /// RNG seed.
    pub seed: u64,
    /// Stop strings (not included in the output).
    pub stop: Vec<String>,
    /// Extra ids that end generation (vLLM's `stop_token_ids`), besides EOS.
    pub stop_token_ids: Vec<u32>,
    /// HF repetition penalty over prompt and output (1 = off).
    pub repetition_penalty: f32,
    /// Neither EOS, stop ids nor stop strings end the generation before this many tokens.
    pub min_tokens: usize,
    /// EOS does not end the generation (its text is still not shown); stop ids still do.
    pub ignore_eos: bool,
    /// Report per-token logprobs with this many top alternatives (`None` = no logprobs).
    pub logprobs: Option<usize>,
}

impl GenParams {
    /// The engine parameters of a backend [`ChatRequest`] (top-k off, seed 0 when unset),
    /// shared by the plain and the budget-forcing native backends.
    pub fn from_chat(req: &ChatRequest) -> Self {
        GenParams {
            max_tokens: req.max_tokens as usize,
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: 0,
            seed: req.seed.unwrap_or(0),
            stop: req.stop.clone(),
            ..Default::default()
        }
    }
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            repetition_penalty: 1.0,
            min_tokens: 0,
            ignore_eos: false,
            logprobs: None,
        }
    }
}

/// What ended a generation that finished with `stop`, as vLLM's `stop_reason` reports it:
/// the matched stop string or the requested stop token id (`None` for EOS and `length`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A stop string matched.
    String(String),
    /// One of the request's `stop_token_ids` was generated.
    Token(u32),
}

impl StopReason {
    /// The wire value: a string or an integer.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            StopReason::String(s) => serde_json::Value::String(s.clone()),
            StopReason::Token(id) => serde_json::Value::from(*id),
        }
    }
}

/// Why a generation produced no result.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GenerateError {
    /// The engine rejected the request, failed, or is gone.
    #[error(transparent)]
    Engine(#[from] EngineFailure),
    /// The tokenizer could not decode the generated ids.
    #[error("cannot decode the generated ids")]
    Detokenize(#[source] Arc<DatasetError>),
    /// The stream closed without a final event.
    #[error("generation ended without a result")]
    NoResult,
}

/// One piece of a streamed generation.
#[derive(Clone, Debug)]
pub enum TextEvent {
    /// Text safe to show (stop strings never appear).
    Delta(String),
    /// Logprobs of generated ids, sent before the text they produce (only when
    /// [`GenParams::logprobs`] asks for them; one entry per generated id, EOS included).
    Logprobs(Vec<TokenLogprob>),
    /// The end: why, and token counts.
    Done {
        /// `Stop` (EOS or stop string) or `Length`.
        finish_reason: FinishReason,
        /// The stop string or stop id that ended it (vLLM's `stop_reason`).
        stop_reason: Option<StopReason>,
        /// Prompt length in tokens.
        prompt_tokens: u32,
        /// Generated tokens (up to and including the one completing a stop string / EOS).
        completion_tokens: u32,
    },
    /// Generation failed (bad prompt, engine error).
    Error(GenerateError),
}

/// A finished, non-streamed generation.
#[derive(Clone, Debug, PartialEq)]
pub struct TextOutput {
    /// Generated text.
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The stop string or stop id that ended it.
    pub stop_reason: Option<StopReason>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Per-token logprobs (empty unless requested).
    pub tokens: Vec<TokenLogprob>,
}

/// A loaded model with its tokenizer, ready to generate text.
#[derive(Clone)]
pub struct NativeModel {
    engine: EngineHandle,
    tokenizer: Arc<TextTokenizer>,
    name: String,
    eos: Vec<u32>,
    defaults: SamplingDefaults,
    /// Bumped by every weight reload (part of `system_fingerprint`).
    weights_version: Arc<std::sync::atomic::AtomicU64>,
}

impl NativeModel {
    /// Wraps a running engine and its tokenizer. `eos` lists every id that ends generation
    /// (tokenizer EOS and generation_config EOS).
    pub fn new(
        engine: EngineHandle,
        tokenizer: Arc<TextTokenizer>,
        name: String,
        eos: Vec<u32>,
    ) -> Self {
        let eos = text::eos_ids(&eos, Some(&tokenizer));
        NativeModel {
            engine,
            tokenizer,
            name,
            eos,
            defaults: SamplingDefaults::default(),
            weights_version: Default::default(),
        }
    }

    /// Sampling defaults for requests that omit a field (vLLM's `--generation-config auto`:
    /// the checkpoint's `generation_config.json`).
    pub fn with_defaults(mut self, defaults: SamplingDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// The sampling defaults requests fall back to.
    pub fn defaults(&self) -> &SamplingDefaults {
        &self.defaults
    }

    /// How many times the weights were reloaded.
    pub fn weights_version(&self) -> u64 {
        self.weights_version.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the served weights with checkpoint `dir`'s (same architecture and tokenizer;
    /// see [`EngineHandle::reload`]). Needs a model from [`NativeModel::load`].
    pub async fn reload(&self, dir: PathBuf) -> Result<(), EngineFailure> {
        self.engine.reload(dir).await?;
        self.weights_version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Loads checkpoint `dir` (weights, config, tokenizer files) on `device` in `dtype` and
    /// starts its engine thread.
    pub fn load<B: BurnBackend>(
        dir: &Path,
        device: B::Device,
        dtype: DType,
        engine: EngineConfig,
        name: Option<String>,
    ) -> Result<Self, InferenceError> {
        let tokenizer = Arc::new(TextTokenizer::from_dir(dir)?);
        let model_cfg = ModelConfig::from_dir(dir)?;
        let gen = GenerationConfig::from_dir(dir, &model_cfg)?;
        let owned: PathBuf = dir.to_path_buf();
        let reload_device = device.clone();
        let reloader: crate::engine_worker::Reloader<models::Model<B>> = Box::new(move |p| {
            models::loader::load_model::<B>(p, &reload_device, dtype).map(|l| l.model)
        });
        let (handle, _thread) = EngineHandle::spawn_reloadable::<B, _, _>(
            move || models::loader::load_model::<B>(&owned, &device, dtype).map(|l| l.model),
            Some(reloader),
            engine,
        )?;
        let name = name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let defaults = SamplingDefaults::from_generation_config(&gen);
        Ok(Self::new(handle, tokenizer, name, gen.eos_token_ids.clone()).with_defaults(defaults))
    }

    /// The served model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Every id that ends generation (generation_config and tokenizer EOS).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The tokenizer, shared (for per-choice renderers that outlive a borrow).
    pub fn shared_tokenizer(&self) -> Arc<TextTokenizer> {
        self.tokenizer.clone()
    }

    /// The engine handle (sizing information).
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Prompt → ids (see [`text::prompt_ids`]).
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>, DatasetError> {
        text::prompt_ids(&self.tokenizer, prompt)
    }

    /// Starts generating from `prompt_ids`; text arrives on the returned channel. Dropping the
    /// receiver cancels the generation. Must be called inside a Tokio runtime.
    pub fn generate_stream(
        &self,
        prompt_ids: Vec<u32>,
        params: &GenParams,
    ) -> mpsc::UnboundedReceiver<TextEvent> {
        self.generate_stream_in(self.engine.new_group(), prompt_ids, params)
    }

    /// [`NativeModel::generate_stream`] in scheduling `group` (see
    /// [`EngineHandle::new_group`]): the choices of one HTTP request share one turn.
    pub fn generate_stream_in(
        &self,
        group: u64,
        prompt_ids: Vec<u32>,
        params: &GenParams,
    ) -> mpsc::UnboundedReceiver<TextEvent> {
        let (request, text) = self.engine_request(prompt_ids, params);
        text.spawn(self.engine.submit_in(group, request))
    }

    /// Starts every generation of `items` in one engine command (see
    /// [`EngineHandle::submit_all`]): on an idle engine the same items give the same tokens on
    /// every run. Channels as [`NativeModel::generate_stream`]'s, in item order. Must be
    /// called inside a Tokio runtime.
    pub fn generate_streams_together(
        &self,
        items: Vec<(Vec<u32>, GenParams)>,
    ) -> Vec<mpsc::UnboundedReceiver<TextEvent>> {
        let (requests, texts): (Vec<_>, Vec<_>) =
            items.into_iter().map(|(ids, params)| self.engine_request(ids, &params)).unzip();
        match self.engine.submit_all(requests) {
            Ok(receivers) => texts.into_iter().zip(receivers).map(|(t, rx)| t.spawn(Ok(rx))).collect(),
            Err(e) => texts.into_iter().map(|t| t.spawn(Err(e.clone()))).collect(),
        }
    }

    /// The engine request of one generation, and what turns its events into text.
    fn engine_request(&self, prompt_ids: Vec<u32>, params: &GenParams) -> (GenerationRequest, TextForwarder) {
        let prompt_tokens = prompt_ids.len() as u32;
        let mut stop_ids = if params.ignore_eos { Vec::new() } else { self.eos.clone() };
        stop_ids.extend(params.stop_token_ids.iter().filter(|id| !self.eos.contains(id)));
        let sampling = SamplingParams {
            max_new_tokens: params.max_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            seed: params.seed,
            stop_token_ids: stop_ids,
            repetition_penalty: params.repetition_penalty,
            min_new_tokens: params.min_tokens,
            top_logprobs: params.logprobs.unwrap_or(0),
        };
        let user_stop_ids = params
            .stop_token_ids
            .iter()
            .copied()
            .filter(|id| params.ignore_eos || !self.eos.contains(id))
            .collect();
        let text = TextForwarder {
            tokenizer: self.tokenizer.clone(),
            stream: TextStream::new(self.eos.clone(), &params.stop).with_min_tokens(params.min_tokens),
            user_stop_ids,
            want_logprobs: params.logprobs.is_some(),
            prompt_tokens,
        };
        (GenerationRequest::new(prompt_ids, sampling), text)
    }

    /// Generates to the end and returns the whole text.
    pub async fn generate(
        &self,
        prompt_ids: Vec<u32>,
        params: &GenParams,
    ) -> Result<TextOutput, GenerateError> {
        collect_text(self.generate_stream(prompt_ids, params)).await
    }
}

/// Turns one generation's engine events into text events on a task of its own.
struct TextForwarder {
    tokenizer: Arc<TextTokenizer>,
    stream: TextStream,
    user_stop_ids: Vec<u32>,
    want_logprobs: bool,
    prompt_tokens: u32,
}

impl TextForwarder {
    /// The text channel of a submitted generation (or of a submission that failed).
    fn spawn(
        self,
        submitted: Result<mpsc::UnboundedReceiver<EngineEvent>, EngineFailure>,
    ) -> mpsc::UnboundedReceiver<TextEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut engine_rx = match submitted {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(TextEvent::Error(e.into()));
                return rx;
            }
        };
        let TextForwarder { tokenizer, stream, user_stop_ids, want_logprobs, prompt_tokens } = self;
        tokio::spawn(async move {
            forward_events(&mut engine_rx, tx, stream, tokenizer, user_stop_ids, want_logprobs, prompt_tokens).await;
        });
        rx
    }
}

/// Turns one request's engine events into text events (see [`NativeModel::generate_stream`]).
async fn forward_events(
    engine_rx: &mut mpsc::UnboundedReceiver<EngineEvent>,
    tx: mpsc::UnboundedSender<TextEvent>,
    mut stream: TextStream,
    tokenizer: Arc<TextTokenizer>,
    user_stop_ids: Vec<u32>,
    want_logprobs: bool,
    prompt_tokens: u32,
) {
    let send = |ev: TextEvent| tx.send(ev).is_ok();
    let mut pending_lp: (Vec<f32>, Vec<Vec<(u32, f32)>>) = (Vec::new(), Vec::new());
    loop {
        // A caller that goes away cancels at once, even while the generation is still queued
        // and no token would ever reveal the closed channel.
        let ev = tokio::select! {
            ev = engine_rx.recv() => ev,
            _ = tx.closed() => return,
        };
        let Some(ev) = ev else { break };
        match ev {
            EngineEvent::Logprobs(lp, top) => pending_lp = (lp, top),
            EngineEvent::Tokens(ids) => {
                if want_logprobs {
                    let (lp, top) = std::mem::take(&mut pending_lp);
                    let mut top = top.into_iter();
                    let infos = ids
                        .iter()
                        .zip(lp)
                        .map(|(&id, logprob)| TokenLogprob {
                            id,
                            logprob,
                            top: top.next().unwrap_or_default(),
                        })
                        .collect();
                    if !send(TextEvent::Logprobs(infos)) {
                        return;
                    }
                }
                for id in ids {
                    let step = match stream.push(tokenizer.as_ref(), id) {
                        Ok(s) => s,
                        Err(e) => {
                            send(TextEvent::Error(GenerateError::Detokenize(Arc::new(e))));
                            return;
                        }
                    };
                    if !step.text.is_empty() && !send(TextEvent::Delta(step.text)) {
                        return; // caller gone: dropping engine_rx cancels
                    }
                    if let Some(matched) = step.stop_string {
                        send(TextEvent::Done {
                            finish_reason: FinishReason::Stop,
                            stop_reason: Some(StopReason::String(matched)),
                            prompt_tokens,
                            completion_tokens: stream.generated(),
                        });
                        return;
                    }
                }
            }
            EngineEvent::Finished(out) => {
                let tail = stream.finish(tokenizer.as_ref()).unwrap_or_default();
                if !tail.text.is_empty() {
                    send(TextEvent::Delta(tail.text));
                }
                let stop_reason = match (&tail.stop_string, out.new_ids.last()) {
                    (Some(m), _) => Some(StopReason::String(m.clone())),
                    (None, Some(&last))
                        if out.finish_reason == models::FinishReason::Stop
                            && user_stop_ids.contains(&last) =>
                    {
                        Some(StopReason::Token(last))
                    }
                    _ => None,
                };
                send(TextEvent::Done {
                    finish_reason: text::finish_reason(tail.stopped, out.finish_reason),
                    stop_reason,
                    prompt_tokens: out.prompt_tokens as u32,
                    completion_tokens: out.completion_tokens as u32,
                });
                return;
            }
            EngineEvent::Failed(f) => {
                send(TextEvent::Error(f.into()));
                return;
            }
        }
    }
    send(TextEvent::Error(EngineFailure::Stopped.into()));
}

/// Reads a [`NativeModel::generate_stream`] channel to the end into one [`TextOutput`].
pub async fn collect_text(
    mut rx: mpsc::UnboundedReceiver<TextEvent>,
) -> Result<TextOutput, GenerateError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            TextEvent::Delta(t) => text.push_str(&t),
            TextEvent::Logprobs(t) => tokens.extend(t),
            TextEvent::Done {
                finish_reason,
                stop_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                return Ok(TextOutput {
                    text,
                    finish_reason,
                    stop_reason,
                    prompt_tokens,
                    completion_tokens,
                    tokens,
                })
            }
            TextEvent::Error(e) => return Err(e),
        }
    }
    Err(GenerateError::NoResult)
}
