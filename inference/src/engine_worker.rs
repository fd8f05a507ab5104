//! The engine thread: one OS thread owns the `models` continuous-batching engine, and async
//! callers (the native backend, `distill serve`) submit requests to it over a channel.
//!
//! Requests that arrive while others are decoding join the next step, so concurrent callers
//! share forward passes. Requests wait in a fair queue ([`crate::scheduler`]) and fill free cache
//! slots round-robin over their groups (one group per HTTP request), so a request of many
//! prompts cannot hold every slot while others wait. Each request streams its tokens back on its
//! own channel; when a caller goes away (client disconnect, stop string matched, sampler
//! cancelled) its channel closes and the request is dropped — from the queue before it ever
//! runs, or from the engine, freeing its cache slot — before the next step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::prelude::Backend;
use models::generate::{GenerationOutput, GenerationRequest};
use models::lm::CausalLm;
use models::{Engine, EngineConfig, ModelError};
use tokio::sync::mpsc;

use crate::scheduler::{group_cap, FairQueue};

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
        group: u64,
        request: GenerationRequest,
        events: mpsc::UnboundedSender<EngineEvent>,
    },
    /// Several requests queued together (see [`EngineHandle::submit_all`]).
    SubmitAll(Vec<(u64, GenerationRequest, mpsc::UnboundedSender<EngineEvent>)>),
    /// Load new weights (see [`EngineHandle::reload`]).
    Reload {
        path: PathBuf,
        reply: tokio::sync::oneshot::Sender<Result<(), ModelError>>,
    },
}

/// Live counters of the engine thread, for metrics and for tests that check a cancelled
/// request really stopped using the engine.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Forward steps run (each decodes every running sequence and prefills admitted ones).
    pub steps: AtomicU64,
    /// Tokens generated, over all requests.
    pub tokens: AtomicU64,
    /// Generations dropped because their caller went away (queued or running).
    pub cancelled: AtomicU64,
    /// Generations holding a cache slot now.
    pub running: AtomicUsize,
    /// Generations waiting for a slot now.
    pub queued: AtomicUsize,
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
    stats: Arc<EngineStats>,
    next_group: Arc<AtomicU64>,
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
        let stats = Arc::new(EngineStats::default());
        let worker_stats = stats.clone();
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
                Worker::new(engine, worker_stats, reload).run(rx);
            })
            .map_err(|e| ModelError::InvalidInput(format!("cannot start engine thread: {e}")))?;
        let info = ready_rx.recv().map_err(|_| {
            ModelError::InvalidInput("engine thread exited during start-up".into())
        })??;
        let handle = EngineHandle {
            tx,
            info,
            stats,
            next_group: Arc::new(AtomicU64::new(1)),
        };
        Ok((handle, thread))
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

    /// Live counters of the engine thread.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// A fresh scheduling group: generations submitted under one group (the choices of one
    /// HTTP request) share a turn in the round-robin admission, see [`crate::scheduler`].
    pub fn new_group(&self) -> u64 {
        self.next_group.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a request as its own group; tokens arrive on the returned channel. Dropping the
    /// receiver cancels it, queued or running.
    pub fn submit(
        &self,
        request: GenerationRequest,
    ) -> Result<mpsc::UnboundedReceiver<EngineEvent>, EngineFailure> {
        self.submit_in(self.new_group(), request)
    }

    /// Queues a request in `group` (see [`EngineHandle::new_group`]).
    pub fn submit_in(
        &self,
        group: u64,
        request: GenerationRequest,
    ) -> Result<mpsc::UnboundedReceiver<EngineEvent>, EngineFailure> {
        let (events, rx) = mpsc::unbounded_channel();
        self.tx
            .send(Command::Submit {
                group,
                request,
                events,
            })
            .map_err(|_| EngineFailure::Stopped)?;
        Ok(rx)
    }

    /// Queues `requests` in one command, each as its own group, in order. The engine thread
    /// receives them together, so on an idle engine which sequences share each forward pass —
    /// and with it every logit's bits — does not depend on timing: the same requests give the
    /// same tokens on every run (one by one, each [`EngineHandle::submit`] may or may not join
    /// a step already under way). [`crate::drive`] submits the native backend's requests this
    /// way. Receivers are in request order.
    pub fn submit_all(
        &self,
        requests: Vec<GenerationRequest>,
    ) -> Result<Vec<mpsc::UnboundedReceiver<EngineEvent>>, EngineFailure> {
        let mut items = Vec::with_capacity(requests.len());
        let mut receivers = Vec::with_capacity(requests.len());
        for request in requests {
            let (events, rx) = mpsc::unbounded_channel();
            items.push((self.new_group(), request, events));
            receivers.push(rx);
        }
        self.tx
            .send(Command::SubmitAll(items))
            .map_err(|_| EngineFailure::Stopped)?;
        Ok(receivers)
    }
}

/// A generation waiting in the fair queue.
struct Pending {
    request: GenerationRequest,
    events: mpsc::UnboundedSender<EngineEvent>,
}

/// A generation admitted into the engine.
struct Route {
    group: u64,
    events: mpsc::UnboundedSender<EngineEvent>,
}

/// The engine thread's state: the engine, who receives each admitted generation's events,
/// and the generations waiting for a slot.
struct Worker<B: Backend, M: CausalLm<B>> {
    engine: Engine<B, M>,
    routes: HashMap<u64, Route>,
    queue: FairQueue<Pending>,
    group_cap: usize,
    stats: Arc<EngineStats>,
    /// Builds the next weights for [`EngineHandle::reload`] (`None`: reloads refused).
    reloader: Option<Reloader<M>>,
    /// A reload waiting for the running generations to drain.
    pending: Option<PendingReload>,
}

