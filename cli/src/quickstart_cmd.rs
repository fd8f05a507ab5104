//! `distill quickstart`: the whole pipeline on a synthetic task.

/// Arguments of `distill quickstart`.
#[derive(clap::Args, Debug)]
pub struct QuickstartArgs {
    /// Output directory for every stage's artifacts.
    #[arg(long, default_value = "runs/quickstart")]
    out: std::path::PathBuf,
}

/// Runs (or resumes) every stage.
pub fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    anyhow::bail!("quickstart is not built yet (out {})", args.out.display())
}
