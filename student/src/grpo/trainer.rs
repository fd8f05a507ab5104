//! The GRPO run: setup, the rollout stage (one batch per `num_iterations` optimizer steps,
//! old/reference logprobs filled in), the shared policy step with the GRPO objective,
//! metrics, checkpoints with the batch being reused, final model.
//!
//! Data-parallel (`train.devices`, see [`crate::distributed`]): every peer holds the same
//! rollout batch, so advantages are computed over whole groups everywhere; peer r computes
//! the micro-batches m with m mod N = r, and the gradients and loss sums are all-reduced
//! before the update. Only the leader writes files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::DType;
use models::Model;

use super::advantage::advantages;
use super::batch::{fill_logprobs, grpo_batches, Aggregation, LogprobField};
use super::config::{GrpoConfig, RolloutSource};
use super::dynamic::DynamicCounts;
use super::heldout::{eval_due, HeldOut};
use super::metrics::{token_means, BatchStats, GrpoStepMetrics};
use super::native::NativeSampler;
use super::openai::OpenAiSampler;
use super::rollout::{batches_of, read_rollouts, RolloutBatch};
use crate::checkpoint::TrainerState;
use crate::distributed::{Peer, Shard};
use crate::error::{Result, StudentError};
use crate::fused_ce::LmProjection;
use crate::manifest;
use crate::metrics::MetricsWriter;
use crate::objective::grpo::{GrpoLossSpec, GrpoObjective};
use crate::schedule::LrSchedule;
use crate::trainer::policy::Policy;
use crate::trainer::save::Saver;
use crate::trainer::setup::{self, Resume};
use crate::trainer::progress::StepProgress;
use crate::trainer::{save_checkpoint, shard_policy, share_updated, sync_accumulated, RunOptions};

/// The GRPO objective's loss-sum parts (summed over the peers with the total).
const SUM_PARTS: [&str; 5] = ["tokens", "kl", "entropy", "clip_low", "clip_high"];

/// File holding the rollout batch in a checkpoint (`rollouts-<batch index>.jsonl`).
const ROLLOUTS_PREFIX: &str = "rollouts-";

/// What a finished GRPO run reports.
#[derive(Debug, Clone)]
pub struct GrpoSummary {
    /// Optimizer steps completed.
    pub steps: u64,
    /// Loss of the last step.
    pub last_loss: Option<f64>,
    /// Mean reward of the last step's batch.
    pub last_reward: Option<f64>,
    /// `<output.dir>/final`.
    pub final_dir: PathBuf,
    /// The checkpoint the run resumed from.
    pub resumed_from: Option<PathBuf>,
    /// Whether a reference model was loaded (only for β > 0 without recorded ref logprobs).
    pub reference_loaded: bool,
    /// Whether the fused logprob projection was used.
    pub fused: bool,
    /// Held-out pass@1 of the last evaluation (`train.eval_every`), if any ran.
    pub last_eval_pass1: Option<f64>,
}

/// Where rollout batches come from.
enum Source {
    File(Vec<RolloutBatch>),
    Native(Box<NativeSampler>),
    OpenAi(Box<OpenAiSampler>),
}

impl Source {
    fn batches_per_epoch(&self) -> u64 {
        match self {
            Source::File(b) => b.len() as u64,
            Source::Native(s) => s.batches_per_epoch(),
            Source::OpenAi(s) => s.batches_per_epoch(),
        }
    }
}

/// Directory under `output.dir` where the policy is saved for the rollout server to reload.
pub const ROLLOUT_POLICY_DIR: &str = "rollout-policy";

/// Everything one run holds besides the policy.
struct Run<'a, AB: AutodiffBackend> {
    cfg: &'a GrpoConfig,
    device: &'a AB::Device,
    source: Source,
    reference: Option<Model<AB::InnerBackend>>,
    objective: GrpoObjective,
    schedule: LrSchedule,
    pad_id: u32,
    peer: &'a Peer,
    /// This peer's ZeRO-1 share, when the optimizer is sharded.
    shard: Option<Shard>,
    heldout: Option<HeldOut>,
}

