//! The training loop: micro-batches → chunked loss → backward → accumulated gradients →
//! global-norm clip → AdamW, with metrics, held-out loss, checkpoints and exact resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, ElementConversion, Tensor};
use datasets::TextTokenizer;
use models::{CausalLm, GenerationConfig, Model, ModelConfig, SaveOptions};

use crate::batch::{MicroBatch, RowStream, TrainRow};
use crate::checkpoint::{self, TrainerState, OPTIMIZER_FILE, STATE_FILE, STATE_SCHEMA_VERSION};
use crate::config::{ModelInit, TrainConfig, TrainDtype};
use crate::data::{load_rows, DataStats};
use crate::distributed::{sync_step, Peer};
use crate::error::{Result, StudentError};
use crate::lora::{cast_view, Lora};
use crate::fused_ce::{fused_ce, projection_weight, LmProjection};
use crate::loss::{ce_sum_chunk, kd_sum_chunk, loss_chunks, KdSpec};
use crate::manifest::{self, RunManifest};
use crate::metrics::{EvalMetrics, MetricsWriter, StepMetrics};
use crate::optim::{clip_coefficient, global_grad_norm, AdamW, AdamWParams, GradAccumulator};
use crate::schedule::LrSchedule;

/// How to run (what is not part of the reproducible config).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest `checkpoint-<step>/` in `output.dir` (fresh start when none).
    pub resume: bool,
    /// Draw a progress bar on stderr.
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
}

/// A teacher for logit distillation, run without autodiff.
struct Teacher<B: Backend> {
    model: Model<B>,
}

/// Trains as `cfg` says. Generic over the autodiff backend; the caller picks the device.
/// Several devices: [`crate::distributed::train_data_parallel`].
pub fn train<AB: AutodiffBackend>(cfg: &TrainConfig, device: &AB::Device, opts: &RunOptions) -> Result<TrainSummary> {
    if cfg.train.devices.len() > 1 {
        return Err(StudentError::Config {
            path: "train.devices".into(),
            msg: format!(
                "{} devices need one peer each: run through distributed::train_data_parallel (the CLI does)",
                cfg.train.devices.len()
            ),
        });
    }
    train_peer::<AB>(cfg, device, opts, &Peer::solo())
}

