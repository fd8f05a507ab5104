//! One data-parallel peer's view of its group: rank, world size, and collective calls that
//! give up when another peer has failed (burn-collective's calls block until every peer
//! takes part, so a dead peer would otherwise hang the others forever).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{CollectiveConfig, CollectiveError, PeerId, ReduceOperation};

use crate::error::{Result, StudentError};

/// How often a peer blocked in a collective call checks whether the group was aborted.
const POLL: Duration = Duration::from_millis(20);

/// A failure injected on purpose (fault-tolerance tests): peer `rank` fails at the start of
/// the gradient synchronisation of optimizer step `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInjection {
    /// The peer that fails.
    pub rank: usize,
    /// The optimizer step (1-based) at which it fails.
    pub step: u64,
    /// Panic instead of returning an error.
    pub panic: bool,
}

/// State shared by the peers of one group in this process.
struct GroupState {
    /// Set when any peer failed: everyone else stops at its next collective call.
    abort: AtomicBool,
    /// The first failure: `(rank, message)`.
    failure: Mutex<Option<(usize, String)>>,
    /// Longest wait in one collective call before the group is declared dead.
    timeout: Duration,
    fault: Option<FaultInjection>,
    /// What every local peer registers with (local device count; global level when multi-node).
    config: CollectiveConfig,
}

/// A data-parallel peer. [`Peer::solo`] is the single-device trainer: every collective is
/// the identity and it is the leader.
#[derive(Clone)]
pub struct Peer {
    rank: usize,
    world: usize,
    group: Option<Arc<GroupState>>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Peer({}/{})", self.rank, self.world)
    }
}

impl Peer {
    /// The only peer of a single-device run.
    pub fn solo() -> Self {
        Self { rank: 0, world: 1, group: None }
    }

    /// The `local` peers this process runs of a group of `world`, ranks `first_rank..`, sharing
    /// an abort flag; `config` says how they register with burn-collective.
    pub(crate) fn group(
        local: usize,
        first_rank: usize,
        world: usize,
        timeout: Duration,
        fault: Option<FaultInjection>,
        config: CollectiveConfig,
    ) -> Vec<Peer> {
        let state = Arc::new(GroupState { abort: AtomicBool::new(false), failure: Mutex::new(None), timeout, fault, config });
        (first_rank..first_rank + local).map(|rank| Peer { rank, world, group: Some(state.clone()) }).collect()
    }

    /// This peer's index, 0..world.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of peers.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The single-device trainer (no group: every collective is the identity). A group of
    /// one (`DistributedOptions::force_collective`) still goes through burn-collective.
    pub fn is_solo(&self) -> bool {
        self.group.is_none()
    }

    /// Peer 0 writes metrics, checkpoints and the final model; the others only compute.
    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Whether this peer computes micro-batch `m` of a step (round-robin: m mod world).
    pub fn computes(&self, micro_batch: usize) -> bool {
        micro_batch % self.world == self.rank
    }

    /// Records that this peer failed and makes the others stop at their next collective
    /// call. Only the first failure of a group is kept as its cause.
    pub(crate) fn fail(&self, msg: String) {
        if let Some(g) = &self.group {
            let mut first = g.failure.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = Some((self.rank, msg));
            }
            g.abort.store(true, Ordering::SeqCst);
        }
    }

    /// The first failure recorded in the group.
    pub(crate) fn first_failure(&self) -> Option<(usize, String)> {
        let g = self.group.as_ref()?;
        let f = g.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.clone()
    }

    /// Fails (error or panic) when a test injected a fault for this peer at `step`.
    pub(crate) fn injected_fault(&self, step: u64) -> Result<()> {
        let Some(f) = self.group.as_ref().and_then(|g| g.fault) else {
            return Ok(());
        };
        if f.rank == self.rank && f.step == step {
            if f.panic {
                panic!("injected panic on peer {} at step {step}", self.rank);
            }
            return Err(StudentError::Collective {
                op: "fault injection",
                rank: self.rank,
                msg: format!("injected failure at step {step}"),
            });
        }
        Ok(())
    }

    /// Joins the process-local collective group (blocks until all peers joined).
    pub(crate) fn register<B: Backend>(&self, device: &B::Device) -> Result<()> {
        let (id, device) = (PeerId(self.rank as u32), device.clone());
        let config = self.group.as_ref().expect("register on a solo peer").config.clone();
        self.wait("register", move || burn_collective::register::<B>(id, device, config))
    }

    /// Leaves the collective group at the end of a successful run.
    pub(crate) fn finish<B: Backend>(&self) -> Result<()> {
        let id = PeerId(self.rank as u32);
        self.wait("finish", move || burn_collective::finish_collective::<B>(id))
    }

    /// Element-wise sum of `t` over all peers (identity for a solo peer).
    pub(crate) fn all_reduce_sum<B: Backend>(&self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        if self.is_solo() {
            return Ok(t);
        }
        let id = PeerId(self.rank as u32);
        let p = t.into_primitive().tensor();
        let out = self.wait("all_reduce", move || burn_collective::all_reduce::<B>(id, p, ReduceOperation::Sum))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }

    /// Runs a blocking collective call on a helper thread and waits for it, giving up when
    /// another peer failed or after the group's timeout. A call given up on is left blocked
    /// on its helper thread; the launcher resets the collective server afterwards.
    fn wait<T, F>(&self, op: &'static str, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::result::Result<T, CollectiveError> + Send + 'static,
    {
        let group = self.group.as_ref().expect("collective call on a solo peer");
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("collective-{op}-{}", self.rank))
            .spawn(move || {
                let _ = tx.send(call());
            })
            .map_err(|e| self.error(op, format!("cannot start the collective thread: {e}")))?;
        let t0 = Instant::now();
        loop {
            match rx.recv_timeout(POLL) {
                Ok(r) => return r.map_err(|e| self.error(op, format!("{e:?}"))),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.error(op, "the collective thread ended without a result".into()))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if group.abort.load(Ordering::SeqCst) {
                let cause = self.first_failure().map_or("unknown".into(), |(r, m)| format!("peer {r}: {m}"));
                return Err(self.error(op, format!("abandoned because another peer failed ({cause})")));
            }
            if t0.elapsed() > group.timeout {
                let msg = format!("no answer from the other peers within {:?}", group.timeout);
                self.fail(msg.clone());
                return Err(self.error(op, msg));
            }
        }
    }

    fn error(&self, op: &'static str, msg: String) -> StudentError {
        StudentError::Collective { op, rank: self.rank, msg }
    }
}