/// Trains with GRPO as `cfg` says, on one device. Generic over the autodiff backend.
/// Several devices: [`crate::distributed::train_grpo_data_parallel`].
pub fn train_grpo<AB: AutodiffBackend>(cfg: &GrpoConfig, device: &AB::Device, opts: &RunOptions) -> Result<GrpoSummary> {
    if cfg.train.devices.len() > 1 {
        return Err(StudentError::Config {
            path: "train.devices".into(),
            msg: "several devices need one peer each: run through distributed::train_grpo_data_parallel (the CLI does)".into(),
        });
    }
    train_grpo_peer::<AB>(cfg, device, opts, &Peer::solo())
}

/// [`train_grpo`] as one data-parallel peer (`Peer::solo()` = single device).
pub(crate) fn train_grpo_peer<AB: AutodiffBackend>(cfg: &GrpoConfig, device: &AB::Device, opts: &RunOptions, peer: &Peer) -> Result<GrpoSummary> {
    let out = cfg.output.dir.clone();
    if peer.is_leader() {
        crate::trainer::outdir::prepare(&out, opts)?;
    }
    let resolved = toml::to_string_pretty(cfg).map_err(|e| StudentError::Config {
        path: "grpo config".into(),
        msg: e.to_string(),
    })?;
    let config_sha = manifest::sha256_str(&resolved);

    let tok_dir = cfg.tokenizer_dir().map(Path::to_path_buf);
    let start = setup::initial_model::<AB>(&cfg.model, cfg.train.seed, device)?;
    let resume = Resume::find(&out, opts, &resolved, &config_sha)?;
    let compute_dtype = setup::compute_dtype(cfg.train.dtype, opts.bf16_supported);
    let mut policy = setup::build_policy(start.model, None, &cfg.optim, &resume, cfg.train.seed, compute_dtype, device)?;
    let source = rollout_source(cfg, tok_dir.as_deref(), &start.generation)?;
    let heldout = heldout_set(cfg, tok_dir.as_deref(), &start.generation)?;
    let reference = load_reference::<AB::InnerBackend>(cfg, &source, device, compute_dtype)?;
    let total_steps = match cfg.train.max_steps {
        0 => source.batches_per_epoch() * cfg.grpo.num_iterations as u64,
        n => n,
    };
    let fused = if cfg.grpo.fused { LmProjection::probe(&policy.view()) } else { None };
    let shard = shard_policy(cfg.train.shard_optimizer, &mut policy, peer);
    let run = Run::<AB> {
        cfg,
        device,
        source,
        reference,
        objective: GrpoObjective::new(loss_spec(cfg), cfg.grpo.loss_chunk, fused.clone()),
        schedule: LrSchedule::new(&cfg.schedule, cfg.optim.lr, total_steps),
        pad_id: pad_id(&start.generation, &start.config),
        peer,
        shard,
        heldout,
    };
    if peer.is_leader() {
        crate::fsutil::write_atomic(&out.join("train_config.toml"), resolved.as_bytes())?;
    }
    let saver = Saver {
        out: &out,
        model_config: &start.config,
        generation: &start.generation,
        tok_dir: tok_dir.as_deref(),
        max_shard_bytes: cfg.output.max_shard_bytes,
        base_name: cfg.model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        resolved_config: &resolved,
    };
    let mut tstate = resume.trainer_state(total_steps, cfg.train.seed, &config_sha);
    let mut metrics = if peer.is_leader() { Some(MetricsWriter::open(&out, tstate.step)?) } else { None };
    let mut current = resume.dir().and_then(saved_batch);
    tracing::info!(total_steps, start_step = tstate.step, source = ?cfg.source(), "grpo training");
    let mut bar = StepProgress::new(opts.progress, peer.is_leader(), total_steps, tstate.step);
    let (mut last_loss, mut last_reward, mut last_eval_pass1) = (None, None, None);
    while tstate.step < total_steps {
        let index = tstate.step / cfg.grpo.num_iterations as u64;
        let (t_gen, t_score, dynamic) = run.ensure_batch(&policy, index, &mut current)?;
        let batch = &current.as_ref().expect("just ensured").1;
        let m;
        (policy, m) = run.step(policy, batch, &mut tstate, index)?;
        let (eval_pass1, eval_s) = run.heldout_eval(&policy, tstate.step, total_steps)?;
        let mut m = GrpoStepMetrics {
            generate_s: t_gen,
            score_s: t_score,
            dropped_groups: dynamic.dropped as u64,
            resampled_groups: dynamic.resampled as u64,
            eval_pass1,
            eval_s,
            ..m
        };
        if let Source::OpenAi(server) = &run.source {
            // Keep the server on-policy: the next rollouts come from these weights.
            let t = Instant::now();
            let dir = saver.export(&policy, ROLLOUT_POLICY_DIR)?;
            server.reload(&dir)?;
            m.generate_s += t.elapsed().as_secs_f64();
        }
        if let Some(w) = metrics.as_mut() {
            w.write(&m)?;
        }
        (last_loss, last_reward) = (Some(m.loss), Some(m.reward_mean));
        last_eval_pass1 = eval_pass1.or(last_eval_pass1);
        let eval = last_eval_pass1.map(|p| format!(", held-out pass@1 {p:.3}")).unwrap_or_default();
        bar.step(m.step, || format!("loss {:.4}, reward {:.3}, lr {:.2e}{eval}", m.loss, m.reward_mean, m.lr));
        if cfg.output.save_every > 0 && tstate.step % cfg.output.save_every == 0 && tstate.step < total_steps {
            let keep = |dir: &Path| batch.save(&dir.join(format!("{ROLLOUTS_PREFIX}{index}.jsonl")));
            save_checkpoint(&saver, &mut policy, &tstate, cfg.output.keep_last, (peer, run.shard.as_ref()), device, keep)?;
        }
    }
    bar.finish();
    let final_dir = if peer.is_leader() { saver.final_model(&policy, &tstate, cfg.output.save_dtype)? } else { out.join("final") };
    Ok(GrpoSummary {
        steps: tstate.step,
        last_loss,
        last_reward,
        final_dir,
        resumed_from: resume.from.map(|r| r.1),
        reference_loaded: run.reference.is_some(),
        fused: fused.is_some(),
        last_eval_pass1,
    })
}

