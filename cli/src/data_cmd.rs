//! `distill data` subcommands.

/// Arguments of `distill data`.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {}

/// Runs one `distill data` subcommand.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {}
}