/// [`train`] as one data-parallel peer (`Peer::solo()` = single device). DDP hook, see
/// `crate::distributed`: (a) a step has `grad_accum × world` micro-batches and this peer
/// computes those with index mod world = rank, (b) losses are divided by the step's global
/// loss-token count (every peer gathers all rows of the step), (c) gradients and loss sums
/// are all-reduced before the clip, (d) only the leader writes files.
pub(crate) fn train_peer<AB: AutodiffBackend>(cfg: &TrainConfig, device: &AB::Device, opts: &RunOptions, peer: &Peer) -> Result<TrainSummary> {
    let out = cfg.output.dir.clone();
    std::fs::create_dir_all(&out).map_err(|e| StudentError::io(&out, e))?;
    let resolved = manifest::resolved_toml(cfg)?;
    let config_sha = manifest::sha256_str(&resolved);

    // ---- tokenizer and starting model ----
    let tok_dir = cfg.tokenizer_dir().map(Path::to_path_buf);
    let tokenizer = match &tok_dir {
        Some(d) if d.join("tokenizer.json").is_file() => {
            Some(TextTokenizer::from_dir(d).map_err(|e| StudentError::Data(e.to_string()))?)
        }
        _ => None,
    };
    let (mut model, model_config, mut generation) = initial_model::<AB>(cfg, device)?;

    let resume_from = if opts.resume {
        let latest = checkpoint::latest_checkpoint(&out)?;
        if latest.is_none() {
            tracing::info!(dir = %out.display(), "resume requested but no checkpoint exists yet: starting fresh");
        }
        latest
    } else {
        None
    };
    let state = match &resume_from {
        Some((_, dir)) => Some(checkpoint::read_state(dir)?),
        None => None,
    };
    if let Some(s) = &state {
        if s.config_sha256 != config_sha {
            tracing::warn!("the config differs from the one the checkpoint was trained with");
        }
    }
    if let (Some((_, dir)), None) = (&resume_from, &cfg.lora) {
        let loaded = models::load_model::<AB>(dir, device, DType::F32).map_err(|e| StudentError::Model(e.to_string()))?;
        model = loaded.model;
    }

    // ---- data ----
    let pad_id = generation
        .pad_token_id
        .or(model_config.pad_token_id)
        .or(tokenizer.as_ref().and_then(|t| t.pad_token_id()))
        .or(generation.eos_token_ids.first().copied())
        .unwrap_or(0);
    let (rows, train_stats) = load_rows(
        &cfg.data.train,
        &cfg.data,
        tokenizer.as_ref(),
        cfg.train.seed,
        cfg.train.shuffle,
        pad_id,
    )?;
    let (eval_rows, eval_stats) = match &cfg.data.eval {
        Some(p) => {
            let (r, s) = load_rows(p, &cfg.data, tokenizer.as_ref(), cfg.train.seed, false, pad_id)?;
            (r, Some(s))
        }
        None => (Vec::new(), None),
    };
    if let Some(eos) = train_stats.eos_token_id {
        if !generation.eos_token_ids.contains(&eos) {
            tracing::info!(eos, "adding the assistant end-of-turn token to generation_config eos_token_id");
            generation.eos_token_ids.push(eos);
        }
    }
    // DDP hook (a): the step's micro-batches are spread over the peers.
    let micro_per_step = cfg.train.grad_accum * peer.world();
    let rows_per_step = (cfg.train.batch_size * micro_per_step) as u64;
    let epoch_rows = rows.len() as u64 * cfg.train.epochs;
    let total_steps = if cfg.train.max_steps > 0 {
        cfg.train.max_steps
    } else {
        epoch_rows.div_ceil(rows_per_step)
    };
    let schedule = LrSchedule::new(&cfg.schedule, cfg.optim.lr, total_steps);

    // ---- trainable state ----
    let compute_dtype = match cfg.train.dtype {
        TrainDtype::F32 => None,
        TrainDtype::Bf16 if opts.bf16_supported => Some(DType::BF16),
        TrainDtype::Bf16 => {
            tracing::warn!("train.dtype = \"bf16\" is not supported on this backend; computing in f32");
            None
        }
    };
    let mut lora = match &cfg.lora {
        None => None,
        Some(section) => {
            if section.dropout > 0.0 {
                return Err(StudentError::Config {
                    path: "[lora]".into(),
                    msg: "lora.dropout > 0 is not supported: adapters act in weight space (W + s·B·A), \
                          which has no per-token input to drop; set 0"
                        .into(),
                });
            }
            model = model.no_grad();
            Some(match &resume_from {
                Some((_, dir)) => Lora::<AB>::load_peft(&model, section, dir, device)?,
                None => Lora::<AB>::init(&model, section, cfg.train.seed, device)?,
            })
        }
    };
    let mut opt = AdamW::<AB::InnerBackend>::new(AdamWParams {
        betas: cfg.optim.betas,
        eps: cfg.optim.eps,
        weight_decay: cfg.optim.weight_decay,
        no_decay: cfg.optim.no_decay.clone(),
    });
    if let (Some((_, dir)), Some(s)) = (&resume_from, &state) {
        opt.load(&dir.join(OPTIMIZER_FILE), s.step, device)?;
    }
    let teacher = match &cfg.distill {
        None => None,
        Some(d) => Some(load_teacher::<AB::InnerBackend>(&d.teacher, tok_dir.as_deref(), device, compute_dtype)?),
    };

    // ---- records ----
    // DDP hook (d): only the leader writes files.
    if peer.is_leader() {
        crate::fsutil::write_atomic(&out.join("train_config.toml"), resolved.as_bytes())?;
    }
    let model_files = match (&cfg.model.init, &cfg.model.path) {
        (ModelInit::Pretrained, Some(p)) => manifest::hash_model_dir(p)?,
        _ => Vec::new(),
    };
    let run_manifest = RunManifest {
        schema_version: manifest::MANIFEST_SCHEMA_VERSION,
        state_schema_version: STATE_SCHEMA_VERSION,
        distill_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: manifest::git_rev(),
        seed: cfg.train.seed,
        config_sha256: config_sha.clone(),
        train_files: manifest::hash_data(&cfg.data.train)?,
        eval_files: match &cfg.data.eval {
            Some(p) => manifest::hash_data(p)?,
            None => Vec::new(),
        },
        model_files,
        train_data: train_stats.clone(),
        eval_data: eval_stats,
        total_steps,
        resumed_from: resume_from.as_ref().map(|r| r.1.clone()),
    };
    if peer.is_leader() {
        crate::fsutil::write_json(&out.join("run_manifest.json"), &run_manifest)?;
    }

    let start_step = state.as_ref().map_or(0, |s| s.step);
    let mut metrics = if peer.is_leader() { Some(MetricsWriter::open(&out, start_step)?) } else { None };
    let mut stream = RowStream::new(rows.len(), cfg.train.shuffle, cfg.train.seed, state.as_ref().map_or(0, |s| s.rows_consumed));
    let mut tstate = state.unwrap_or(TrainerState {
        schema_version: STATE_SCHEMA_VERSION,
        step: 0,
        total_steps,
        rows_consumed: 0,
        epoch: 0,
        seed: cfg.train.seed,
        loss_tokens_seen: 0,
        input_tokens_seen: 0,
        last_lr: 0.0,
        config_sha256: config_sha.clone(),
    });
    tstate.total_steps = total_steps;
    tstate.config_sha256 = config_sha;
    tracing::info!(
        rows = rows.len(),
        tokens = train_stats.tokens,
        label_tokens = train_stats.label_tokens,
        total_steps,
        start_step,
        "training"
    );
    let bar = progress_bar(opts.progress, total_steps, start_step);

    let ctx = StepCtx {
        cfg,
        compute_dtype,
        teacher: teacher.as_ref(),
        device,
    };
    // Hand-written output-projection gradient (bounded logits memory) unless distilling.
    let fused = match cfg.distill {
        None if cfg.train.fused_ce => LmProjection::probe(&ctx.view(&model, lora.as_ref())),
        _ => None,
    };
    if fused.is_none() && cfg.distill.is_none() && cfg.train.fused_ce {
        tracing::warn!("model.logits is not a plain projection; using autodiff cross-entropy (more memory)");
    }
    let mut last_loss = None;
    let mut last_eval = None;
    let epoch_limit = if cfg.train.max_steps > 0 { u64::MAX } else { epoch_rows };
    while tstate.step < total_steps {
        // Gather the rows of this optimizer step.
        let mut mbs = Vec::with_capacity(cfg.train.grad_accum);
        let mut epoch = tstate.epoch;
        for _ in 0..micro_per_step {
            let mut idx = Vec::with_capacity(cfg.train.batch_size);
            while idx.len() < cfg.train.batch_size && stream.consumed() < epoch_limit {
                let (i, e) = stream.next_index();
                idx.push(i);
                epoch = e;
            }
            if idx.is_empty() {
                break;
            }
            let refs: Vec<&TrainRow> = idx.iter().map(|&i| &rows[i]).collect();
            mbs.push(MicroBatch::new(&refs, pad_id));
        }
        if mbs.is_empty() {
            break;
        }
        let step = tstate.step + 1;
        let t0 = Instant::now();
        let loss_tokens: usize = mbs.iter().map(|m| m.targets.num_loss_tokens()).sum();
        let input_tokens: usize = mbs.iter().map(|m| m.real_tokens).sum();
        let lr = schedule.lr(step);
        let mut acc = GradAccumulator::new();
        let mut sums = LossSums::default();
        let (mut t_fwd, mut t_bwd) = (0.0, 0.0);
        if loss_tokens > 0 {
            for (m, mb) in mbs.iter().enumerate() {
                if !peer.computes(m) {
                    continue; // DDP hook (a): another peer's micro-batch
                }
                let tf = Instant::now();
                let view = ctx.view(&model, lora.as_ref());
                let (loss, extra) = match &fused {
                    Some(proj) => match ctx.fused_loss(&view, proj, mb, loss_tokens, lora.is_none()) {
                        Some((loss, s, gw)) => {
                            sums.add(&s);
                            (loss, gw.map(|g| (proj.id, g)))
                        }
                        None => continue,
                    },
                    None => match ctx.micro_loss(&view, mb, loss_tokens) {
                        Some((loss, s)) => {
                            sums.add(&s);
                            (loss, None)
                        }
                        None => continue,
                    },
                };
                t_fwd += tf.elapsed().as_secs_f64();
                let tb = Instant::now();
                let grads = loss.backward();
                match &lora {
                    Some(l) => acc.add(&l.adapters, grads),
                    None => acc.add(&model, grads),
                }
                if let Some((id, g)) = extra {
                    acc.add_tensor::<AB::InnerBackend, 2>(id, g);
                }
                t_bwd += tb.elapsed().as_secs_f64();
            }
        }
        let t_opt = Instant::now();
        let mut grads = acc.take();
        // DDP hook (c): sum gradients and loss sums over the peers before the clip.
        let t_sync = Instant::now();
        if loss_tokens > 0 && peer.world() > 1 {
            let mut host = [sums.total, sums.ce, sums.kd];
            match &lora {
                Some(l) => sync_step::<AB, _>(peer, step, &l.adapters, &mut grads, &mut host, device)?,
                None => sync_step::<AB, _>(peer, step, &model, &mut grads, &mut host, device)?,
            }
            sums = LossSums { total: host[0], ce: host[1], kd: host[2] };
        }
        let t_sync = t_sync.elapsed().as_secs_f64();
        let (grad_norm, loss) = if loss_tokens == 0 {
            tracing::warn!(step, "no loss tokens in this step; parameters left unchanged");
            (0.0, f64::NAN)
        } else {
            let grad_norm = match &lora {
                Some(l) => global_grad_norm::<AB, _>(&l.adapters, &grads),
                None => global_grad_norm::<AB, _>(&model, &grads),
            };
            let loss = sums.total / loss_tokens as f64;
            if !loss.is_finite() || !grad_norm.is_finite() {
                return Err(StudentError::Diverged {
                    step,
                    msg: format!("loss {loss}, grad_norm {grad_norm}"),
                });
            }
            let coef = clip_coefficient(grad_norm, cfg.optim.max_grad_norm);
            match &mut lora {
                Some(l) => l.adapters = opt.step::<AB, _>(l.adapters.clone(), &mut grads, lr, coef),
                None => model = opt.step::<AB, _>(model, &mut grads, lr, coef),
            }
            (grad_norm, loss)
        };
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        tracing::debug!(
            step,
            forward_s = t_fwd,
            backward_s = t_bwd,
            optimizer_s = t_opt.elapsed().as_secs_f64() - t_sync,
            all_reduce_s = t_sync,
            total_s = secs,
            "step timing"
        );
        tstate.step = step;
        tstate.rows_consumed = stream.consumed();
        tstate.epoch = epoch;
        tstate.loss_tokens_seen += loss_tokens as u64;
        tstate.input_tokens_seen += input_tokens as u64;
        tstate.last_lr = lr;
        let kd = cfg.distill.is_some();
        if let Some(metrics) = metrics.as_mut() {
            metrics.write(&StepMetrics {
                step,
                loss,
                grad_norm,
                lr,
                tokens: input_tokens as u64,
                loss_tokens: loss_tokens as u64,
                tokens_per_s: input_tokens as f64 / secs,
                epoch,
                ce_loss: kd.then(|| sums.ce / loss_tokens.max(1) as f64),
                kd_loss: kd.then(|| sums.kd / loss_tokens.max(1) as f64),
                all_reduce_s: (peer.world() > 1).then_some(t_sync),
            })?;
        }
        last_loss = Some(loss);
        if let Some(b) = &bar {
            b.set_position(step);
            b.set_message(format!("loss {loss:.4} lr {lr:.2e} {:.0} tok/s", input_tokens as f64 / secs));
        }
        let eval_now = cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0 && step < total_steps;
        if let (Some(metrics), true) = (metrics.as_mut(), eval_now && !eval_rows.is_empty()) {
            let e = ctx.eval_loss(&model, lora.as_ref(), &eval_rows, pad_id);
            metrics.write(&EvalMetrics { step, eval_loss: e.0, eval_tokens: e.1 })?;
            last_eval = Some(e.0);
        }
        if peer.is_leader() && cfg.output.save_every > 0 && step % cfg.output.save_every == 0 && step < total_steps {
            let dir = checkpoint::checkpoint_dir(&out, step);
            save_checkpoint(&dir, &model, lora.as_ref(), &model_config, &generation, &opt, &tstate, cfg, tok_dir.as_deref())?;
            checkpoint::prune_checkpoints(&out, cfg.output.keep_last)?;
        }
    }
    if let Some(b) = &bar {
        b.finish();
    }
    let final_dir = out.join("final");
    let Some(metrics) = metrics.as_mut() else {
        // DDP hook (d): the other peers are done; the leader evaluates and saves.
        return Ok(TrainSummary {
            steps: tstate.step,
            last_loss,
            eval_loss: None,
            final_dir,
            resumed_from: resume_from.map(|r| r.1),
            fused_ce: fused.is_some(),
        });
    };
    if !eval_rows.is_empty() {
        let e = ctx.eval_loss(&model, lora.as_ref(), &eval_rows, pad_id);
        metrics.write(&EvalMetrics { step: tstate.step, eval_loss: e.0, eval_tokens: e.1 })?;
        last_eval = Some(e.0);
    }

    // ---- final model ----
    let save_dtype = match cfg.output.save_dtype {
        Some(TrainDtype::Bf16) => Some(DType::BF16),
        Some(TrainDtype::F32) => None,
        None if model_config.torch_dtype.as_deref() == Some("bfloat16") => Some(DType::BF16),
        None => None,
    };
    let final_model = match &lora {
        Some(l) => crate::lora::merge(model.valid(), &l.host_pairs(), l.scale),
        None => model.valid(),
    };
    models::save_model(
        &final_dir,
        &final_model,
        &model_config,
        &generation,
        &SaveOptions {
            max_shard_bytes: cfg.output.max_shard_bytes,
            dtype: save_dtype,
            overwrite: true,
        },
    )
    .map_err(|e| StudentError::Model(e.to_string()))?;
    if let Some(l) = &lora {
        l.save_peft(&final_dir, &base_name(cfg))?;
    }
    copy_tokenizer(tok_dir.as_deref(), &final_dir)?;
    crate::fsutil::write_json(&final_dir.join(STATE_FILE), &tstate)?;
    Ok(TrainSummary {
        steps: tstate.step,
        last_loss,
        eval_loss: last_eval,
        final_dir,
        resumed_from: resume_from.map(|r| r.1),
        fused_ce: fused.is_some(),
    })
}

