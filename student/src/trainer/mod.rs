//! The SFT / logit-distillation trainer, assembled from parts: [`setup`] (tokenizer, starting
//! model, resume point, trainable policy), [`sft_data`] (rows and per-step micro-batches), an
//! [`Objective`](crate::objective::Objective) (cross-entropy or KD) that turns a micro-batch's
//! hidden states into a loss, the shared optimizer step of [`policy`], held-out [`eval`],
//! [`records`] and [`save`] (checkpoints, final model). GRPO ([`crate::grpo`]) reuses all of
//! them with its own objective and rollout stage.

pub mod eval;
pub mod outdir;
pub mod policy;
pub(crate) mod progress;
pub mod records;
pub mod save;
pub mod setup;
pub mod sft_data;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use crate::batch::{MicroBatch, RowStream};
use crate::checkpoint::TrainerState;
use crate::checkpointed::CheckpointOptions;
use crate::config::TrainConfig;
use crate::data::{load_rows, DataStats};
use crate::error::{Result, StudentError};
use crate::fused_ce::LmProjection;
use crate::manifest;
use crate::metrics::{EvalMetrics, MetricsWriter, StepMetrics};
use crate::objective::kd::KdObjective;
use crate::objective::sft::SftObjective;
use crate::objective::{LossSums, Objective};
use crate::distributed::{sync_step, Peer, Shard};
use crate::schedule::LrSchedule;
use policy::Policy;
use progress::StepProgress;
use save::Saver;
use setup::Resume;
use sft_data::SftData;

/// How to run (what is not part of the reproducible config).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest `checkpoint-<step>/` in `output.dir` (fresh start when none).
    /// Without it (or `overwrite`), a directory that already holds a run is refused.
    pub resume: bool,
    /// Delete the run already in `output.dir` (its metrics, records, checkpoints and `final/`;
    /// nothing else) and start over. Excludes `resume`.
    pub overwrite: bool,
    /// Resume even when the config differs from the checkpoint's (beyond
    /// [`outdir::RESUME_EXEMPT_KEYS`]); a warning instead of an error.
    pub allow_config_change: bool,
    /// Draw a progress bar on stderr (when it is a terminal; otherwise, or without it, the
    /// leader logs a progress line every `datasets::progress::ProgressEvery`).
    pub progress: bool,
    /// Whether the backend computes bf16 natively; when false, `dtype = "bf16"` falls back to
    /// f32 with a warning (CPU).
    pub bf16_supported: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Optimizer steps completed.
    pub steps: u64,
    /// Loss of the last step.
    pub last_loss: Option<f64>,
    /// Held-out loss at the end, when held-out data is configured.
    pub eval_loss: Option<f64>,
    /// `<output.dir>/final`.
    pub final_dir: PathBuf,
    /// The checkpoint the run resumed from.
    pub resumed_from: Option<PathBuf>,
    /// Whether the fused cross-entropy (hand-written projection gradient) was used.
    pub fused_ce: bool,
    /// Optimizer-state elements (per moment) each data-parallel peer held at the end, by
    /// rank: the whole trainable size everywhere, or about 1/N each with ZeRO-1.
    pub optimizer_state: Vec<usize>,
}

/// An SFT-family objective over packed/padded micro-batches.
type SftObjectiveBox<AB> = Box<dyn Objective<AB, Batch = MicroBatch>>;

/// Trains as `cfg` says. Generic over the autodiff backend; the caller picks the device.
/// Several devices: [`crate::distributed::train_data_parallel`].
pub fn train<AB: AutodiffBackend>(cfg: &TrainConfig, device: &AB::Device, opts: &RunOptions) -> Result<TrainSummary> {
    if cfg.train.devices.len() > 1 || cfg.train.nodes > 1 {
        return Err(StudentError::Config {
            path: "train.devices".into(),
            msg: format!(
                "{} devices × {} nodes need one peer each: run through distributed::train_data_parallel (the CLI does)",
                cfg.train.devices.len().max(1),
                cfg.train.nodes
            ),
        });
    }
    train_peer::<AB>(cfg, device, opts, &Peer::solo())
}

