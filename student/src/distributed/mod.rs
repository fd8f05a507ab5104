//! Data-parallel training on burn-collective: one peer (thread) per device in this process,
//! each with its own copy of the model (identical init from the same seed or checkpoint).
//!
//! Every peer reads the same row stream and gathers all N·`grad_accum` micro-batches of a
//! step, so the step's loss-token count is known everywhere without communication; peer r
//! computes micro-batches m with m mod N = r, dividing its losses by the step's global
//! loss-token count. The accumulated gradients (and the host-side loss sums) are then summed
//! over the peers with burn-collective's all-reduce, so every peer holds the single-device
//! gradient, clips with the same global norm and takes the same AdamW step. N peers ×
//! `grad_accum` G × `batch_size` b therefore equal one device with `grad_accum` N·G. Only
//! peer 0 writes metrics, checkpoints and `final/`.
//!
//! A peer that fails (error or panic) flags the group; the others give up their pending
//! collective call within milliseconds and the run returns the failing peer's error.
//!
//! With `train.shard_optimizer` the AdamW states are split over the peers ([`zero`]); with
//! `train.nodes` > 1 the peers of several processes/machines form one group through
//! burn-collective's global orchestrator ([`nodes`]).

mod nodes;
mod peers;
mod sync;
mod zero;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

use burn::tensor::backend::AutodiffBackend;
use burn_collective::CollectiveConfig;

pub use peers::{FaultInjection, Peer};
pub use nodes::{validate_nodes, NodeSetup};
pub use sync::sync_step;
pub use zero::{balanced_owners, Layout, Shard};

use crate::config::TrainConfig;
use crate::error::{Result, StudentError};
use crate::trainer::{train_peer, RunOptions, TrainSummary};

/// One process runs one peer group at a time (burn-collective keeps one local server per
/// backend type), so concurrent launches in the same process (tests) wait for each other.
static LAUNCH: Mutex<()> = Mutex::new(());

/// A device named in `train.devices` / `--devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU backend (may be listed several times: several CPU peers).
    Cpu,
    /// CUDA device with this index.
    Cuda(usize),
}

/// Parses `["cpu", "cpu"]` or `["cuda:0", "cuda:1"]`. All entries must name the same kind
/// (one process runs one backend); a CUDA device may be listed once.
pub fn parse_devices(list: &[String]) -> std::result::Result<Vec<DeviceSpec>, String> {
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let d = match s.trim() {
            "cpu" => DeviceSpec::Cpu,
            "cuda" => DeviceSpec::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(idx)) => DeviceSpec::Cuda(idx),
                _ => return Err(format!("entry {i} {s:?} is not \"cpu\", \"cuda\" or \"cuda:<index>\"")),
            },
        };
        if matches!(d, DeviceSpec::Cuda(_)) && out.contains(&d) {
            return Err(format!("entry {i} {s:?} lists the same GPU twice"));
        }
        if let Some(first) = out.first() {
            if std::mem::discriminant(first) != std::mem::discriminant(&d) {
                return Err(format!("entry {i} {s:?} mixes CPU and CUDA peers; use one kind"));
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// Knobs of a data-parallel launch that are not part of the training config.
#[derive(Debug, Clone)]
pub struct DistributedOptions {
    /// Longest wait in one collective call before the group is declared dead (covers peer 0
    /// evaluating or writing a checkpoint while the others wait). Default 30 minutes.
    pub timeout: Duration,
    /// Make one peer fail on purpose (fault-tolerance tests). Default none.
    pub fault: Option<FaultInjection>,
    /// Run even a single device as a group of one through burn-collective (measures the
    /// collective's own overhead). Default false.
    pub force_collective: bool,
}

impl Default for DistributedOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30 * 60), fault: None, force_collective: false }
    }
}

/// Trains with one peer per device (see the module docs); one device on one node is the plain
/// trainer. Returns this process's first peer's summary (with every local peer's
/// optimizer-state size), or the error of the first peer that failed.
pub fn train_data_parallel<AB: AutodiffBackend>(
    cfg: &TrainConfig,
    devices: &[AB::Device],
    opts: &RunOptions,
    dist: &DistributedOptions,
) -> Result<TrainSummary> {
    let nodes = NodeSetup::from_train(&cfg.train).map_err(|msg| StudentError::Config { path: "[train]".into(), msg })?;
    match devices {
        [] => Err(StudentError::Config { path: "train.devices".into(), msg: "no device to train on".into() }),
        [device] if nodes.is_none() && !dist.force_collective => train_peer::<AB>(cfg, device, opts, &Peer::solo()),
        _ => {
            let mut all = run_group::<AB, _>(devices, opts, dist, nodes.as_ref(), |device, o, peer| train_peer::<AB>(cfg, device, o, peer))?;
            let states = all.iter().flat_map(|s| s.optimizer_state.clone()).collect();
            let mut first = all.swap_remove(0);
            first.optimizer_state = states;
            Ok(first)
        }
    }
}

