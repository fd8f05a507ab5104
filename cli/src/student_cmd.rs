//! `distill student` subcommands: SFT / logit-distillation training, GRPO and LoRA merging.

use std::path::PathBuf;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;

use crate::backend::DeviceKind;
use student::distributed::DeviceSpec;
use crate::with_backend;

/// Arguments of `distill student`.
#[derive(clap::Args, Debug)]
pub struct StudentArgs {
    #[command(subcommand)]
    command: StudentCommand,
}

#[derive(clap::Subcommand, Debug)]
enum StudentCommand {
    /// Train a student (SFT on traces, optionally with logit distillation) from a TOML config.
    Train(TrainArgs),
    /// Reinforcement learning with verifiable rewards (GRPO) from a TOML config: recorded
    /// rollouts (`[rollouts] file`) or completions sampled in-process and graded.
    Grpo(TrainArgs),
    /// Merge a LoRA adapter (PEFT layout) into its base model, writing a plain HF checkpoint.
    Merge(MergeArgs),
    /// Plan a config's peak memory part by part (weights, grads, optimizer states, masters,
    /// activations, loss chunk, workspace), say whether it fits a device and what to change.
    Plan(PlanArgs),
}

/// `distill student plan`.
#[derive(clap::Args, Debug)]
struct PlanArgs {
    /// Training config.
    #[arg(long)]
    config: PathBuf,
    /// Override a config key (as for `train`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Device to plan for: h200, h100-80g, a100-80g, or cpu (this machine's RAM).
    #[arg(long, default_value = "cpu")]
    gpu: String,
    /// Data-parallel devices (tokens per step ×N; with train.shard_optimizer, ZeRO-1 divides
    /// the optimizer states by N).
    #[arg(long, default_value_t = 1)]
    gpus: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// `distill student train` and `distill student grpo`.
#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// Training config (see configs/student/*.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override a config key, e.g. `--set optim.lr=2e-5 --set output.dir=runs/x` (TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from the newest checkpoint in output.dir. Without it (or --overwrite), an
    /// output.dir that already holds a run is refused.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Delete the run already in output.dir (metrics, records, checkpoints, final/; nothing
    /// else) and start over.
    #[arg(long)]
    overwrite: bool,
    /// With --resume: continue even when the config differs from the checkpoint's (keys other
    /// than output.dir, output.save_every, output.keep_last, output.max_shard_bytes).
    #[arg(long, requires = "resume")]
    allow_config_change: bool,
    /// Device to train on.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Data-parallel peers, comma-separated: `cpu,cpu` or `cuda:0,cuda:1` (sets
    /// `train.devices`; replaces --device). N peers × grad_accum G = one device × N·G.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Machines in a multi-node run (sets `train.nodes`); each runs the peers of --devices.
    #[arg(long)]
    nodes: Option<usize>,
    /// This machine's index, 0..nodes (sets `train.node_rank`). Node 0 hosts the orchestrator
    /// and writes metrics, checkpoints and final/.
    #[arg(long)]
    node_rank: Option<usize>,
    /// HOST:PORT of the global orchestrator, the same on every node (sets
    /// `train.orchestrator`); node 0 listens on PORT.
    #[arg(long, value_name = "HOST:PORT")]
    orchestrator: Option<String>,
    /// HOST:PORT the other nodes reach this node's tensor service at (sets
    /// `train.node_address`; default: the address routing to the orchestrator, port = its port
    /// + 1 + node rank).
    #[arg(long, value_name = "HOST:PORT")]
    node_address: Option<String>,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Device whose memory the pre-flight plan checks (h200, h100-80g, a100-80g; default: cpu
    /// for `--device cpu`, no check otherwise).
    #[arg(long)]
    gpu: Option<String>,
    /// Train even when the memory plan says the run does not fit.
    #[arg(long)]
    force: bool,
}

impl TrainArgs {
    /// The command line's --devices / --nodes / --node-rank / --orchestrator / --node-address
    /// over the config's `[train]` keys, validated.
    fn apply_layout(&self, t: &mut student::config::TrainSection) -> anyhow::Result<()> {
        if !self.devices.is_empty() {
            t.devices = self.devices.clone();
        }
        if let Some(n) = self.nodes {
            t.nodes = n;
        }
        if let Some(r) = self.node_rank {
            t.node_rank = r;
        }
        if let Some(o) = &self.orchestrator {
            t.orchestrator = Some(o.clone());
        }
        if let Some(a) = &self.node_address {
            t.node_address = Some(a.clone());
        }
        student::distributed::validate_nodes(t).map_err(|e| anyhow::anyhow!("--nodes/--node-rank/--orchestrator: {e}"))
    }

