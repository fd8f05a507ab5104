//! `distill bench serve`: generated tokens/s of `distill serve` at 1, 8 and 32 concurrent
//! clients, over loopback HTTP with our own OpenAI client.
//!
//! By default the model is a small random Qwen2-shaped decoder with the byte-level test
//! tokenizer (`--model DIR` serves a real checkpoint instead). The figure at 1 client is the
//! sequential baseline; higher concurrency shows what continuous batching adds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use inference::backend::{ChatRequest, Prompt};
use inference::engine_worker::EngineHandle;
use inference::native::NativeModel;
use inference::openai::{ApiKind, OpenAiBackend, OpenAiConfig};
use inference::server::{router, serve, ServerLimits};

use crate::backend::DeviceKind;

/// Arguments of `distill bench serve`.
#[derive(clap::Args, Debug)]
pub struct ServeBenchArgs {
    /// Concurrent clients to measure, comma-separated.
    #[arg(long, default_value = "1,8,32")]
    clients: String,
    /// Requests per client at each level.
    #[arg(long, default_value_t = 2)]
    requests_per_client: usize,
    /// New tokens per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Serve this checkpoint (with tokenizer) instead of the random model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Hidden size of the random model.
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// Layers of the random model.
    #[arg(long, default_value_t = 8)]
    layers: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

fn random_config_json(hidden: usize, layers: usize) -> serde_json::Value {
    let heads = (hidden / 64).max(1);
    serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 512, "hidden_size": hidden, "intermediate_size": hidden * 3,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": (heads / 4).max(1), "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "max_position_embeddings": 4096, "tie_word_embeddings": false,
        "bos_token_id": 256, "eos_token_id": inference::byte_tokenizer::EOS_ID,
        "hidden_act": "silu", "torch_dtype": "float32"
    })
}

fn load<B: burn::prelude::Backend>(
    device: B::Device,
    args: &ServeBenchArgs,
    scratch: &std::path::Path,
) -> anyhow::Result<NativeModel> {
    let engine = models::EngineConfig {
        max_batch: 32,
        max_seq_len: 1024,
        ..Default::default()
    };
    if let Some(dir) = &args.model {
        return Ok(NativeModel::load::<B>(
            dir,
            device,
            burn::tensor::DType::F32,
            engine,
            Some("bench".into()),
        )?);
    }
    inference::byte_tokenizer::write_byte_tokenizer(scratch)?;
    let cfg_path = scratch.join("config.json");
    std::fs::write(
        &cfg_path,
        random_config_json(args.hidden, args.layers).to_string(),
    )?;
    let config = models::ModelConfig::from_file(&cfg_path)?;
    let tokenizer = Arc::new(datasets::TextTokenizer::from_dir(scratch)?);
    let (handle, _thread) = EngineHandle::spawn::<B, _, _>(
        move || {
            models::loader::random_model::<B>(&config, &device, burn::tensor::DType::F32, 0.02, 7)
        },
        engine,
    )?;
    Ok(NativeModel::new(handle, tokenizer, "bench".into(), vec![]))
}

/// Runs the benchmark.
pub fn run(args: ServeBenchArgs) -> anyhow::Result<()> {
    let levels: Vec<usize> = args
        .clients
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .context("--clients takes numbers like 1,8,32")
        })
        .collect::<anyhow::Result<_>>()?;
    let scratch = std::env::temp_dir().join(format!("distill-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let model = crate::with_backend!(args.device, load(&args, &scratch))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router(model, None, ServerLimits::default()),
            async {
                let _ = rx.await;
            },
        ));
        let mut rows = Vec::new();
        for &clients in &levels {
            let cfg = OpenAiConfig {
                base_urls: vec![format!("http://127.0.0.1:{port}/v1")],
                model: "bench".into(),
                api: ApiKind::Completions,
                concurrency: clients,
                max_retries: 0,
                ..Default::default()
            };
            let backend: Arc<dyn inference::Backend> = Arc::new(OpenAiBackend::new(cfg)?);
            let n = clients * args.requests_per_client;
            let jobs = (0..n).map(|i| {
                (
                    i,
                    ChatRequest {
                        prompt: Prompt::Text(format!(
                            "Problem {i}: compute the sum of the first {i} odd numbers."
                        )),
                        max_tokens: args.max_tokens,
                        temperature: 1.0,
                        top_p: 1.0,
                        seed: Some(i as u64),
                        stop: vec![],
                    },
                )
            });
            let mut tokens = 0u64;
            let mut failed = 0usize;
            let t0 = Instant::now();
            inference::drive(backend, jobs, clients, std::future::pending(), |_, r| {
                match r {
                    Ok(c) if c.error.is_none() => tokens += u64::from(c.completion_tokens),
                    _ => failed += 1,
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .unwrap_or_else(|e| match e {});
            let wall = t0.elapsed().as_secs_f64();
            rows.push((clients, n, tokens, wall, failed));
        }
        let _ = tx.send(());
        let _ = server.await;
        anyhow::Ok(rows)
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let rows = result?;
    let what = match &args.model {
        Some(d) => d.display().to_string(),
        None => format!(
            "random qwen2 h{} x{} layers, vocab 512",
            args.hidden, args.layers
        ),
    };
    println!(
        "distill bench serve: {what}, {} new tokens per request, {}",
        args.max_tokens, args.device
    );
    println!("| clients | requests | tokens | wall s | tokens/s | vs 1 client |");
    println!("|---|---|---|---|---|---|");
    let base = rows.first().map(|r| r.2 as f64 / r.3).unwrap_or(1.0);
    for (clients, n, tokens, wall, failed) in rows {
        let tps = tokens as f64 / wall;
        let note = if failed > 0 {
            format!(" ({failed} failed)")
        } else {
            String::new()
        };
        println!(
            "| {clients} | {n}{note} | {tokens} | {wall:.2} | {tps:.1} | {:.2}x |",
            tps / base
        );
    }
    Ok(())
}
