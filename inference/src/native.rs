//! The native backend: a checkpoint run in-process by the `models` engine, behind the same
//! [`Backend`] trait as the HTTP client, and the model `distill serve` serves.
//!
//! [`NativeModel`] is the text generator over the engine thread: prompts become ids through
//! [`crate::text::prompt_ids`], the engine's token stream becomes text through
//! [`crate::text::TextStream`]. Concurrent calls are batched by the engine into shared forward
//! passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::prelude::Backend as BurnBackend;
use burn::tensor::DType;
use datasets::{DatasetError, TextTokenizer};
use futures::future::BoxFuture;
use models::generate::GenerationRequest;
use models::sampling::SamplingParams;
use models::{EngineConfig, GenerationConfig, ModelConfig};
use tokio::sync::mpsc;

use crate::backend::{
    split_reasoning, Backend, BackendError, ChatRequest, Completion, FinishReason, Prompt,
};
use crate::engine_worker::{EngineEvent, EngineFailure, EngineHandle};
use crate::text::{self, TextStream};
use crate::InferenceError;

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
    /// The end: why, and token counts.
    Done {
        /// `Stop` (EOS or stop string) or `Length`.
        finish_reason: FinishReason,
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
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
}

/// A loaded model with its tokenizer, ready to generate text.
#[derive(Clone)]
pub struct NativeModel {
    engine: EngineHandle,
    tokenizer: Arc<TextTokenizer>,
    name: String,
    eos: Vec<u32>,
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
        }
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
        let (handle, _thread) = EngineHandle::spawn::<B, _, _>(
            move || models::loader::load_model::<B>(&owned, &device, dtype).map(|l| l.model),
            engine,
        )?;
        let name = name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        Ok(Self::new(handle, tokenizer, name, gen.eos_token_ids))
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
        let (tx, rx) = mpsc::unbounded_channel();
        let prompt_tokens = prompt_ids.len() as u32;
        let sampling = SamplingParams {
            max_new_tokens: params.max_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            seed: params.seed,
            stop_token_ids: self.eos.clone(),
        };
        let mut engine_rx = match self
            .engine
            .submit_in(group, GenerationRequest::new(prompt_ids, sampling))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(TextEvent::Error(e.into()));
                return rx;
            }
        };
        let tokenizer = self.tokenizer.clone();
        let eos = self.eos.clone();
        let stops = params.stop.clone();
        tokio::spawn(async move {
            let mut stream = TextStream::new(eos, &stops);
            let send = |ev: TextEvent| tx.send(ev).is_ok();
            loop {
                // A caller that goes away cancels at once, even while the generation is still
                // queued and no token would ever reveal the closed channel.
                let ev = tokio::select! {
                    ev = engine_rx.recv() => ev,
                    _ = tx.closed() => return,
                };
                let Some(ev) = ev else { break };
                match ev {
                    EngineEvent::Tokens(ids) => {
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
                            if step.stopped {
                                send(TextEvent::Done {
                                    finish_reason: FinishReason::Stop,
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
                        send(TextEvent::Done {
                            finish_reason: text::finish_reason(tail.stopped, out.finish_reason),
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
        });
        rx
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

/// Reads a [`NativeModel::generate_stream`] channel to the end into one [`TextOutput`].
pub async fn collect_text(
    mut rx: mpsc::UnboundedReceiver<TextEvent>,
) -> Result<TextOutput, GenerateError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            TextEvent::Delta(t) => text.push_str(&t),
            TextEvent::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                return Ok(TextOutput {
                    text,
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                })
            }
            TextEvent::Error(e) => return Err(e),
        }
    }
    Err(GenerateError::NoResult)
}

/// [`Backend`] over a [`NativeModel`].
pub struct NativeBackend {
    model: NativeModel,
}

impl NativeBackend {
    /// Wraps a loaded model.
    pub fn new(model: NativeModel) -> Self {
        NativeBackend { model }
    }

    async fn complete_inner(&self, req: ChatRequest) -> Result<Completion, BackendError> {
        let started = Instant::now();
        let ids = match self.model.prompt_ids(&req.prompt) {
            Ok(ids) => ids,
            Err(e) => {
                let message = format!("prompt: {}", crate::error_chain(&e));
                return Ok(Completion::failed(message, 0));
            }
        };
        let params = GenParams {
            max_tokens: req.max_tokens as usize,
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: 0,
            seed: req.seed.unwrap_or(0),
            stop: req.stop.clone(),
        };
        match self.model.generate(ids, &params).await {
            Ok(out) => {
                let (reasoning, content) = split_reasoning(&out.text);
                Ok(Completion {
                    reasoning,
                    content,
                    completion: out.text,
                    finish_reason: out.finish_reason,
                    prompt_tokens: out.prompt_tokens,
                    completion_tokens: out.completion_tokens,
                    latency_ms: started.elapsed().as_millis() as u64,
                    error: None,
                    thinking: None,
                })
            }
            Err(GenerateError::Engine(EngineFailure::Stopped)) => Err(BackendError::Shutdown),
            // Rejected inputs (prompt too long, bad ids) are properties of the request.
            Err(e) => Ok(Completion::failed(
                crate::error_chain(&e),
                started.elapsed().as_millis() as u64,
            )),
        }
    }
}

impl Backend for NativeBackend {
    fn model_name(&self) -> &str {
        self.model.name()
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        Box::pin(self.complete_inner(request))
    }
}
