//! `distill teacher` subcommands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use inference::native::{NativeBackend, NativeModel};
use inference::BackendKind;
use teacher::config::TeacherConfig;

use crate::backend::DeviceKind;

/// Arguments of `distill teacher`.
#[derive(clap::Args, Debug)]
pub struct TeacherArgs {
    #[command(subcommand)]
    command: TeacherCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TeacherCommand {
    /// Sample k reasoning traces per problem from a teacher into Parquet shards (resumable:
    /// rerun the same command to continue).
    Sample(SampleArgs),
}

/// Backend names accepted by `--backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendArg {
    /// OpenAI-compatible HTTP server (SGLang, vLLM, DeepSeek API, `distill serve`).
    Openai,
    /// The models engine in-process.
    Native,
}

/// `distill teacher sample [--config FILE] [--set k=v…]` plus flags that override the config
/// (and may replace it: `--problems F --out D` give the required keys).
#[derive(clap::Args, Debug)]
struct SampleArgs {
    /// Teacher config (TOML), e.g. configs/teacher/deepseek-api.toml. Optional when the flags
    /// give `--problems` and `--out`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key: `--set sampling.temperature=0.7` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Backend: openai or native.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Replica base URL ending in /v1 (repeatable; replaces the config's list).
    #[arg(long = "base-url", value_name = "URL")]
    base_url: Vec<String>,
    /// Model name (openai) or checkpoint directory (native).
    #[arg(long, value_name = "NAME|DIR")]
    model: Option<String>,
    /// Problem set (JSONL or Parquet).
    #[arg(long, value_name = "FILE")]
    problems: Option<PathBuf>,
    /// Samples per problem (k).
    #[arg(long, value_name = "K")]
    samples: Option<u32>,
    /// Maximum new tokens per sample.
    #[arg(long = "max-tokens", value_name = "N")]
    max_tokens: Option<u32>,
    /// Sampling temperature.
    #[arg(long, value_name = "T")]
    temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[arg(long = "top-p", value_name = "P")]
    top_p: Option<f32>,
    /// Requests in flight.
    #[arg(long, value_name = "C")]
    concurrency: Option<usize>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Redo samples recorded as permanent failures (sets `run.retry_failed`): their rows are
    /// replaced.
    #[arg(long)]
    retry_failed: bool,
    /// Device of the native backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs one `distill teacher` subcommand.
pub fn run(args: TeacherArgs) -> anyhow::Result<()> {
    match args.command {
        TeacherCommand::Sample(a) => sample(a),
    }
}

/// The flags that set config keys, as (dotted key, value) layers over the file and `--set`.
fn flag_layers(a: &SampleArgs) -> Vec<(&'static str, toml::Value)> {
    let path = |p: &PathBuf| toml::Value::String(p.to_string_lossy().into_owned());
    let mut flags = Vec::new();
    if let Some(p) = &a.problems {
        flags.push(("problems", path(p)));
    }
    if let Some(o) = &a.out {
        flags.push(("out_dir", path(o)));
    }
    flags
}

fn resolve(a: &SampleArgs) -> anyhow::Result<TeacherConfig> {
    let mut cfg = TeacherConfig::parse_layers(a.config.as_deref(), &a.set, &flag_layers(a))?;
    if let Some(b) = a.backend {
        cfg.backend = match b {
            BackendArg::Openai => BackendKind::Openai,
            BackendArg::Native => BackendKind::Native,
        };
    }
    if !a.base_url.is_empty() {
        cfg.openai.base_urls = a.base_url.clone();
    }
    if let Some(m) = &a.model {
        match cfg.backend {
            BackendKind::Openai => cfg.openai.model = m.clone(),
            BackendKind::Native => cfg.native.model_dir = Some(PathBuf::from(m)),
        }
    }
    if let Some(k) = a.samples {
        cfg.sampling.samples = k;
    }
    if let Some(n) = a.max_tokens {
        cfg.sampling.max_tokens = n;
    }
    if let Some(t) = a.temperature {
        cfg.sampling.temperature = t;
    }
    if let Some(p) = a.top_p {
        cfg.sampling.top_p = p;
    }
    if let Some(c) = a.concurrency {
        cfg.run.concurrency = c;
    }
    if a.retry_failed {
        cfg.run.retry_failed = true;
    }
    let origin = match &a.config {
        Some(p) => format!("config {}", p.display()),
        None => "command-line settings".to_string(),
    };
    cfg.validate().with_context(|| origin)?;
    Ok(cfg)
}

fn load_native<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &TeacherConfig,
) -> anyhow::Result<NativeModel> {
    let dir = cfg
        .native
        .model_dir
        .as_ref()
        .context("native.model_dir is not set")?;
    let engine = models::EngineConfig {
        max_batch: cfg.native.max_batch,
        max_seq_len: cfg.native.max_seq_len,
        ..Default::default()
    };
    Ok(NativeModel::load::<B>(
        dir,
        device,
        burn::tensor::DType::F32,
        engine,
        Some(cfg.teacher_name()),
    )?)
}

fn sample(a: SampleArgs) -> anyhow::Result<()> {
    let cfg = resolve(&a)?;
    let _lock = datasets::lock::OutputLock::acquire(&cfg.out_dir, "distill teacher sample")?;
    let backend: Arc<dyn inference::Backend> = match cfg.backend {
        BackendKind::Openai => Arc::new(inference::OpenAiBackend::new(cfg.openai.clone())?),
        BackendKind::Native => {
            let model = crate::with_backend!(a.device, load_native(&cfg))?;
            Arc::new(NativeBackend::new(model))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::warn!("Ctrl-C: stopping, writing finished samples");
        };
        teacher::run_sampling(&cfg, backend, stop).await
    })?;
    let c = &report.counts;
    eprintln!(
        "{}: {}/{} rows ({} new in {:.1}s), correct {} ({:.1}%), truncated {}, failed {}",
        report.out_dir.display(),
        c.rows,
        c.expected_rows,
        report.new_rows,
        report.elapsed_s,
        c.correct,
        100.0 * c.correct as f64 / c.rows.max(1) as f64,
        c.truncated,
        c.failed
    );
    if report.interrupted {
        anyhow::bail!(
            "interrupted with {} samples left; rerun the same command to resume",
            c.unfinished
        );
    }
    if !report.is_complete() {
        anyhow::bail!(
            "{} samples could not be completed (transient faults outlasted the retries); rerun the same command to finish them",
            c.unfinished
        );
    }
    if report.replaced > 0 {
        eprintln!("replaced {} previously failed samples", report.replaced);
    }
    if c.failed > 0 {
        anyhow::bail!(
            "{} of {} samples failed permanently (first error: {}); fix the cause and rerun with \
             --retry-failed to redo them",
            c.failed,
            c.rows,
            report.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}