/// GRPO with one peer per device (`train.devices`), as [`train_data_parallel`] for SFT; one
/// device is the plain GRPO trainer. Single node only.
pub fn train_grpo_data_parallel<AB: AutodiffBackend>(
    cfg: &crate::grpo::GrpoConfig,
    devices: &[AB::Device],
    opts: &RunOptions,
    dist: &DistributedOptions,
) -> Result<crate::grpo::GrpoSummary> {
    match devices {
        [] => Err(StudentError::Config { path: "train.devices".into(), msg: "no device to train on".into() }),
        [device] if !dist.force_collective => crate::grpo::trainer::train_grpo_peer::<AB>(cfg, device, opts, &Peer::solo()),
        _ => {
            let run = |device: &AB::Device, o: &RunOptions, peer: &Peer| crate::grpo::trainer::train_grpo_peer::<AB>(cfg, device, o, peer);
            Ok(run_group::<AB, _>(devices, opts, dist, None, run)?.swap_remove(0))
        }
    }
}

/// Runs `train` once per local device, each as one peer of a group (this process's devices,
/// or all nodes' with `nodes`), and returns every local peer's result in rank order, or the
/// error of the first peer that failed. One group per process at a time.
pub(crate) fn run_group<AB, S>(
    devices: &[AB::Device],
    opts: &RunOptions,
    dist: &DistributedOptions,
    nodes: Option<&NodeSetup>,
    train: impl Fn(&AB::Device, &RunOptions, &Peer) -> Result<S> + Sync,
) -> Result<Vec<S>>
where
    AB: AutodiffBackend,
    S: Send,
{
    let _one_group = LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
    let local = devices.len();
    let config = CollectiveConfig::default().with_num_devices(local);
    let (config, first, world) = match nodes {
        Some(n) => (n.collective(config), n.node_rank * local, n.nodes * local),
        None => (config, 0, local),
    };
    let peers = Peer::group(local, first, world, dist.timeout, dist.fault, config);
    tracing::info!(local, world, first_rank = first, "data-parallel training");
    let train = &train;
    let mut results: Vec<Result<S>> = std::thread::scope(|s| {
        let handles: Vec<_> = peers
            .iter()
            .zip(devices)
            .map(|(peer, device)| {
                let mut o = opts.clone();
                o.progress &= peer.is_leader();
                let spawned = std::thread::Builder::new()
                    .name(format!("peer-{}", peer.rank()))
                    .spawn_scoped(s, move || run_peer::<AB, S>(device, peer, || train(device, &o, peer)));
                if let Err(e) = &spawned {
                    peer.fail(format!("cannot start its thread: {e}"));
                }
                (peer, spawned)
            })
            .collect();
        handles
            .into_iter()
            .map(|(peer, h)| match h {
                Ok(h) => h.join().unwrap_or_else(|p| Err(panicked(peer, p.as_ref()))),
                Err(e) => Err(StudentError::io("<thread>", e)),
            })
            .collect()
    });
    let Some((rank, _)) = peers[0].first_failure() else {
        return results.into_iter().collect();
    };
    burn_collective::reset_collective::<AB::InnerBackend>();
    // A failure on another node arrives here as this node's collective error.
    let source = match results.swap_remove(rank.checked_sub(first).filter(|&i| i < local).unwrap_or(0)) {
        Err(e) => e,
        Ok(_) => StudentError::Collective { op: "train", rank, msg: "timed out waiting for the other peers".into() },
    };
    Err(StudentError::Peer { rank, source: Box::new(source) })
}

/// One peer's whole run: join the group, train, leave. Any failure (panics included) is
/// recorded in the group so that the other peers stop.
fn run_peer<AB: AutodiffBackend, S>(device: &AB::Device, peer: &Peer, train: impl FnOnce() -> Result<S>) -> Result<S> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        peer.register::<AB::InnerBackend>(device)?;
        let summary = train()?;
        // The run is complete here; leaving can fail when another node (the orchestrator's
        // host) already exited, which must not turn a finished run into an error.
        if let Err(e) = peer.finish::<AB::InnerBackend>() {
            tracing::warn!(rank = peer.rank(), "leaving the collective group: {e}");
        }
        Ok(summary)
    }));
    let r = r.unwrap_or_else(|p| Err(panicked(peer, p.as_ref())));
    if let Err(e) = &r {
        let text = e.chain();
        tracing::error!(rank = peer.rank(), "data-parallel peer failed: {text}");
        peer.fail(text);
    }
    r
}

fn panicked(peer: &Peer, payload: &(dyn std::any::Any + Send)) -> StudentError {
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    StudentError::Collective { op: "train", rank: peer.rank(), msg: format!("panicked: {msg}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_cpu_and_cuda_lists() {
        assert_eq!(parse_devices(&list(&["cpu", "cpu"])).unwrap(), vec![DeviceSpec::Cpu; 2]);
        assert_eq!(
            parse_devices(&list(&["cuda:0", "cuda:1"])).unwrap(),
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]
        );
        assert!(parse_devices(&[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_entries_naming_them() {
        assert!(parse_devices(&list(&["cpu", "gpu"])).unwrap_err().contains("entry 1 \"gpu\""));
        assert!(parse_devices(&list(&["cuda:0", "cuda:0"])).unwrap_err().contains("twice"));
        assert!(parse_devices(&list(&["cpu", "cuda:1"])).unwrap_err().contains("mixes"));
        assert!(parse_devices(&list(&["cuda:x"])).is_err());
    }
}