impl<AB: AutodiffBackend> Run<'_, AB> {
    /// Makes `current` hold rollout batch `index`: kept when it already does (reuse over
    /// `num_iterations`, or restored from a checkpoint), else read or sampled, then old and
    /// reference logprobs filled in. Returns (seconds sampling, seconds scoring, what dynamic
    /// sampling did).
    fn ensure_batch(&self, policy: &Policy<AB>, index: u64, current: &mut Option<(u64, RolloutBatch)>) -> Result<(f64, f64, DynamicCounts)> {
        if current.as_ref().is_some_and(|c| c.0 == index) {
            return Ok((0.0, 0.0, DynamicCounts::default()));
        }
        let g = &self.cfg.grpo;
        let t0 = Instant::now();
        let view = policy.view().valid();
        let (mut batch, dynamic) = match &self.source {
            Source::File(b) => (b[(index % b.len() as u64) as usize].clone(), DynamicCounts::default()),
            Source::Native(s) => s.sample(&view, index, self.cfg)?,
            Source::OpenAi(s) => (s.sample(index, self.cfg)?, DynamicCounts::default()),
        };
        let t_gen = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (chunk, budget) = (g.loss_chunk, g.micro_batch_tokens);
        // On-policy (one optimizer step per batch, nothing recorded): the old logprobs equal the
        // current ones, so the loss takes them detached instead of spending a forward pass.
        let on_policy = g.num_iterations == 1 && batch.rollouts.iter().all(|r| r.old_logprobs.is_none());
        if !on_policy {
            fill_logprobs(&mut batch, &view, LogprobField::Old, g.temperature, chunk, budget, self.pad_id);
        }
        if let Some(r) = &self.reference {
            fill_logprobs(&mut batch, r, LogprobField::Reference, g.temperature, chunk, budget, self.pad_id);
        }
        let t_score = if on_policy && self.reference.is_none() { 0.0 } else { t1.elapsed().as_secs_f64() };
        *current = Some((index, batch));
        Ok((t_gen, t_score, dynamic))
    }

    /// Held-out pass@1 of the policy after `step` when due: (pass@1, seconds).
    fn heldout_eval(&self, policy: &Policy<AB>, step: u64, total: u64) -> Result<(Option<f64>, f64)> {
        match &self.heldout {
            Some(h) if eval_due(step, self.cfg.train.eval_every, total) => {
                let t0 = Instant::now();
                let p = h.evaluate(&policy.view().valid(), self.cfg)?;
                tracing::info!(step, pass_at_1 = p, problems = h.len(), "held-out evaluation");
                Ok((Some(p), t0.elapsed().as_secs_f64()))
            }
            _ => Ok((None, 0.0)),
        }
    }

    /// One optimizer step on `batch`: advantages, per-token weights, micro-batches, the shared
    /// policy update; the trainer state advanced.
    fn step(&self, policy: Policy<AB>, batch: &RolloutBatch, tstate: &mut TrainerState, index: u64) -> Result<(Policy<AB>, GrpoStepMetrics)> {
        let (cfg, g) = (self.cfg, &self.cfg.grpo);
        let step = tstate.step + 1;
        let t0 = Instant::now();
        let (adv, zero_std_share) = advantages(&batch.rewards(), &batch.groups, g.scale_rewards);
        let agg = Aggregation {
            loss_type: g.loss_type,
            max_completion_length: g.max_completion_length,
            mask_truncated: g.mask_truncated_completions,
        };
        let mbs = grpo_batches(batch, &adv, &agg, g.micro_batch_tokens, self.pad_id);
        let lr = self.schedule.lr(step);
        let peer = self.peer;
        let mine = mbs.iter().enumerate().filter(|(m, _)| peer.computes(*m)).map(|(_, mb)| mb);
        let mut acc = policy.accumulate(&self.objective, mine, 0, self.device);
        if !peer.is_solo() {
            sync_accumulated(peer, step, &policy, &mut acc, &SUM_PARTS, self.device)?;
        }
        let loss = acc.sums.total;
        let (mut policy, grad_norm) = policy.update(&mut acc.grads, loss, step, lr, cfg.optim.max_grad_norm)?;
        if let Some(s) = &self.shard {
            policy = share_updated(policy, s, peer, self.device)?;
        }
        let (kl, entropy, clip_low, clip_high, loss_tokens) = token_means(&acc.sums);
        let stats = BatchStats::of(batch);
        tstate.step = step;
        tstate.rows_consumed = (index + 1) * batch.num_groups() as u64;
        tstate.epoch = index / self.source.batches_per_epoch().max(1);
        tstate.loss_tokens_seen += loss_tokens;
        tstate.input_tokens_seen += mbs.iter().map(|m| m.mb.real_tokens as u64).sum::<u64>();
        tstate.last_lr = lr;
        let m = GrpoStepMetrics {
            step,
            loss,
            grad_norm,
            lr,
            reward_mean: stats.reward.0,
            reward_std: stats.reward.1,
            accuracy: stats.accuracy,
            format_reward: stats.format_reward,
            zero_std_share,
            clip_low,
            clip_high,
            clip_region: clip_low + clip_high,
            kl,
            entropy,
            completion_length_mean: stats.lengths.0,
            completion_length_max: stats.lengths.1,
            truncated_share: stats.lengths.2,
            loss_tokens,
            iteration: tstate.step.saturating_sub(1) % g.num_iterations as u64,
            generate_s: 0.0,
            score_s: 0.0,
            train_s: t0.elapsed().as_secs_f64(),
            eval_pass1: None,
            eval_s: 0.0,
            dropped_groups: 0,
            resampled_groups: 0,
            groups: batch.num_groups() as u64,
        };
        Ok((policy, m))
    }
}

