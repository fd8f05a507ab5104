//! `distill serve`: OpenAI-compatible HTTP server over the native engine.

use anyhow::Context;
use inference::native::NativeModel;
use inference::reasoning_parser::ReasoningParser;
use inference::serve_params::SamplingDefaults;
use inference::server::{router_with_options, serve_with, ConnOptions, ServeOptions, ServerLimits};

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
    /// Environment variable holding the API key; requests then need `Authorization: Bearer KEY`.
    /// An unset or empty variable is an error (the server would otherwise start open).
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
    /// Most prompts in one `/v1/completions` request.
    #[arg(long = "max-prompts-per-request", default_value_t = 64)]
    max_prompts_per_request: usize,
    /// Most tokens one request may ask for: prompts × n × max_tokens.
    #[arg(long = "max-request-tokens", default_value_t = 1 << 20)]
    max_request_tokens: u64,
    /// Seconds a client may take to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long = "header-timeout-secs", default_value_t = 30.0)]
    header_timeout_secs: f64,
    /// Seconds a client may take to send a request body (a stalled body gets 408 and the
    /// connection is closed).
    #[arg(long = "body-timeout-secs", default_value_t = 60.0)]
    body_timeout_secs: f64,
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
        Some(var) => Some(inference::auth::api_key_from_env(var)?),
        None => None,
    };
    let secs = |flag: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(anyhow::anyhow!(
                "{flag} must be between 0 and 86400 seconds, got {v}"
            ))
        }
    };
    let header_timeout = secs("--header-timeout-secs", args.header_timeout_secs)?;
    let body_timeout = secs("--body-timeout-secs", args.body_timeout_secs)?;
    anyhow::ensure!(
        args.max_prompts_per_request > 0 && args.max_request_tokens > 0,
        "--max-prompts-per-request and --max-request-tokens must be at least 1"
    );
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
        max_prompts: args.max_prompts_per_request,
        max_request_tokens: args.max_request_tokens,
        body_timeout,
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
        let conn = ConnOptions { header_timeout };
        serve_with(listener, app, conn, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server failed")
    })
}