/// [`train`] as one data-parallel peer (`Peer::solo()` = single device). See
/// [`crate::distributed`]: a step has `grad_accum × world` micro-batches and this peer
/// computes those with index mod world = rank; losses are divided by the step's global
/// loss-token count (every peer gathers all rows of the step); gradients and loss sums are
/// all-reduced before the clip; only the leader writes files.
pub(crate) fn train_peer<AB: AutodiffBackend>(cfg: &TrainConfig, device: &AB::Device, opts: &RunOptions, peer: &Peer) -> Result<TrainSummary> {
    let out = cfg.output.dir.clone();
    if peer.is_leader() {
        outdir::prepare(&out, opts)?;
    }
    let resolved = manifest::resolved_toml(cfg)?;
    let config_sha = manifest::sha256_str(&resolved);

    let tok_dir = cfg.tokenizer_dir().map(Path::to_path_buf);
    let tokenizer = setup::load_tokenizer(tok_dir.as_deref())?;
    let start = setup::initial_model::<AB>(&cfg.model, cfg.train.seed, device)?;
    let resume = Resume::find(&out, opts, &resolved, &config_sha)?;
    let mut generation = start.generation;
    let data = SftData::load(cfg, tokenizer.as_ref(), &start.config, &mut generation)?;
    let total_steps = data.total_steps(cfg, peer.world());
    let compute_dtype = setup::compute_dtype(cfg.train.dtype, opts.bf16_supported);
    let mut policy = setup::build_policy(start.model, cfg.lora.as_ref(), &cfg.optim, &resume, cfg.train.seed, compute_dtype, device)?;
    if !cfg.train.master_weights {
        if compute_dtype.is_none() {
            return Err(StudentError::Config {
                path: "train.master_weights".into(),
                msg: "false needs bf16 compute, which this backend lacks".into(),
            });
        }
        policy.model = crate::optim_lean::to_bf16_params(policy.model);
    }
    policy.checkpointing = cfg.train.gradient_checkpointing.then(|| CheckpointOptions {
        every: cfg.train.checkpoint_every,
        ..Default::default()
    });
    let (objective, fused) = sft_objective(cfg, &policy, tok_dir.as_deref(), device)?;
    let shard = shard_policy(cfg.train.shard_optimizer, &mut policy, peer);
    if peer.is_leader() {
        records::write_sft_records(cfg, &resolved, &config_sha, &data, total_steps, &resume)?;
    }
    let saver = Saver {
        out: &out,
        model_config: &start.config,
        generation: &generation,
        tok_dir: tok_dir.as_deref(),
        max_shard_bytes: cfg.output.max_shard_bytes,
        base_name: base_name(cfg),
        resolved_config: &resolved,
    };

    let mut tstate = resume.trainer_state(total_steps, cfg.train.seed, &config_sha);
    let mut steps = SftLoop {
        cfg,
        device,
        data: &data,
        objective: objective.as_ref(),
        schedule: LrSchedule::new(&cfg.schedule, cfg.optim.lr, total_steps),
        saver: &saver,
        metrics: if peer.is_leader() { Some(MetricsWriter::open(&out, tstate.step)?) } else { None },
        total_steps,
        peer,
        shard: shard.as_ref(),
    };
    let (policy, last_loss, last_eval) = steps.run(policy, &mut tstate, opts.progress)?;
    let optimizer_state = vec![policy.opt.state_elements()];
    let final_dir = if peer.is_leader() {
        saver.final_model(&policy, &tstate, cfg.output.save_dtype)?
    } else {
        out.join("final")
    };
    Ok(TrainSummary {
        steps: tstate.step,
        last_loss,
        eval_loss: last_eval,
        final_dir,
        resumed_from: resume.from.map(|r| r.1),
        fused_ce: fused,
        optimizer_state,
    })
}

