//! `distill bench …`: speed and memory benchmarks. Each prints our figure next to its peer's,
//! measured in the same run (the peer scripts live in `benches/`).

/// Arguments of `distill bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {}

/// Runs one benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {}
}
