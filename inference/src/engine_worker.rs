//! The engine thread: one OS thread owns the `models` continuous-batching engine, and async
//! callers (the native backend, `distill serve`) submit requests to it over a channel.
//!
//! Requests that arrive while others are decoding join the next step, so concurrent callers
//! share forward passes. Each request streams its tokens back on its own channel; when a caller
//! goes away (client disconnect, stop string matched, sampler cancelled) its channel closes and
//! the request is cancelled in the engine, freeing its cache slot at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::prelude::Backend;
use models::generate::{GenerationOutput, GenerationRequest};
use models::lm::CausalLm;
use models::{Engine, EngineConfig, ModelError};
use tokio::sync::mpsc;

/// What the engine sends back for one request.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// Newly generated ids (usually one per step).
    Tokens(Vec<u32>),
    /// Logprobs of the ids of the `Tokens` event that follows: per id its raw logprob and the
    /// requested top alternatives (see [`models::sampling::SampledToken`]).
    Logprobs(Vec<f32>, Vec<Vec<(u32, f32)>>),
    /// The request finished; carries the full output.
    Finished(GenerationOutput),
    /// The request was rejected or the engine failed.
    Failed(EngineFailure),
}

/// Why the engine could not finish a request. Cloneable (one failed step fails every request
/// in the batch), so the model error is shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineFailure {
    /// Every handle's engine thread is gone (shutdown or a panic).
    #[error("the engine thread has stopped")]
    Stopped,
    /// The engine refused the request (prompt too long, bad ids, …).
    #[error("the engine rejected the request")]
    Rejected(#[source] Arc<ModelError>),
    /// A forward pass failed; the whole batch was failed with it.
    #[error("engine step failed")]
    Step(#[source] Arc<ModelError>),
}

enum Command {
    Submit {
        request: GenerationRequest,
        events: mpsc::UnboundedSender<EngineEvent>,
    },
    /// Load new weights (see [`EngineHandle::reload`]).
    Reload {
        path: PathBuf,
        reply: tokio::sync::oneshot::Sender<Result<(), ModelError>>,
    },
}

/// Builds a model of the running architecture from a checkpoint directory, on the engine
/// thread (weight reloads).
pub type Reloader<M> = Box<dyn Fn(&Path) -> Result<M, ModelError> + Send>;

/// Sizing and identity of a running engine, for validation on the async side.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    /// Cache slots (sequences decoded together).
    pub max_batch: usize,
    /// Prompt + completion capacity per sequence.
    pub max_seq_len: usize,
    /// Vocabulary size of the model.
    pub vocab_size: usize,
}

/// Handle to the engine thread. Cloning is cheap; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std_mpsc::Sender<Command>,
    info: EngineInfo,
}

impl EngineHandle {
    /// Starts the engine thread. `make` builds the model on that thread (so device state and
    /// weights live where they are used); its error is returned here.
    pub fn spawn<B, M, F>(
        make: F,
        config: EngineConfig,
    ) -> Result<(Self, JoinHandle<()>), ModelError>
    where
        B: Backend,
        M: CausalLm<B> + 'static,
        F: FnOnce() -> Result<M, ModelError> + Send + 'static,
    {
        Self::spawn_reloadable::<B, M, F>(make, None, config)
    }

    /// As [`EngineHandle::spawn`], with `reload` building a new model from a checkpoint
    /// directory for [`EngineHandle::reload`] (without it, reloads are refused).
    pub fn spawn_reloadable<B, M, F>(
        make: F,
        reload: Option<Reloader<M>>,
        config: EngineConfig,
    ) -> Result<(Self, JoinHandle<()>), ModelError>
    where
        B: Backend,
        M: CausalLm<B> + 'static,
        F: FnOnce() -> Result<M, ModelError> + Send + 'static,
    {
        let (tx, rx) = std_mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<EngineInfo, ModelError>>();
        let thread = std::thread::Builder::new()
            .name("distill-engine".into())
            .spawn(move || {
                let model = match make() {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let vocab_size = model.config().vocab_size;
                let engine = Engine::<B, M>::new(model, config);
                let info = EngineInfo {
                    max_batch: engine.config().max_batch,
                    max_seq_len: engine.config().max_seq_len,
                    vocab_size,
                };
                if ready_tx.send(Ok(info)).is_err() {
                    return;
                }
                run_loop(engine, rx, reload);
            })
            .map_err(|e| ModelError::InvalidInput(format!("cannot start engine thread: {e}")))?;
        let info = ready_rx.recv().map_err(|_| {
            ModelError::InvalidInput("engine thread exited during start-up".into())
        })??;
        Ok((EngineHandle { tx, info }, thread))
    }

    /// The engine's sizing.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Replaces the weights with those of checkpoint `path` (same architecture): requests
    /// already running finish on the old weights, requests arriving meanwhile wait, and the
    /// swap happens once the engine is idle (SGLang's `update_weights_from_disk` also drains
    /// first). Resolves when the new weights serve, or with why they could not be loaded (the
    /// old weights then keep serving).
    pub async fn reload(&self, path: PathBuf) -> Result<(), EngineFailure> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Command::Reload { path, reply })
            .map_err(|_| EngineFailure::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineFailure::Rejected(Arc::new(e))),
            Err(_) => Err(EngineFailure::Stopped),
        }
    }

    /// Queues a request; tokens arrive on the returned channel. Dropping the receiver cancels it.
    pub fn submit(
        &self,
        request: GenerationRequest,
    ) -> Result<mpsc::UnboundedReceiver<EngineEvent>, EngineFailure> {
        let (events, rx) = mpsc::unbounded_channel();
        self.tx
            .send(Command::Submit { request, events })
            .map_err(|_| EngineFailure::Stopped)?;
        Ok(rx)
    }
}