/// ZeRO-1 (`train.shard_optimizer`, data-parallel runs only): restricts the optimizer to this
/// peer's share of the trainable parameters.
pub(crate) fn shard_policy<AB: AutodiffBackend>(enabled: bool, policy: &mut Policy<AB>, peer: &Peer) -> Option<Shard> {
    if !enabled || peer.is_solo() {
        return None;
    }
    Some(match &policy.lora {
        Some(l) => Shard::apply::<AB, _, _>(&l.adapters, peer, &mut policy.opt),
        None => Shard::apply::<AB, _, _>(&policy.model, peer, &mut policy.opt),
    })
}

/// Writes `checkpoint-<step>/` from the leader. Under ZeRO-1 every peer must call it: the
/// optimizer moments are gathered to the leader first, so the checkpoint holds the full state.
pub(crate) fn save_checkpoint<AB: AutodiffBackend>(
    saver: &Saver<'_>,
    policy: &mut Policy<AB>,
    tstate: &TrainerState,
    keep_last: usize,
    dp: (&Peer, Option<&Shard>),
    device: &AB::Device,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let (peer, shard) = dp;
    let full = match shard {
        Some(s) => s.gather_optimizer(peer, &policy.opt, device)?,
        None => None,
    };
    if !peer.is_leader() {
        return Ok(());
    }
    let own = full.map(|f| std::mem::replace(&mut policy.opt, f));
    let written = saver.checkpoint(policy, tstate, keep_last, extra);
    if let Some(o) = own {
        policy.opt = o;
    }
    written
}

/// The parts the SFT step loop runs with.
struct SftLoop<'a, AB: AutodiffBackend> {
    cfg: &'a TrainConfig,
    device: &'a AB::Device,
    data: &'a SftData,
    objective: &'a dyn Objective<AB, Batch = MicroBatch>,
    schedule: LrSchedule,
    saver: &'a Saver<'a>,
    /// `None` on data-parallel peers other than the leader (one writer per run).
    metrics: Option<MetricsWriter>,
    total_steps: u64,
    peer: &'a Peer,
    /// This peer's ZeRO-1 share, when the optimizer is sharded.
    shard: Option<&'a Shard>,
}

impl<AB: AutodiffBackend> SftLoop<'_, AB> {
    /// Steps from `tstate` to the end of the run (held-out loss and checkpoints when due),
    /// then the final held-out loss. Returns the trained policy, the last loss and the last
    /// held-out loss.
    fn run(&mut self, mut policy: Policy<AB>, tstate: &mut TrainerState, progress: bool) -> Result<(Policy<AB>, Option<f64>, Option<f64>)> {
        let (cfg, data) = (self.cfg, self.data);
        let mut stream = RowStream::new(data.rows.len(), cfg.train.shuffle, cfg.train.seed, tstate.rows_consumed);
        tracing::info!(
            rows = data.rows.len(),
            tokens = data.train_stats.tokens,
            label_tokens = data.train_stats.label_tokens,
            total_steps = self.total_steps,
            start_step = tstate.step,
            "training"
        );
        let mut bar = StepProgress::new(progress, self.peer.is_leader(), self.total_steps, tstate.step);
        let (mut last_loss, mut last_eval) = (None, None);
        while tstate.step < self.total_steps {
            let Some((mbs, epoch)) = data.next_step(cfg, self.peer.world(), &mut stream, tstate.epoch) else {
                break;
            };
            let m;
            (policy, m) = sft_step(policy, self.objective, &mbs, &self.schedule, tstate, epoch, cfg, self.device, (self.peer, self.shard))?;
            tstate.rows_consumed = stream.consumed();
            if let Some(w) = self.metrics.as_mut() {
                w.write(&m)?;
            }
            last_loss = Some(m.loss);
            bar.step(m.step, || format!("loss {:.4}, lr {:.2e}, {:.0} tok/s", m.loss, m.lr, m.tokens_per_s));
            let (step, mid_run) = (tstate.step, tstate.step < self.total_steps && self.peer.is_leader());
            if !data.eval_rows.is_empty() && cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0 && mid_run {
                last_eval = Some(self.eval(&policy, step)?);
            }
            if cfg.output.save_every > 0 && step % cfg.output.save_every == 0 && step < self.total_steps {
                let dp = (self.peer, self.shard);
                save_checkpoint(self.saver, &mut policy, tstate, cfg.output.keep_last, dp, self.device, |_| Ok(()))?;
            }
        }
        bar.finish();
        if !data.eval_rows.is_empty() && self.peer.is_leader() {
            last_eval = Some(self.eval(&policy, tstate.step)?);
        }
        Ok((policy, last_loss, last_eval))
    }

    /// Runs the held-out evaluation, writes its metrics line and returns the loss.
    fn eval(&mut self, policy: &Policy<AB>, step: u64) -> Result<f64> {
        let (eval_loss, eval_tokens) = eval::eval_loss(policy, &self.data.eval_rows, self.data.pad_id, &self.cfg.train, self.device);
        if let Some(w) = self.metrics.as_mut() {
            w.write(&EvalMetrics { step, eval_loss, eval_tokens })?;
        }
        Ok(eval_loss)
    }
}