/// The clipping / KL knobs of `cfg`.
fn loss_spec(cfg: &GrpoConfig) -> GrpoLossSpec {
    GrpoLossSpec {
        temperature: cfg.grpo.temperature,
        epsilon_low: cfg.grpo.epsilon_low,
        epsilon_high: cfg.grpo.epsilon_high,
        beta: cfg.grpo.beta,
    }
}

/// Padding id: generation config, model config, first EOS, else 0.
fn pad_id(generation: &models::GenerationConfig, config: &models::ModelConfig) -> u32 {
    generation
        .pad_token_id
        .or(config.pad_token_id)
        .or(generation.eos_token_ids.first().copied())
        .unwrap_or(0)
}

/// Reads the rollouts file into batches, or prepares native sampling (tokenizer, problems).
fn rollout_source(cfg: &GrpoConfig, tok_dir: Option<&Path>, generation: &models::GenerationConfig) -> Result<Source> {
    match cfg.source() {
        RolloutSource::File => {
            let path = cfg.rollouts.file.as_ref().expect("validated");
            Ok(Source::File(batches_of(read_rollouts(path)?, cfg.rollouts.groups_per_step)))
        }
        RolloutSource::Native | RolloutSource::Openai => {
            let tokenizer = setup::load_tokenizer(tok_dir)?
                .ok_or_else(|| StudentError::Data("sampled rollouts need a tokenizer (model.tokenizer or model.path with tokenizer.json)".into()))?;
            let stop = stop_ids(generation, &tokenizer);
            let sampler = NativeSampler::new(cfg, tokenizer, stop)?;
            if cfg.source() == RolloutSource::Openai {
                return Ok(Source::OpenAi(Box::new(OpenAiSampler::new(cfg, sampler)?)));
            }
            Ok(Source::Native(Box::new(sampler)))
        }
    }
}

