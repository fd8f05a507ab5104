//! `distill serve`: OpenAI-compatible HTTP server over the native engine.

use anyhow::Context;
use inference::native::NativeModel;
use inference::reasoning_parser::ReasoningParser;
use inference::serve_params::SamplingDefaults;
use inference::server::{router_with_options, serve, ServeOptions, ServerLimits};

use crate::backend::DeviceKind;

/// Arguments of `distill serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Checkpoint directory (HF layout, with tokenizer files).
    #[arg(long)]
    model: std::path::PathBuf,
    /// Address to bind. Loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Environment variable holding the API key; when set, requests need `Authorization: Bearer KEY`.
    #[arg(long = "api-key-env", value_name = "VAR")]
    api_key_env: Option<String>,
    /// Name clients use as `model` (default: the directory name).
    #[arg(long = "served-model-name")]
    served_model_name: Option<String>,
    /// Sequences decoded together (KV-cache slots).
    #[arg(long = "max-batch", default_value_t = 32)]
    max_batch: usize,
    /// Prompt + completion tokens per sequence.
    #[arg(long = "max-seq-len", default_value_t = 4096)]
    max_seq_len: usize,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long = "max-tokens-limit", default_value_t = 32768)]
    max_tokens_limit: u32,
    /// Largest request body in bytes.
    #[arg(long = "max-body-bytes", default_value_t = 8 << 20)]
    max_body_bytes: usize,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Split the chat answer's `<think>…</think>` into `reasoning_content` (vLLM's and
    /// SGLang's flag; only `deepseek-r1` is offered).
    #[arg(long = "reasoning-parser", value_name = "NAME")]
    reasoning_parser: Option<String>,
    /// Where sampling defaults for requests that omit them come from (vLLM's flag): `auto` =
    /// the model's generation_config.json, `vllm` = none (temperature 1, top_p 1), or a
    /// directory holding a generation_config.json.
    #[arg(long = "generation-config", default_value = "auto")]
    generation_config: String,
}

/// The `--generation-config` defaults.
fn sampling_defaults(args: &ServeArgs) -> anyhow::Result<SamplingDefaults> {
    let dir = match args.generation_config.as_str() {
        "vllm" => return Ok(SamplingDefaults::default()),
        "auto" => args.model.clone(),
        other => std::path::PathBuf::from(other),
    };
    let cfg = models::ModelConfig::from_dir(&args.model)
        .with_context(|| format!("reading {}", args.model.display()))?;
    let gen = models::GenerationConfig::from_dir(&dir, &cfg)
        .with_context(|| format!("--generation-config {}", dir.display()))?;
    Ok(SamplingDefaults::from_generation_config(&gen))
}

fn load<B: burn::prelude::Backend>(
    device: B::Device,
    args: &ServeArgs,
) -> anyhow::Result<NativeModel> {
    let engine = models::EngineConfig {
        max_batch: args.max_batch,
        max_seq_len: args.max_seq_len,
        ..Default::default()
    };
    Ok(NativeModel::load::<B>(
        &args.model,
        device,
        burn::tensor::DType::F32,
        engine,
        args.served_model_name.clone(),
    )?)
}

/// Runs the server until interrupted.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let api_key = match &args.api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .with_context(|| format!("--api-key-env names `{var}`, which is not set"))?,
        ),
        None => None,
    };
    let reasoning_parser = match args.reasoning_parser.as_deref() {
        None => None,
        Some(n) => Some(ReasoningParser::from_name(n).with_context(|| {
            format!("--reasoning-parser `{n}` is not supported (available: deepseek-r1)")
        })?),
    };
    let defaults = sampling_defaults(&args)?;
    let model = crate::with_backend!(args.device, load(&args))
        .with_context(|| format!("loading {}", args.model.display()))?
        .with_defaults(defaults.clone());
    let name = model.name().to_string();
    if defaults != SamplingDefaults::default() {
        eprintln!(
            "distill serve: defaults for requests that omit them (--generation-config {}): {}",
            args.generation_config,
            defaults.describe()
        );
    }
    let limits = ServerLimits {
        max_body_bytes: args.max_body_bytes,
        max_tokens: args.max_tokens_limit,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(model = %name, auth = api_key.is_some(), "serving on http://{local}/v1");
        eprintln!("distill serve: `{name}` on http://{local}/v1");
        let options = ServeOptions { reasoning_parser };
        let app = router_with_options(model, api_key, limits, options);
        serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server failed")
    })
}
