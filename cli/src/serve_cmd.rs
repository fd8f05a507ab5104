//! `distill serve`: OpenAI-compatible HTTP server over the native engine.

/// Arguments of `distill serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Checkpoint directory (HF layout).
    #[arg(long)]
    model: std::path::PathBuf,
}

/// Runs the server until interrupted.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("distill serve is not built yet (model {})", args.model.display())
}
