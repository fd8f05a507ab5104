//! Node 0 of a multi-node run (`--nodes N --node-rank 0 --orchestrator HOST:PORT`) hosts
//! burn-collective's global orchestrator, where the nodes register and learn each other's
//! addresses before the first all-reduce.

use anyhow::Context;

/// Starts the orchestrator on PORT of `addr` (all interfaces) in a background thread that
/// lives as long as the process.
///
/// burn-collective's orchestrator stops on SIGINT/SIGTERM (it installs handlers for both,
/// `burn_communication::util::os_shutdown_signal`), which would otherwise leave this process
/// training without its orchestrator and ignoring Ctrl-C; the thread exits the process then,
/// as the default handlers would.
pub fn host(addr: &str) -> anyhow::Result<()> {
    let port: u16 = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("--orchestrator {addr:?}: expected HOST:PORT"))?;
    // Fail here with a clear message rather than inside the orchestrator's task.
    drop(std::net::TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("cannot host the orchestrator on port {port}"))?);
    std::thread::Builder::new()
        .name("orchestrator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the orchestrator's runtime: {e}");
                    std::process::exit(1);
                }
            };
            rt.block_on(burn_collective::start_global_orchestrator(port));
            tracing::error!("the collective orchestrator stopped (interrupted); exiting");
            std::process::exit(130);
        })
        .context("starting the orchestrator thread")?;
    tracing::info!(port, "collective orchestrator listening");
    Ok(())
}