type PendingReload = (PathBuf, tokio::sync::oneshot::Sender<Result<(), ModelError>>);

impl<B: Backend, M: CausalLm<B>> Worker<B, M> {
    fn new(engine: Engine<B, M>, stats: Arc<EngineStats>, reloader: Option<Reloader<M>>) -> Self {
        let group_cap = group_cap(engine.config().max_batch);
        Worker {
            engine,
            routes: HashMap::new(),
            queue: FairQueue::default(),
            group_cap,
            stats,
            reloader,
            pending: None,
        }
    }

    fn idle(&self) -> bool {
        !self.engine.has_work() && self.queue.is_empty()
    }

    fn run(mut self, rx: std_mpsc::Receiver<Command>) {
        let mut open = true;
        loop {
            if self.pending.is_some() && !self.engine.has_work() {
                // The running generations have drained: swap (queued ones then run on the
                // new weights).
                let (path, reply) = self.pending.take().expect("checked");
                let _ = reply.send(swap_weights(&mut self.engine, self.reloader.as_ref(), &path));
            }
            if self.idle() {
                if !open {
                    return;
                }
                // Idle: block until a request arrives (or every handle is dropped).
                match rx.recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => return,
                }
            }
            // Everything that arrived meanwhile joins this step.
            while open {
                match rx.try_recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            self.drop_cancelled();
            if self.pending.is_none() {
                self.admit();
            }
            self.publish();
            if self.engine.has_work() {
                self.step();
                self.publish();
            }
        }
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Submit {
                group,
                request,
                events,
            } => self.queue.push(group, Pending { request, events }),
            Command::SubmitAll(items) => {
                for (group, request, events) in items {
                    self.queue.push(group, Pending { request, events });
                }
            }
            Command::Reload { path, reply } => {
                if let Some((_, earlier)) = self.pending.replace((path, reply)) {
                    let _ = earlier.send(Err(ModelError::InvalidInput("superseded by a later reload".into())));
                }
            }
        }
    }

    /// Callers that went away (client disconnect, stop string matched) free their slots and
    /// leave the queue before the next forward pass.
    fn drop_cancelled(&mut self) {
        let gone: Vec<u64> = self
            .routes
            .iter()
            .filter(|(_, r)| r.events.is_closed())
            .map(|(id, _)| *id)
            .collect();
        let mut cancelled = gone.len();
        for id in gone {
            self.engine.cancel(id);
            self.finish_route(id);
        }
        let before = self.queue.len();
        self.queue.retain(|p| !p.events.is_closed());
        cancelled += before - self.queue.len();
        if cancelled > 0 {
            self.stats
                .cancelled
                .fetch_add(cancelled as u64, Ordering::Relaxed);
        }
    }

    /// Fills the engine's free slots from the queue, one group's turn at a time.
    fn admit(&mut self) {
        let max_batch = self.engine.config().max_batch;
        while self.engine.num_running() + self.engine.num_waiting() < max_batch {
            let Some((group, p)) = self.queue.pop(self.group_cap) else {
                break;
            };
            match self.engine.add_request(p.request) {
                Ok(id) => {
                    self.routes.insert(
                        id,
                        Route {
                            group,
                            events: p.events,
                        },
                    );
                }
                Err(e) => {
                    self.queue.done(group);
                    let _ = p
                        .events
                        .send(EngineEvent::Failed(EngineFailure::Rejected(Arc::new(e))));
                }
            }
        }
    }

    fn finish_route(&mut self, id: u64) -> Option<Route> {
        let route = self.routes.remove(&id)?;
        self.queue.done(route.group);
        if self.routes.is_empty() {
            // A burst of requests must not keep its bookkeeping memory for the process' life.
            self.routes.shrink_to(64);
        }
        Some(route)
    }

    fn step(&mut self) {
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        match self.engine.step() {
            Ok(events) => {
                for ev in events {
                    self.stats
                        .tokens
                        .fetch_add(ev.new_tokens.len() as u64, Ordering::Relaxed);
                    let Some(route) = self.routes.get(&ev.id) else {
                        continue;
                    };
                    if !ev.new_tokens.is_empty() {
                        let _ = route.events.send(EngineEvent::Logprobs(ev.new_logprobs, ev.new_top));
                        let _ = route.events.send(EngineEvent::Tokens(ev.new_tokens));
                    }
                    if let Some(out) = ev.finished {
                        let _ = route.events.send(EngineEvent::Finished(out));
                        self.finish_route(ev.id);
                    }
                }
            }
            Err(e) => {
                // A failed step leaves the batch in an unknown state: fail everything in it.
                tracing::error!(error = %e, "engine step failed");
                let e = Arc::new(e);
                let ids: Vec<u64> = self.routes.keys().copied().collect();
                for id in ids {
                    self.engine.cancel(id);
                    if let Some(route) = self.finish_route(id) {
                        let failure = EngineFailure::Step(e.clone());
                        let _ = route.events.send(EngineEvent::Failed(failure));
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let s = &self.stats;
        s.running
            .store(self.engine.num_running(), Ordering::Relaxed);
        s.queued.store(
            self.queue.len() + self.engine.num_waiting(),
            Ordering::Relaxed,
        );
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