/// The stop ids of native sampling: the generation config's EOS ids, then the tokenizer's.
fn stop_ids(generation: &models::GenerationConfig, tokenizer: &datasets::TextTokenizer) -> Vec<u32> {
    let mut stop = generation.eos_token_ids.clone();
    stop.extend(tokenizer.eos_token_ids().iter().copied().filter(|id| !generation.eos_token_ids.contains(id)));
    stop
}

/// The held-out evaluation set, when `train.eval_every` > 0.
fn heldout_set(cfg: &GrpoConfig, tok_dir: Option<&Path>, generation: &models::GenerationConfig) -> Result<Option<HeldOut>> {
    if cfg.train.eval_every == 0 {
        return Ok(None);
    }
    let tokenizer = setup::load_tokenizer(tok_dir)?
        .ok_or_else(|| StudentError::Data("held-out evaluation needs a tokenizer (model.tokenizer or model.path with tokenizer.json)".into()))?;
    let stop = stop_ids(generation, &tokenizer);
    HeldOut::new(cfg, tokenizer, stop)
}

/// The reference model, loaded only when β > 0 and some rollouts lack `ref_logprobs` (native
/// sampling never records them). β = 0 never loads one.
fn load_reference<B: Backend>(cfg: &GrpoConfig, source: &Source, device: &B::Device, dtype: Option<DType>) -> Result<Option<Model<B>>> {
    let needed = cfg.grpo.beta > 0.0
        && match source {
            Source::File(batches) => batches.iter().any(|b| b.rollouts.iter().any(|r| r.ref_logprobs.is_none())),
            Source::Native(_) | Source::OpenAi(_) => true,
        };
    if !needed {
        return Ok(None);
    }
    let dir = cfg.grpo.reference.as_ref().or(cfg.model.path.as_ref()).ok_or_else(|| StudentError::Config {
        path: "[grpo]".into(),
        msg: "grpo.beta > 0 needs grpo.reference (or model.path) for reference logprobs".into(),
    })?;
    let loaded = models::load_model::<B>(dir, device, dtype.unwrap_or(DType::F32))
        .map_err(|e| StudentError::model(format!("loading the reference model {}", dir.display()), e))?;
    tracing::info!(dir = %dir.display(), "reference model loaded for the KL term");
    Ok(Some(loaded.model))
}

/// The rollout batch a checkpoint kept (`rollouts-<index>.jsonl`), if any.
fn saved_batch(dir: &Path) -> Option<(u64, RolloutBatch)> {
    let rd = std::fs::read_dir(dir).ok()?;
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(index) = name.strip_prefix(ROLLOUTS_PREFIX).and_then(|s| s.strip_suffix(".jsonl")).and_then(|s| s.parse().ok()) else {
            continue;
        };
        match read_rollouts(&entry.path()) {
            Ok(r) => return Some((index, RolloutBatch::from_rollouts(r))),
            Err(e) => tracing::warn!(error = %e.chain(), "ignoring the checkpoint's rollouts"),
        }
    }
    None
}