/// The objective `cfg` asks for: KD with `[distill]`; otherwise cross-entropy, fused (hand-
/// written projection gradient, bounded logits memory) when `train.fused_ce` and the model's
/// logits are a plain projection. Also says whether the fused path is used.
fn sft_objective<AB: AutodiffBackend>(cfg: &TrainConfig, policy: &Policy<AB>, tok_dir: Option<&Path>, device: &AB::Device) -> Result<(SftObjectiveBox<AB>, bool)> {
    let fused = if cfg.train.fused_ce { LmProjection::probe(&policy.view()) } else { None };
    if let Some(d) = &cfg.distill {
        let kd = KdObjective::<AB::InnerBackend>::load(d, tok_dir, device, policy.compute_dtype, cfg.train.loss_chunk)?
            .with_fused_head(fused, policy.lora.is_none());
        let is_fused = kd.is_fused();
        return Ok((Box::new(kd), is_fused));
    }
    if fused.is_none() && cfg.train.fused_ce {
        tracing::warn!("model.logits is not a plain projection; using autodiff cross-entropy (more memory)");
    }
    let sft = SftObjective::new(cfg.train.loss_chunk, fused, policy.lora.is_none());
    let is_fused = sft.is_fused();
    Ok((Box::new(sft), is_fused))
}