    fn run_options(&self) -> student::RunOptions {
        student::RunOptions {
            resume: self.resume,
            overwrite: self.overwrite,
            allow_config_change: self.allow_config_change,
            progress: !self.no_progress,
            bf16_supported: self.device != DeviceKind::Cpu,
        }
    }
}

/// `distill student merge`.
#[derive(clap::Args, Debug)]
struct MergeArgs {
    /// Base HF checkpoint the adapter was trained on.
    #[arg(long)]
    base: PathBuf,
    /// Directory with adapter_config.json + adapter_model.safetensors (a run's final/ or checkpoint).
    #[arg(long)]
    adapter: PathBuf,
    /// Output directory for the merged checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Weight dtype of the output (default: the base's torch_dtype).
    #[arg(long, value_parser = ["f32", "bf16", "f16"])]
    dtype: Option<String>,
    /// Device to merge on.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs one `distill student` subcommand.
pub fn run(args: StudentArgs) -> anyhow::Result<()> {
    match args.command {
        StudentCommand::Train(a) => {
            let mut cfg = student::TrainConfig::load(&a.config, &a.set)?;
            a.apply_layout(&mut cfg.train)?;
            let mut specs = student::distributed::parse_devices(&cfg.train.devices).map_err(|e| anyhow::anyhow!("--devices / train.devices: {e}"))?;
            if specs.is_empty() && cfg.train.nodes > 1 {
                specs.push(a.device.spec());
            }
            preflight(&cfg, a.device, a.gpu.as_deref(), a.force)?;
            // Other nodes only compute (node 0 writes); they may share node 0's directory.
            let _lock = if cfg.train.node_rank == 0 {
                Some(datasets::lock::OutputLock::acquire(&cfg.output.dir, "distill student train")?)
            } else {
                None
            };
            if cfg.train.nodes > 1 && cfg.train.node_rank == 0 {
                crate::orchestrator::host(cfg.train.orchestrator.as_deref().unwrap_or_default())?;
            }
            let mut opts = a.run_options();
            if let Some(first) = specs.first() {
                opts.bf16_supported = *first != DeviceSpec::Cpu;
            }
            let summary = if specs.is_empty() {
                with_backend!(a.device, train_on(&cfg, &opts))?
            } else {
                train_peers(&cfg, &specs, &opts, &student::DistributedOptions::default())?
            };
            eprintln!(
                "trained {} steps; last loss {}; final model in {}",
                summary.steps,
                summary.last_loss.map_or("n/a".into(), |l| format!("{l:.4}")),
                summary.final_dir.display()
            );
            if let Some(e) = summary.eval_loss {
                eprintln!("held-out loss {e:.4}");
            }
            Ok(())
        }
        StudentCommand::Grpo(a) => {
            let mut cfg = student::GrpoConfig::load(&a.config, &a.set)?;
            if a.nodes.is_some_and(|n| n > 1) {
                anyhow::bail!("--nodes: multi-node runs are for `student train`; GRPO runs on the --devices of one machine");
            }
            if !a.devices.is_empty() {
                cfg.train.devices = a.devices.clone();
            }
            let specs = student::distributed::parse_devices(&cfg.train.devices).map_err(|e| anyhow::anyhow!("--devices / train.devices: {e}"))?;
            let _lock = datasets::lock::OutputLock::acquire(&cfg.output.dir, "distill student grpo")?;
            let mut opts = a.run_options();
            if let Some(first) = specs.first() {
                opts.bf16_supported = *first != DeviceSpec::Cpu;
            }
            let summary = if specs.is_empty() { with_backend!(a.device, grpo_on(&cfg, &opts))? } else { grpo_peers(&cfg, &specs, &opts)? };
            eprintln!(
                "trained {} GRPO steps; last loss {}, last mean reward {}; final model in {}",
                summary.steps,
                summary.last_loss.map_or("n/a".into(), |l| format!("{l:.4}")),
                summary.last_reward.map_or("n/a".into(), |r| format!("{r:.3}")),
                summary.final_dir.display()
            );
            Ok(())
        }
        StudentCommand::Merge(a) => {
            let dtype = match a.dtype.as_deref() {
                Some("f32") => Some(models::DType::F32),
                Some("bf16") => Some(models::DType::BF16),
                Some("f16") => Some(models::DType::F16),
                _ => None,
            };
            let s = with_backend!(a.device, merge_on(&a.base, &a.adapter, &a.out, dtype))?;
            eprintln!("merged {} adapted weights (scale {}) into {}", s.merged, s.scale, a.out.display());
            Ok(())
        }
        StudentCommand::Plan(a) => {
            let cfg = student::TrainConfig::load(&a.config, &a.set)?;
            let target = parse_target(&a.gpu)?;
            let plan = plan_config(&cfg, target, a.gpus)?;
            if a.json {
                println!("{}", student::plan::to_json(&plan));
            } else {
                print!("{}", student::plan::render_table(&plan));
            }
            Ok(())
        }
    }
}

fn parse_target(s: &str) -> anyhow::Result<student::plan_shape::Target> {
    student::plan_shape::Target::parse(s)
        .ok_or_else(|| anyhow::anyhow!("--gpu {s:?}: expected h200, h100-80g, a100-80g or cpu"))
}

fn plan_config(
    cfg: &student::TrainConfig,
    target: student::plan_shape::Target,
    gpus: u64,
) -> anyhow::Result<student::plan::Plan> {
    let shape = student::plan_shape::resolve_shape(cfg).context("memory plan")?;
    let input = student::plan::PlanInput::from_config(cfg, shape, gpus);
    Ok(student::plan::plan(&input, target, target.budget_bytes()?))
}

/// The memory plan `student train` checks before loading anything: a run that cannot fit is
/// refused with the plan's table unless `--force`.
fn preflight(cfg: &student::TrainConfig, device: DeviceKind, gpu: Option<&str>, force: bool) -> anyhow::Result<()> {
    let target = match gpu {
        Some(g) => parse_target(g)?,
        None if device == DeviceKind::Cpu => student::plan_shape::Target::Cpu,
        None => {
            tracing::info!("no --gpu given: skipping the memory plan (distill student plan --gpu ...)");
            return Ok(());
        }
    };
    let plan = match plan_config(cfg, target, 1) {
        Ok(p) => p,
        Err(e) => {
            // Why is for `distill student plan` (or the run itself, which reads the same files)
            // to say: repeating the cause here would print it twice when the run then fails.
            tracing::warn!("no memory plan before training (`distill student plan` shows why)");
            tracing::debug!("memory plan: {}", crate::report::one_line(&e));
            return Ok(());
        }
    };
    if plan.fits {
        tracing::info!(total = %student::plan::gb(plan.total_bytes), budget = %student::plan::gb(plan.budget_bytes), "memory plan fits");
        return Ok(());
    }
    let table = student::plan::render_table(&plan);
    if force {
        tracing::warn!("the memory plan says this run does not fit; training anyway (--force):\n{table}");
        return Ok(());
    }
    anyhow::bail!(
        "this run needs {} but {} has {}; refusing to start (--force to try anyway):\n{table}",
        student::plan::gb(plan.total_bytes),
        target.name(),
        student::plan::gb(plan.budget_bytes)
    )
}

fn train_on<B: Backend>(
    device: B::Device,
    cfg: &student::TrainConfig,
    opts: &student::RunOptions,
) -> anyhow::Result<student::TrainSummary> {
    student::train::<Autodiff<B>>(cfg, &device, opts).context("student train")
}

fn grpo_on<B: Backend>(
    device: B::Device,
    cfg: &student::GrpoConfig,
    opts: &student::RunOptions,
) -> anyhow::Result<student::GrpoSummary> {
    student::train_grpo::<Autodiff<B>>(cfg, &device, opts).context("student grpo")
}

/// Data-parallel training with one peer per entry of `train.devices` (on each node).
pub(crate) fn train_peers(
    cfg: &student::TrainConfig,
    specs: &[DeviceSpec],
    opts: &student::RunOptions,
    dist: &student::DistributedOptions,
) -> anyhow::Result<student::TrainSummary> {
    let summary = match specs[0] {
        DeviceSpec::Cpu => {
            let devices = vec![burn::backend::flex::FlexDevice; specs.len()];
            student::train_data_parallel::<Autodiff<crate::backend::Cpu>>(cfg, &devices, opts, dist)
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(_) => {
            let devices: Vec<_> = specs
                .iter()
                .map(|s| match s {
                    DeviceSpec::Cuda(i) => burn::backend::cuda::CudaDevice::new(*i),
                    DeviceSpec::Cpu => unreachable!("parse_devices rejects mixed lists"),
                })
                .collect();
            student::train_data_parallel::<Autodiff<crate::backend::Gpu>>(cfg, &devices, opts, dist)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => anyhow::bail!("train.devices names CUDA devices but this build has no `cuda` feature"),
    };
    summary.context("student train (data-parallel)")
}

/// Data-parallel GRPO with one peer per entry of `train.devices`.
pub(crate) fn grpo_peers(cfg: &student::GrpoConfig, specs: &[DeviceSpec], opts: &student::RunOptions) -> anyhow::Result<student::GrpoSummary> {
    let dist = student::DistributedOptions::default();
    let summary = match specs[0] {
        DeviceSpec::Cpu => {
            let devices = vec![burn::backend::flex::FlexDevice; specs.len()];
            student::train_grpo_data_parallel::<Autodiff<crate::backend::Cpu>>(cfg, &devices, opts, &dist)
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(_) => {
            let devices: Vec<_> = specs
                .iter()
                .map(|s| match s {
                    DeviceSpec::Cuda(i) => burn::backend::cuda::CudaDevice::new(*i),
                    DeviceSpec::Cpu => unreachable!("parse_devices rejects mixed lists"),
                })
                .collect();
            student::train_grpo_data_parallel::<Autodiff<crate::backend::Gpu>>(cfg, &devices, opts, &dist)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => anyhow::bail!("train.devices names CUDA devices but this build has no `cuda` feature"),
    };
    summary.context("student grpo (data-parallel)")
}

fn merge_on<B: Backend>(
    device: B::Device,
    base: &std::path::Path,
    adapter: &std::path::Path,
    out: &std::path::Path,
    dtype: Option<models::DType>,
) -> anyhow::Result<student::merge::MergeSummary> {
    student::merge::merge_adapter::<B>(base, adapter, out, &device, dtype).context("student merge")
}
