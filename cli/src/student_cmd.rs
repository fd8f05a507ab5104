//! `distill student` subcommands: SFT / logit-distillation training and LoRA merging.

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
    /// Merge a LoRA adapter (PEFT layout) into its base model, writing a plain HF checkpoint.
    Merge(MergeArgs),
}

/// `distill student train`.
#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// Training config (see configs/student/*.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override a config key, e.g. `--set optim.lr=2e-5 --set output.dir=runs/x` (TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from the newest checkpoint in output.dir.
    #[arg(long)]
    resume: bool,
    /// Device to train on.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Data-parallel peers, comma-separated: `cpu,cpu` or `cuda:0,cuda:1` (sets
    /// `train.devices`; replaces --device). N peers × grad_accum G = one device × N·G.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
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
            if !a.devices.is_empty() {
                cfg.train.devices = a.devices.clone();
            }
            let specs = student::distributed::parse_devices(&cfg.train.devices).map_err(|e| anyhow::anyhow!("--devices / train.devices: {e}"))?;
            let opts = student::RunOptions {
                resume: a.resume,
                progress: !a.no_progress,
                bf16_supported: specs.first().map_or(a.device != DeviceKind::Cpu, |s| *s != DeviceSpec::Cpu),
            };
            let summary = if specs.is_empty() {
                with_backend!(a.device, train_on(&cfg, &opts))?
            } else {
                train_peers(&cfg, &specs, &opts)?
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
    }
}

fn train_on<B: Backend>(
    device: B::Device,
    cfg: &student::TrainConfig,
    opts: &student::RunOptions,
) -> anyhow::Result<student::TrainSummary> {
    student::train::<Autodiff<B>>(cfg, &device, opts).context("student train")
}

/// Data-parallel training with one peer per entry of `train.devices`.
pub(crate) fn train_peers(cfg: &student::TrainConfig, specs: &[DeviceSpec], opts: &student::RunOptions) -> anyhow::Result<student::TrainSummary> {
    let dist = student::DistributedOptions::default();
    let summary = match specs[0] {
        DeviceSpec::Cpu => {
            let devices = vec![burn::backend::flex::FlexDevice; specs.len()];
            student::train_data_parallel::<Autodiff<crate::backend::Cpu>>(cfg, &devices, opts, &dist)
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
            student::train_data_parallel::<Autodiff<crate::backend::Gpu>>(cfg, &devices, opts, &dist)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => anyhow::bail!("train.devices names CUDA devices but this build has no `cuda` feature"),
    };
    summary.context("student train (data-parallel)")
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
