//! [`NativeBackend`]: the in-process engine behind the [`Backend`] trait, for the teacher
//! sampler and the evaluator. It submits a run's requests in chunks
//! ([`Backend::complete_together`]), so native sampling is reproducible.

use std::time::Instant;

use datasets::DatasetError;
use futures::future::BoxFuture;

use crate::backend::{split_reasoning, Backend, BackendError, ChatRequest, Completion};
use crate::engine_worker::EngineFailure;
use crate::native::{collect_text, GenParams, GenerateError, NativeModel, TextOutput};

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
        match self.model.prompt_ids(&req.prompt) {
            Ok(ids) => completion(self.model.generate(ids, &GenParams::from_chat(&req)).await, started),
            Err(e) => Ok(prompt_failure(&e)),
        }
    }
}

/// The completion of a finished generation; `latency_ms` counts from `started`.
fn completion(out: Result<TextOutput, GenerateError>, started: Instant) -> Result<Completion, BackendError> {
    match out {
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

/// The recorded failure of a prompt the tokenizer or template cannot render.
pub(crate) fn prompt_failure(e: &DatasetError) -> Completion {
    Completion::failed(format!("prompt: {}", crate::error_chain(e)), 0)
}

impl Backend for NativeBackend {
    fn model_name(&self) -> &str {
        self.model.name()
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        Box::pin(self.complete_inner(request))
    }

    fn submits_together(&self) -> bool {
        true
    }

    /// One engine command for every request whose prompt renders ([`EngineHandle::submit_all`]),
    /// so native sampling and evaluation are reproducible; `latency_ms` counts from submission.
    fn complete_together(&self, requests: Vec<ChatRequest>) -> Vec<BoxFuture<'_, Result<Completion, BackendError>>> {
        let started = Instant::now();
        let mut items = Vec::with_capacity(requests.len());
        let mut prompts = Vec::with_capacity(requests.len());
        for req in &requests {
            prompts.push(match self.model.prompt_ids(&req.prompt) {
                Ok(ids) => {
                    items.push((ids, GenParams::from_chat(req)));
                    Ok(())
                }
                Err(e) => Err(e),
            });
        }
        let mut streams = self.model.generate_streams_together(items).into_iter();
        prompts
            .into_iter()
            .map(|p| -> BoxFuture<'_, Result<Completion, BackendError>> {
                match p {
                    Ok(()) => {
                        let rx = streams.next().expect("one stream per rendered prompt");
                        Box::pin(async move { completion(collect_text(rx).await, started) })
                    }
                    Err(e) => Box::pin(std::future::ready(Ok(prompt_failure(&e)))),
                }
            })
            .collect()
    }
}