/// One optimizer step over `mbs`: the step's mean loss over all its loss tokens, AdamW at the
/// scheduled LR, the trainer state advanced. Returns the updated policy and the step's metrics.
#[allow(clippy::too_many_arguments)]
fn sft_step<AB: AutodiffBackend>(
    mut policy: Policy<AB>,
    objective: &dyn Objective<AB, Batch = MicroBatch>,
    mbs: &[MicroBatch],
    schedule: &LrSchedule,
    tstate: &mut TrainerState,
    epoch: u64,
    cfg: &TrainConfig,
    device: &AB::Device,
    dp: (&Peer, Option<&Shard>),
) -> Result<(Policy<AB>, StepMetrics)> {
    let (peer, shard) = dp;
    let step = tstate.step + 1;
    let t0 = Instant::now();
    let loss_tokens: usize = mbs.iter().map(|m| m.targets.num_loss_tokens()).sum();
    let input_tokens: usize = mbs.iter().map(|m| m.real_tokens).sum();
    let lr = schedule.lr(step);
    let kd = cfg.distill.is_some();
    let mut all_reduce_s = None;
    let (grad_norm, loss, sums) = if loss_tokens == 0 {
        tracing::warn!(step, "no loss tokens in this step; parameters left unchanged");
        (0.0, f64::NAN, Default::default())
    } else {
        let mine = mbs.iter().enumerate().filter(|(m, _)| peer.computes(*m)).map(|(_, mb)| mb);
        let mut acc = policy.accumulate(objective, mine, loss_tokens, device);
        if !peer.is_solo() {
            let t_sync = Instant::now();
            let parts: &[&'static str] = if kd { &["ce", "kd"] } else { &[] };
            sync_accumulated(peer, step, &policy, &mut acc, parts, device)?;
            all_reduce_s = Some(t_sync.elapsed().as_secs_f64());
        }
        let loss = acc.sums.total / loss_tokens as f64;
        let t_opt = Instant::now();
        let grad_norm;
        (policy, grad_norm) = policy.update(&mut acc.grads, loss, step, lr, cfg.optim.max_grad_norm)?;
        if let Some(s) = shard {
            let t_share = Instant::now();
            policy = share_updated(policy, s, peer, device)?;
            *all_reduce_s.get_or_insert(0.0) += t_share.elapsed().as_secs_f64();
        }
        tracing::debug!(
            step,
            forward_s = acc.forward_s,
            backward_s = acc.backward_s,
            optimizer_s = t_opt.elapsed().as_secs_f64(),
            "step timing"
        );
        (grad_norm, loss, acc.sums)
    };
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    tstate.step = step;
    tstate.epoch = epoch;
    tstate.loss_tokens_seen += loss_tokens as u64;
    tstate.input_tokens_seen += input_tokens as u64;
    tstate.last_lr = lr;
    let per_token = |name: &str| kd.then(|| sums.part(name) / loss_tokens.max(1) as f64);
    let m = StepMetrics {
        step,
        loss,
        grad_norm,
        lr,
        tokens: input_tokens as u64,
        loss_tokens: loss_tokens as u64,
        tokens_per_s: input_tokens as f64 / secs,
        epoch,
        ce_loss: per_token("ce"),
        kd_loss: per_token("kd"),
        all_reduce_s,
    };
    Ok((policy, m))
}

/// Sums this step's gradients and loss sums (the total and the named `parts`) over the
/// data-parallel peers, in place: afterwards every peer holds what one device accumulating
/// all the step's micro-batches holds.
pub(crate) fn sync_accumulated<AB: AutodiffBackend>(
    peer: &Peer,
    step: u64,
    policy: &Policy<AB>,
    acc: &mut policy::Accumulated,
    parts: &[&'static str],
    device: &AB::Device,
) -> Result<()> {
    let mut host: Vec<f64> = std::iter::once(acc.sums.total).chain(parts.iter().map(|p| acc.sums.part(p))).collect();
    match &policy.lora {
        Some(l) => sync_step::<AB, _>(peer, step, &l.adapters, &mut acc.grads, &mut host, device)?,
        None => sync_step::<AB, _>(peer, step, &policy.model, &mut acc.grads, &mut host, device)?,
    }
    let mut sums = LossSums { total: host[0], ..Default::default() };
    for (p, v) in parts.iter().zip(&host[1..]) {
        sums.add_part(p, *v);
    }
    acc.sums = sums;
    Ok(())
}

/// ZeRO-1: every peer receives the parameters the others just updated.
pub(crate) fn share_updated<AB: AutodiffBackend>(mut policy: Policy<AB>, shard: &Shard, peer: &Peer, device: &AB::Device) -> Result<Policy<AB>> {
    match policy.lora.take() {
        Some(mut l) => {
            l.adapters = shard.share_params::<AB, _>(peer, l.adapters, device)?;
            policy.lora = Some(l);
        }
        None => policy.model = shard.share_params::<AB, _>(peer, policy.model, device)?,
    }
    Ok(policy)
}

fn base_name(cfg: &TrainConfig) -> String {
    cfg.model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

/// Reads the per-step metrics of a finished run (for tests and reports).
pub fn read_metrics(output_dir: &Path) -> Result<Vec<StepMetrics>> {
    MetricsWriter::read_steps(&output_dir.join("metrics.jsonl"))
}

/// Statistics of the data a config would train on, without training (dry runs, reports).
pub fn inspect_data(cfg: &TrainConfig) -> Result<DataStats> {
    let tokenizer = setup::load_tokenizer(cfg.tokenizer_dir())?;
    load_rows(&cfg.data.train, &cfg.data, tokenizer.as_ref(), cfg.train.seed, cfg.train.shuffle, 0).map(|r| r.1)
}