type PendingReload = (PathBuf, tokio::sync::oneshot::Sender<Result<(), ModelError>>);

fn run_loop<B: Backend, M: CausalLm<B>>(
    mut engine: Engine<B, M>,
    rx: std_mpsc::Receiver<Command>,
    reloader: Option<Reloader<M>>,
) {
    let mut routes: HashMap<u64, mpsc::UnboundedSender<EngineEvent>> = HashMap::new();
    let mut pending: Option<PendingReload> = None;
    loop {
        if pending.is_some() && !engine.has_work() {
            let (path, reply) = pending.take().expect("checked");
            let result = swap_weights(&mut engine, reloader.as_ref(), &path);
            let _ = reply.send(result);
        }
        if pending.is_none() && !engine.has_work() {
            // Idle: block until a request arrives (or every handle is dropped).
            match rx.recv() {
                Ok(cmd) => accept(&mut engine, cmd, &mut routes, &mut pending),
                Err(_) => return,
            }
        }
        // Everything that arrived meanwhile joins this step (nothing new while a reload
        // waits for the running requests to drain).
        while pending.is_none() {
            match rx.try_recv() {
                Ok(cmd) => accept(&mut engine, cmd, &mut routes, &mut pending),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    if !engine.has_work() {
                        return;
                    }
                    break;
                }
            }
        }
        // Callers that went away free their slots before the next forward pass.
        let gone: Vec<u64> = routes
            .iter()
            .filter(|(_, tx)| tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            engine.cancel(id);
            routes.remove(&id);
        }
        if !engine.has_work() {
            continue;
        }
        match engine.step() {
            Ok(events) => {
                for ev in events {
                    let Some(tx) = routes.get(&ev.id) else {
                        continue;
                    };
                    if !ev.new_tokens.is_empty() {
                        let _ = tx.send(EngineEvent::Logprobs(ev.new_logprobs, ev.new_top));
                        let _ = tx.send(EngineEvent::Tokens(ev.new_tokens));
                    }
                    if let Some(out) = ev.finished {
                        let _ = tx.send(EngineEvent::Finished(out));
                        routes.remove(&ev.id);
                    }
                }
            }
            Err(e) => {
                // A failed step leaves the batch in an unknown state: fail everything in it.
                tracing::error!(error = %e, "engine step failed");
                let e = Arc::new(e);
                for (id, tx) in routes.drain() {
                    let _ = tx.send(EngineEvent::Failed(EngineFailure::Step(e.clone())));
                    engine.cancel(id);
                }
            }
        }
    }
}

/// Loads `path` with `reloader` and, when its architecture matches, rebuilds the (idle)
/// engine around it with the same sizing; on any error the old model keeps serving.
fn swap_weights<B: Backend, M: CausalLm<B>>(
    engine: &mut Engine<B, M>,
    reloader: Option<&Reloader<M>>,
    path: &Path,
) -> Result<(), ModelError> {
    let reloader = reloader.ok_or_else(|| {
        ModelError::InvalidInput("this engine was started without weight reloading".into())
    })?;
    let model = reloader(path)?;
    let (old, new) = (engine.model().config(), model.config());
    let shape = |c: &models::ModelConfig| {
        (
            c.architecture,
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.tie_word_embeddings,
        )
    };
    if shape(old) != shape(new) {
        return Err(ModelError::InvalidInput(format!(
            "{}: architecture differs from the served model ({:?} vs {:?}); a reload needs the same architecture",
            path.display(),
            shape(new),
            shape(old)
        )));
    }
    let config = engine.config().clone();
    *engine = Engine::new(model, config);
    tracing::info!(path = %path.display(), "weights reloaded");
    Ok(())
}

fn accept<B: Backend, M: CausalLm<B>>(
    engine: &mut Engine<B, M>,
    cmd: Command,
    routes: &mut HashMap<u64, mpsc::UnboundedSender<EngineEvent>>,
    pending: &mut Option<PendingReload>,
) {
    match cmd {
        Command::Reload { path, reply } => {
            if let Some((_, earlier)) = pending.replace((path, reply)) {
                let _ = earlier.send(Err(ModelError::InvalidInput(
                    "superseded by a later reload".into(),
                )));
            }
        }
        Command::Submit { request, events } => match engine.add_request(request) {
            Ok(id) => {
                routes.insert(id, events);
            }
            Err(e) => {
                let _ = events.send(EngineEvent::Failed(EngineFailure::Rejected(Arc::new(e))));
            }
        },
    }
}