fn base_name(cfg: &TrainConfig) -> String {
    cfg.model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

/// The starting model: a checkpoint, or random init from an architecture.
fn initial_model<AB: AutodiffBackend>(cfg: &TrainConfig, device: &AB::Device) -> Result<(Model<AB>, ModelConfig, GenerationConfig)> {
    let merr = |e: models::ModelError| StudentError::Model(e.to_string());
    match cfg.model.init {
        ModelInit::Pretrained => {
            let dir = cfg.model.path.as_ref().expect("validated");
            let loaded = models::load_model::<AB>(dir, device, DType::F32).map_err(merr)?;
            Ok((loaded.model, loaded.config, loaded.generation))
        }
        ModelInit::Random => {
            let config = match (&cfg.model.config, &cfg.model.arch) {
                (Some(p), _) => ModelConfig::from_file(p).map_err(merr)?,
                (None, Some(arch)) => {
                    let raw = serde_json::to_value(arch).map_err(|e| StudentError::Config {
                        path: "[model.arch]".into(),
                        msg: e.to_string(),
                    })?;
                    ModelConfig::from_value(raw, Path::new("[model.arch]")).map_err(merr)?
                }
                (None, None) => unreachable!("validated"),
            };
            let model = models::random_model::<AB>(&config, device, DType::F32, 0.02, cfg.train.seed).map_err(merr)?;
            let generation = GenerationConfig {
                bos_token_id: config.bos_token_id,
                eos_token_ids: config.eos_token_ids.clone(),
                pad_token_id: config.pad_token_id,
                ..Default::default()
            };
            Ok((model, config, generation))
        }
    }
}

fn load_teacher<B: Backend>(dir: &Path, student_tok: Option<&Path>, device: &B::Device, dtype: Option<DType>) -> Result<Teacher<B>> {
    let teacher_tok = TextTokenizer::from_dir(dir).map_err(|e| StudentError::Data(format!("teacher tokenizer: {e}")))?;
    let student_tok = student_tok
        .ok_or_else(|| StudentError::Data("logit distillation needs the student's tokenizer".into()))
        .and_then(|d| TextTokenizer::from_dir(d).map_err(|e| StudentError::Data(e.to_string())))?;
    if teacher_tok.inner().get_vocab(true) != student_tok.inner().get_vocab(true) {
        return Err(StudentError::Data(format!(
            "logit distillation needs teacher and student to share a tokenizer; {} and {} differ",
            dir.display(),
            student_tok.dir().display()
        )));
    }
    let loaded = models::load_model::<B>(dir, device, dtype.unwrap_or(DType::F32)).map_err(|e| StudentError::Model(e.to_string()))?;
    Ok(Teacher { model: loaded.model })
}

/// Host-side sums of one step's losses (over loss tokens, before dividing).
#[derive(Default)]
struct LossSums {
    total: f64,
    ce: f64,
    kd: f64,
}

impl LossSums {
    fn add(&mut self, o: &LossSums) {
        self.total += o.total;
        self.ce += o.ce;
        self.kd += o.kd;
    }
}

struct StepCtx<'a, AB: AutodiffBackend> {
    cfg: &'a TrainConfig,
    compute_dtype: Option<DType>,
    teacher: Option<&'a Teacher<AB::InnerBackend>>,
    device: &'a AB::Device,
}

