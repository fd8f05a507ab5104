//! `distill teacher` subcommands.

/// Arguments of `distill teacher`.
#[derive(clap::Args, Debug)]
pub struct TeacherArgs {
    #[command(subcommand)]
    command: TeacherCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TeacherCommand {}

/// Runs one `distill teacher` subcommand.
pub fn run(args: TeacherArgs) -> anyhow::Result<()> {
    match args.command {}
}
