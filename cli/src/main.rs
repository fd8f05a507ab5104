//! `distill`: one binary for teacher sampling, student training and evaluation.
//!
//! This crate holds only clap definitions and dispatch; every command's work lives in the stage
//! crates (`models`, `datasets`, `grader`, `inference`, `teacher`, `student`, `eval`). A failed
//! command prints `error: …` and each cause once under `Caused by:` ([`report`]).

mod backend;
mod bench;
mod data_cmd;
mod eval_cmd;
mod eval_grade;
mod model_cmd;
mod orchestrator;
mod quickstart_cmd;
mod quickstart_report;
mod report;
mod serve_cmd;
mod student_cmd;
mod teacher_cmd;

use clap::{Parser, Subcommand};

/// Knowledge distillation for reasoning models: traces from a teacher, SFT of a student, and
/// evaluation with the DeepSeek-R1 protocol.
#[derive(Parser, Debug)]
#[command(name = "distill", version, about)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// When no progress bar is drawn (stderr is not a terminal, or `--no-progress`), log the
    /// progress of training, sampling and eval every this long (`30s`) or every this many
    /// steps/samples (`100`).
    #[arg(long, global = true, default_value = "30s", value_name = "30s|N")]
    progress_every: datasets::progress::ProgressEvery,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect, run and generate with a Hugging Face checkpoint directory.
    Model(model_cmd::ModelArgs),
    /// Sample reasoning traces from a teacher into Parquet shards.
    Teacher(teacher_cmd::TeacherArgs),
    /// Filter, deduplicate, decontaminate and export trace datasets.
    Data(data_cmd::DataArgs),
    /// Train (SFT / logit distillation) and merge student models.
    Student(student_cmd::StudentArgs),
    /// Grade, run and compare benchmark evaluations.
    Eval(eval_cmd::EvalArgs),
    /// Serve a checkpoint over an OpenAI-compatible HTTP API.
    Serve(serve_cmd::ServeArgs),
    /// Speed and memory benchmarks, each printed next to its peer measured in the same run.
    Bench(bench::BenchArgs),
    /// Run the whole pipeline end to end on a synthetic task, on CPU, in minutes.
    Quickstart(quickstart_cmd::QuickstartArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    datasets::progress::set_progress_every(cli.progress_every);
    let result = match cli.command {
        Command::Model(a) => model_cmd::run(a),
        Command::Teacher(a) => teacher_cmd::run(a),
        Command::Data(a) => data_cmd::run(a),
        Command::Student(a) => student_cmd::run(a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Quickstart(a) => quickstart_cmd::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report::render(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