impl<AB: AutodiffBackend> StepCtx<'_, AB> {
    /// The model the forward runs on: LoRA deltas and the compute-dtype cast applied.
    fn view(&self, model: &Model<AB>, lora: Option<&Lora<AB>>) -> Model<AB> {
        match (lora, self.compute_dtype) {
            (Some(l), dt) => l.apply(model.clone(), dt),
            (None, Some(dt)) => cast_view(model.clone(), dt),
            (None, None) => model.clone(),
        }
    }

    /// The fused-CE surrogate of one micro-batch (see [`crate::fused_ce`]): a scalar whose
    /// gradient w.r.t. the hidden states is that of the step's mean loss, the host-side
    /// sums, and the projection weight's gradient when `weight_grad`. `None` without loss
    /// tokens.
    #[allow(clippy::type_complexity)]
    fn fused_loss(
        &self,
        model: &Model<AB>,
        proj: &LmProjection,
        mb: &MicroBatch,
        step_tokens: usize,
        weight_grad: bool,
    ) -> Option<(Tensor<AB, 1>, LossSums, Option<Tensor<AB::InnerBackend, 2>>)> {
        if mb.targets.num_loss_tokens() == 0 {
            return None;
        }
        let (found, w) = projection_weight(model)?;
        debug_assert_eq!(found.id, proj.id);
        let hidden = model.forward_hidden(mb.to_input::<AB>(self.device));
        let f = fused_ce(hidden.clone().inner(), w.inner(), &mb.targets, self.cfg.train.loss_chunk, step_tokens, weight_grad);
        let surrogate = (hidden * Tensor::<AB, 3>::from_inner(f.grad_hidden)).sum();
        let sums = LossSums {
            total: f.nll_sum,
            ce: f.nll_sum,
            kd: 0.0,
        };
        Some((surrogate, sums, f.grad_weight))
    }

    /// The differentiable loss of one micro-batch, already divided by the step's loss-token
    /// count, and its host-side sums. `None` when the micro-batch has no loss token.
    fn micro_loss(&self, model: &Model<AB>, mb: &MicroBatch, step_tokens: usize) -> Option<(Tensor<AB, 1>, LossSums)> {
        let chunks = loss_chunks(&mb.targets, self.cfg.train.loss_chunk);
        if chunks.is_empty() {
            return None;
        }
        let hidden = model.forward_hidden(mb.to_input::<AB>(self.device));
        let teacher_hidden = self
            .teacher
            .map(|t| t.model.forward_hidden(mb.to_input::<AB::InnerBackend>(self.device)));
        let kd_w = self.cfg.distill.as_ref().map_or(0.0, |d| d.weight);
        let mut total: Option<Tensor<AB, 1>> = None;
        let mut sums = LossSums::default();
        for (a, b) in chunks {
            let logits = model.logits(hidden.clone().narrow(1, a, b - a));
            let ce = ce_sum_chunk(logits.clone(), &mb.targets, a, b);
            let part = match (&self.teacher, &teacher_hidden, &self.cfg.distill) {
                (Some(t), Some(th), Some(d)) => {
                    let tl = t.model.logits(th.clone().narrow(1, a, b - a));
                    let tl = Tensor::<AB, 3>::from_inner(tl);
                    let spec = KdSpec { kind: d.kind, beta: d.beta, temperature: d.temperature };
                    let kd = kd_sum_chunk(logits, tl, &mb.targets, a, b, spec);
                    let (c, k) = (scalar(&ce), scalar(&kd));
                    sums.ce += c;
                    sums.kd += k;
                    sums.total += (1.0 - kd_w) * c + kd_w * k;
                    ce.mul_scalar(1.0 - kd_w) + kd.mul_scalar(kd_w)
                }
                _ => {
                    let c = scalar(&ce);
                    sums.ce += c;
                    sums.total += c;
                    ce
                }
            };
            total = Some(match total {
                Some(t) => t + part,
                None => part,
            });
        }
        let loss = total?.div_scalar(step_tokens as f64);
        Some((loss, sums))
    }

    /// Mean held-out cross-entropy (no autodiff) and its token count.
    fn eval_loss(&self, model: &Model<AB>, lora: Option<&Lora<AB>>, rows: &[TrainRow], pad_id: u32) -> (f64, u64) {
        let view = self.view(model, lora).valid();
        let bs = self.cfg.train.batch_size;
        let (mut sum, mut n) = (0.0, 0u64);
        for (i, chunk) in rows.chunks(bs).enumerate() {
            if self.cfg.train.eval_max_batches > 0 && i >= self.cfg.train.eval_max_batches {
                break;
            }
            let refs: Vec<&TrainRow> = chunk.iter().collect();
            let mb = MicroBatch::new(&refs, pad_id);
            let chunks = loss_chunks(&mb.targets, self.cfg.train.loss_chunk);
            if chunks.is_empty() {
                continue;
            }
            let hidden = view.forward_hidden(mb.to_input::<AB::InnerBackend>(self.device));
            for (a, b) in chunks {
                let logits = view.logits(hidden.clone().narrow(1, a, b - a));
                sum += scalar(&ce_sum_chunk(logits, &mb.targets, a, b));
            }
            n += mb.targets.num_loss_tokens() as u64;
        }
        (if n > 0 { sum / n as f64 } else { f64::NAN }, n)
    }
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

