//! `distill bench client`: overhead of the OpenAI-compatible HTTP client against an instant
//! local server, at high concurrency: completed requests/s and the client's CPU time.
//!
//! The server runs in a child process (this binary with a hidden flag) so the CPU time read
//! from /proc/self/stat is the client's alone. Target: ≥ 2,000 req/s using < 1 core.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use inference::backend::{ChatRequest, Message, Prompt};
use inference::openai::{OpenAiBackend, OpenAiConfig};

/// Arguments of `distill bench client`.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// Requests to complete.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Use SSE streaming responses.
    #[arg(long)]
    stream: bool,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Internal: run only the instant server and print its port.
    #[arg(long, hide = true)]
    serve_instant: bool,
}

/// User + system CPU seconds of this process (Linux /proc; 0 elsewhere).
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `after` starts at field 3.
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn serve_instant() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (addr, fut) = inference::instant_server::bind_instant("127.0.0.1:0", async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        println!("PORT {}", addr.port());
        use std::io::Write;
        std::io::stdout().flush()?;
        fut.await?;
        Ok(())
    })
}

/// Runs the benchmark.
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    if args.serve_instant {
        return serve_instant();
    }
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["bench", "client", "--serve-instant"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the instant server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .context("server did not report its port")?
        .parse()?;
    let result = bench(&args, port);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn bench(args: &ClientArgs, port: u16) -> anyhow::Result<()> {
    let cfg = OpenAiConfig {
        base_urls: vec![format!("http://127.0.0.1:{port}/v1")],
        model: "instant".into(),
        concurrency: args.concurrency,
        stream: args.stream,
        timeout_s: 30.0,
        ..Default::default()
    };
    let backend: Arc<dyn inference::Backend> = Arc::new(OpenAiBackend::new(cfg)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let request = ChatRequest {
        prompt: Prompt::Messages(vec![Message::user(
            "What is 2 + 2?\nPlease reason step by step, and put your final answer within \\boxed{}.",
        )]),
        max_tokens: 32768,
        temperature: 0.6,
        top_p: 0.95,
        seed: Some(1),
        stop: vec![],
    };
    let run = |n: usize| -> anyhow::Result<(usize, usize, f64, f64)> {
        let jobs = (0..n).map(|i| (i, request.clone()));
        let (mut ok, mut failed) = (0usize, 0usize);
        let cpu0 = process_cpu_seconds();
        let t0 = Instant::now();
        rt.block_on(inference::drive(
            backend.clone(),
            jobs,
            args.concurrency,
            std::future::pending(),
            |_, r| {
                match r {
                    Ok(c) if c.error.is_none() && c.content.contains("boxed{4}") => ok += 1,
                    _ => failed += 1,
                }
                Ok::<(), std::convert::Infallible>(())
            },
        ))
        .unwrap_or_else(|e| match e {});
        Ok((
            ok,
            failed,
            t0.elapsed().as_secs_f64(),
            process_cpu_seconds() - cpu0,
        ))
    };
    run((args.concurrency * 4).min(args.requests))?; // warm-up: connections, allocator
    let (ok, failed, wall, cpu) = run(args.requests)?;
    let rps = ok as f64 / wall;
    println!(
        "distill bench client: {} requests, concurrency {}, stream {}",
        args.requests, args.concurrency, args.stream
    );
    println!("  completed      {ok} ({failed} failed)");
    println!("  wall           {wall:.2} s");
    println!("  throughput     {rps:.0} req/s   (target >= 2000)");
    println!(
        "  client CPU     {cpu:.2} s = {:.2} cores   ({:.0} µs CPU per request; target < 1 core)",
        cpu / wall,
        1e6 * cpu / ok.max(1) as f64
    );
    Ok(())
}
