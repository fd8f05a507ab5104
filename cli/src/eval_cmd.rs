//! `distill eval` subcommands: `run` (sample, grade and summarise a model on benchmarks with
//! the R1 protocol), `sweep` (one run per thinking budget and the accuracy-vs-budget curve) and
//! `compare` (side-by-side report of several runs).

use std::path::PathBuf;

use anyhow::Context;

use crate::backend::DeviceKind;

/// Arguments of `distill eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(clap::Subcommand, Debug)]
enum EvalCommand {
    /// Grade (gold, pred) pairs from JSONL: one output line per input line with `verdict`,
    /// `correct` and `extracted`.
    Grade(crate::eval_grade::GradeArgs),
    /// Score a model on AIME 2024/2025, MATH-500 or any problem file with the R1 protocol
    /// (k samples per problem, pass@1 ± CI, cons@k, pass@k). Resumable: rerun to continue.
    Run(RunArgs),
    /// Run the eval once per thinking budget (s1 budget forcing: `protocol.max_thinking_tokens`
    /// = each budget, into OUT/budget-<N>/, resumable) and write the accuracy-vs-budget curve:
    /// OUT/report.json (`thinking_budget_curve`), OUT/report.md and OUT/thinking_budget.svg.
    Sweep(SweepArgs),
    /// Compare run directories: report.md, report.json and SVG plots in --out.
    Compare(CompareArgs),
}

/// `distill eval sweep --config FILE --thinking-budgets 512,1024,… [--set key=value …]`.
#[derive(clap::Args, Debug)]
struct SweepArgs {
    /// Eval config (TOML); its `out_dir` receives one run directory per budget and the report.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Thinking budgets in tokens, comma-separated (e.g. 512,1024,2048,4096).
    #[arg(long, value_name = "N,N,…")]
    thinking_budgets: String,
    /// Override a config key (repeatable), as for `eval run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Device of the native backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// `distill eval run --config FILE [--set key=value …]`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Eval config (TOML), e.g. configs/eval/r1.toml.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Override a config key, e.g. `--set model.checkpoint=DIR` or
    /// `--set benchmarks.0.samples=8` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Device of the native backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Recompute summary.json/summary.md from the stored records without generating.
    #[arg(long)]
    summarize_only: bool,
}

/// `distill eval compare RUN_DIR… --out DIR`.
#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// Run directories (each holding summary.json).
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// Output directory for report.md, report.json, accuracy.svg, accuracy_vs_length.svg.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Name of the reference model (default: the run whose role is teacher).
    #[arg(long, value_name = "NAME")]
    teacher: Option<String>,
}

/// Runs one `distill eval` subcommand.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.command {
        EvalCommand::Grade(a) => crate::eval_grade::run(a),
        EvalCommand::Run(a) => run_eval(a),
        EvalCommand::Sweep(a) => sweep(a),
        EvalCommand::Compare(a) => compare(a),
    }
}

fn build_backend<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &eval::EvalConfig,
) -> Result<std::sync::Arc<dyn inference::Backend>, eval::EvalError> {
    eval::backends::build_backend::<B>(device, cfg)
}

fn run_eval(a: RunArgs) -> anyhow::Result<()> {
    let cfg = eval::EvalConfig::load(&a.config, &a.set)?;
    check_run_config(&a.config, &a.set, &cfg)?;
    let _lock = datasets::lock::OutputLock::acquire(&cfg.out_dir, "distill eval run")?;
    let summary = if a.summarize_only {
        let s = eval::runner::summarize_run(&cfg)?;
        s.save(&cfg.out_dir)?;
        s
    } else {
        let backend = crate::with_backend!(a.device, build_backend(&cfg))?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(eval::run_eval(&cfg, backend))
            .with_context(|| format!("eval run {}", a.config.display()))?
    };
    print!("{}", summary.to_markdown());
    eprintln!("\nwrote {}", cfg.out_dir.join("summary.json").display());
    Ok(())
}

fn load_model<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &eval::EvalConfig,
) -> Result<eval::backends::LoadedModel, eval::EvalError> {
    eval::backends::LoadedModel::load::<B>(device, cfg)
}

fn sweep(a: SweepArgs) -> anyhow::Result<()> {
    let budgets = eval::sweep::parse_budgets(&a.thinking_budgets)?;
    let cfg = eval::EvalConfig::load(&a.config, &a.set)?;
    check_run_config(&a.config, &a.set, &cfg)?;
    // Every budget's config must be valid before the first run starts.
    for &b in &budgets {
        eval::sweep::budget_run_config(&cfg, b)?;
    }
    let _lock = datasets::lock::OutputLock::acquire(&cfg.out_dir, "distill eval sweep")?;
    let model = crate::with_backend!(a.device, load_model(&cfg))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt
        .block_on(eval::sweep::run_sweep(&cfg, &budgets, &model))
        .with_context(|| format!("eval sweep {}", a.config.display()))?;
    print!("{}", eval::sweep::render_markdown(&report));
    eprintln!("\nwrote {}", cfg.out_dir.join("report.json").display());
    Ok(())
}

/// Settings the eval config accepts but that cannot do what the user meant: a config without
/// `[[benchmarks]]` (which would silently run AIME 2024/2025 and MATH-500 at k = 64) and a
/// bootstrap without resamples.
fn check_run_config(path: &std::path::Path, sets: &[String], cfg: &eval::EvalConfig) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let set_benchmarks = sets.iter().any(|s| s.trim_start().starts_with("benchmarks"));
    if !table.contains_key("benchmarks") && !set_benchmarks {
        anyhow::bail!(
            "{}: no [[benchmarks]]: name what to evaluate, e.g.\n[[benchmarks]]\nname = \"math500\"",
            path.display()
        );
    }
    if cfg.stats.bootstrap_resamples == 0 {
        anyhow::bail!("{}: stats.bootstrap_resamples must be at least 1 (it sizes the 95% CI)", path.display());
    }
    // Every problem file is read before the model loads: a malformed file is an input error
    // to fix (named with its line), not something a rerun resumes past.
    for bench in &cfg.benchmarks {
        eval::benchmarks::load(&bench.name, bench.path.as_deref(), &bench.columns)
            .with_context(|| format!("{}: benchmark `{}`", path.display(), bench.name))?;
    }
    Ok(())
}

fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let opts = eval::CompareOptions { out_dir: a.out.clone(), teacher: a.teacher };
    let report = eval::compare_runs(&a.runs, &opts)?;
    let md = std::fs::read_to_string(a.out.join("report.md")).unwrap_or_default();
    print!("{md}");
    eprintln!(
        "\nwrote {} ({} models)",
        a.out.join("report.json").display(),
        report.models.len()
    );
    Ok(())
}