fn progress_bar(enabled: bool, total: u64, start: u64) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps ({eta}) {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(start);
    Some(bar)
}

fn copy_tokenizer(src: Option<&Path>, dst: &Path) -> Result<()> {
    if let Some(src) = src {
        if src.join("tokenizer.json").is_file() || src.join("tokenizer_config.json").is_file() {
            datasets::tokenizer::copy_tokenizer_files(src, dst).map_err(|e| StudentError::Data(e.to_string()))?;
        }
    }
    Ok(())
}

/// Writes `checkpoint-<step>/`: HF weights (f32 master weights, or the PEFT adapters for
/// LoRA runs), tokenizer files, optimizer moments, and the trainer state last (a directory
/// without it is incomplete and ignored by `--resume`).
#[allow(clippy::too_many_arguments)]
fn save_checkpoint<AB: AutodiffBackend>(
    dir: &Path,
    model: &Model<AB>,
    lora: Option<&Lora<AB>>,
    model_config: &ModelConfig,
    generation: &GenerationConfig,
    opt: &AdamW<AB::InnerBackend>,
    state: &TrainerState,
    cfg: &TrainConfig,
    tok_dir: Option<&Path>,
) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| StudentError::io(dir, e))?;
    }
    match lora {
        None => models::save_model(
            dir,
            &model.valid(),
            model_config,
            generation,
            &SaveOptions {
                max_shard_bytes: cfg.output.max_shard_bytes,
                dtype: None,
                overwrite: true,
            },
        )
        .map_err(|e| StudentError::Model(e.to_string()))?,
        Some(l) => {
            std::fs::create_dir_all(dir).map_err(|e| StudentError::io(dir, e))?;
            l.save_peft(dir, &base_name(cfg))?;
        }
    }
    copy_tokenizer(tok_dir, dir)?;
    opt.save(&dir.join(OPTIMIZER_FILE))?;
    crate::fsutil::write_json(&dir.join(STATE_FILE), state)?;
    tracing::info!(dir = %dir.display(), step = state.step, "checkpoint saved");
    Ok(())
}

/// Reads the per-step metrics of a finished run (for tests and reports).
pub fn read_metrics(output_dir: &Path) -> Result<Vec<StepMetrics>> {
    MetricsWriter::read_steps(&output_dir.join("metrics.jsonl"))
}

/// Statistics of the data a config would train on, without training (dry runs, reports).
pub fn inspect_data(cfg: &TrainConfig) -> Result<DataStats> {
    let tokenizer = match cfg.tokenizer_dir() {
        Some(d) if d.join("tokenizer.json").is_file() => {
            Some(TextTokenizer::from_dir(d).map_err(|e| StudentError::Data(e.to_string()))?)
        }
        _ => None,
    };
    load_rows(&cfg.data.train, &cfg.data, tokenizer.as_ref(), cfg.train.seed, cfg.train.shuffle, 0).map(|r| r.1)
}

