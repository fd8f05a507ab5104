//! `distill eval` subcommands.

/// Arguments of `distill eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(clap::Subcommand, Debug)]
enum EvalCommand {}

/// Runs one `distill eval` subcommand.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.command {}
}
