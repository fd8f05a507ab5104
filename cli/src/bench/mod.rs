//! `distill bench …`: speed and memory benchmarks. Each prints our figure next to its peer's,
//! measured in the same run (the peer scripts live in `benches/`).

pub mod client;
pub mod generate;
pub mod grade;
pub mod grpo;
mod ids;
pub mod mla;
pub mod serve;
pub mod train;

/// Arguments of `distill bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// OpenAI client overhead against an instant local server (req/s, CPU).
    Client(client::ClientArgs),
    /// Native engine prefill/decode tok/s on a Qwen2.5-0.5B shape next to transformers.
    Generate(generate::GenerateBenchArgs),
    /// Grader answers/s on 500 × 64 MATH-500 responses next to Math-Verify.
    Grade(grade::GradeBenchArgs),
    /// One GRPO step on a small Qwen shape: rollout, scoring and training tokens/s and time split.
    Grpo(grpo::GrpoBenchArgs),
    /// DeepSeek-V3 MLA: decode tok/s and KV bytes/token, latent cache vs expanded K/V.
    Mla(mla::MlaBenchArgs),
    /// `distill serve` tokens/s at 1, 8 and 32 concurrent clients.
    Serve(serve::ServeBenchArgs),
    /// Student trainer fwd+bwd+AdamW tokens/s and peak RSS on a small Qwen shape next to PyTorch.
    Train(train::TrainBenchArgs),
}

/// Runs one benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Client(a) => client::run(a),
        BenchCommand::Generate(a) => generate::run(a),
        BenchCommand::Grade(a) => grade::run(a),
        BenchCommand::Grpo(a) => grpo::run(a),
        BenchCommand::Mla(a) => mla::run(a),
        BenchCommand::Serve(a) => serve::run(a),
        BenchCommand::Train(a) => train::run(a),
    }
}
