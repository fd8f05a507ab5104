//! `distill student` subcommands.

/// Arguments of `distill student`.
#[derive(clap::Args, Debug)]
pub struct StudentArgs {
    #[command(subcommand)]
    command: StudentCommand,
}

#[derive(clap::Subcommand, Debug)]
enum StudentCommand {}

/// Runs one `distill student` subcommand.
pub fn run(args: StudentArgs) -> anyhow::Result<()> {
    match args.command {}
}
