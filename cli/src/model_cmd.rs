//! `distill model` subcommands.

/// Arguments of `distill model`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ModelCommand {}

/// Runs one `distill model` subcommand.
pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {}
}
