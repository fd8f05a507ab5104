//! `distill model` subcommands: inspect, run and generate with a HF checkpoint directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use burn::prelude::*;
use burn::tensor::FloatDType;
use models::{CausalLm, ForwardInput, GenerationRequest, SamplingParams};

use crate::backend::DeviceKind;
use crate::with_backend;

/// Arguments of `distill model`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ModelCommand {
    /// Architecture, parameter count, dtype, vocabulary and context of a checkpoint.
    Info(InfoArgs),
    /// Full-sequence logits for token sequences, written to a safetensors file.
    Forward(ForwardArgs),
    /// Generate a completion for a prompt (token ids or text).
    Generate(GenerateArgs),
}

/// Compute dtype of the weights and activations.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DtypeArg {
    /// 32-bit float (default; the fast path on CPU).
    #[default]
    F32,
    /// bfloat16 (GPU inference).
    Bf16,
    /// float16.
    F16,
}

impl DtypeArg {
    /// The Burn dtype.
    pub fn dtype(self) -> models::DType {
        match self {
            DtypeArg::F32 => models::DType::F32,
            DtypeArg::Bf16 => models::DType::BF16,
            DtypeArg::F16 => models::DType::F16,
        }
    }
}

#[derive(clap::Args, Debug)]
struct InfoArgs {
    /// Checkpoint directory (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ForwardArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// One sequence of comma-separated ids; repeat for a batch. Rows may differ in length:
    /// they are right-padded to the longest and the padding is masked out of attention.
    #[arg(long = "tokens", required = true)]
    tokens: Vec<String>,
    /// Output safetensors file: `logits`, f32 `[batch, longest, vocab]` (zero past a row's
    /// length), and `lengths`, i64 `[batch]` (each row's token count).
    #[arg(long)]
    out: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t)]
    dtype: DtypeArg,
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Checkpoint directory (tokenizer files needed for --prompt).
    #[arg(long)]
    model: PathBuf,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt", required_unless_present = "prompt")]
    tokens: Option<Vec<u32>>,
    /// Prompt text (tokenized with the checkpoint's tokenizer).
    #[arg(long)]
    prompt: Option<String>,
    /// Wrap --prompt as a user message in the chat template (with the generation prompt).
    #[arg(long, requires = "prompt")]
    chat: bool,
    /// Optional system message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Greedy decoding (the default when no --temperature is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop strings (repeatable); need the tokenizer.
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Do not stop on EOS ids.
    #[arg(long)]
    ignore_eos: bool,
    /// Print a JSON object (new_ids, text, finish_reason, token counts) as the last line.
    #[arg(long)]
    json: bool,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t)]
    dtype: DtypeArg,
}

/// Runs one `distill model` subcommand.
pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Info(a) => info(a),
        ModelCommand::Forward(a) => {
            let kind = a.device;
            with_backend!(kind, forward(a))
        }
        ModelCommand::Generate(a) => {
            let kind = a.device;
            with_backend!(kind, generate_cmd(a))
        }
    }
}

fn info(a: InfoArgs) -> anyhow::Result<()> {
    let cfg = models::ModelConfig::from_dir(&a.model)?;
    let files = models::SafetensorsFiles::open(&a.model)?;
    let mut params = 0usize;
    let mut stored: std::collections::BTreeMap<String, usize> = Default::default();
    for name in files.names() {
        let raw = files.raw(name)?;
        *stored.entry(format!("{:?}", raw.dtype).to_lowercase()).or_default() += 1;
        if !name.ends_with("_scale_inv") {
            params += raw.shape.iter().product::<usize>();
        }
    }
    let dtype = cfg.torch_dtype.clone().unwrap_or_else(|| stored.keys().next().cloned().unwrap_or_default());
    let generation = models::GenerationConfig::from_dir(&a.model, &cfg)?;
    let eos = merged_eos(&cfg.eos_token_ids, &generation.eos_token_ids);
    // DeepSeek-V3: total vs active parameters per token and memory at bf16 / FP8.
    let moe = match cfg.architecture {
        models::Architecture::DeepseekV3 => Some(models::deepseek::deepseek_param_report(
            &models::deepseek::DeepseekV3Config::from_model_config(&cfg)?,
        )),
        _ => None,
    };
    if a.json {
        let mut v = serde_json::json!({
            "architecture": cfg.architecture.class_name(),
            "model_type": cfg.architecture.model_type(),
            "parameters": params,
            "dtype": dtype,
            "stored_dtypes": stored,
            "vocab_size": cfg.vocab_size,
            "context": cfg.max_position_embeddings,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": cfg.head_dim,
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "eos_token_ids": eos,
            "shards": files.files().len(),
        });
        if let Some(r) = &moe {
            v["parameters_total"] = r.total.into();
            v["parameters_active_per_token"] = r.active_per_token.into();
            v["weights_bytes_bf16"] = r.bytes_bf16.into();
            v["weights_bytes_fp8"] = r.bytes_fp8.into();
            v["kv_cache_bytes_per_token_bf16"] = r.kv_bytes_per_token_bf16.into();
            v["expanded_kv_bytes_per_token_bf16"] = r.expanded_kv_bytes_per_token_bf16.into();
        }
        println!("{v}");
        return Ok(());
    }
    println!("architecture     {} ({})", cfg.architecture.class_name(), cfg.architecture.model_type());
    println!("parameters       {} ({:.3} B)", params, params as f64 / 1e9);
    if let Some(r) = &moe {
        println!("{r}");
    }
    println!("dtype            {dtype} (stored: {})", stored.keys().cloned().collect::<Vec<_>>().join(", "));
    println!("vocab            {}", cfg.vocab_size);
    println!("context          {}", cfg.max_position_embeddings);
    println!(
        "shape            hidden {} · layers {} · heads {} (kv {}) · head_dim {} · intermediate {}",
        cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size
    );
    println!("rope             {}", rope_text(cfg.rope_theta, cfg.rope_scaling.as_ref()));
    println!("tied embeddings  {}", if cfg.tie_word_embeddings { "yes" } else { "no" });
    println!("eos ids          {}", eos_text(&eos, &cfg.eos_token_ids, &generation.eos_token_ids));
    println!("weight files     {}", files.files().len());
    Ok(())
}

/// The ids generation stops at: config.json's, then generation_config.json's (what
/// transformers and vLLM stop on), each once.
fn merged_eos(config: &[u32], generation: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for &id in config.iter().chain(generation) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn id_list(ids: &[u32]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// `151643, 151645 (config.json: 151643; generation_config.json: 151645, 151643)`; the
/// sources are only spelled out when they differ.
fn eos_text(merged: &[u32], config: &[u32], generation: &[u32]) -> String {
    if config == generation || generation.is_empty() {
        return id_list(merged);
    }
    format!("{} (config.json: {}; generation_config.json: {})", id_list(merged), id_list(config), id_list(generation))
}

/// RoPE base and scaling in words, e.g. `theta 500000, llama3 scaling ×32 (…)`.
fn rope_text(theta: f64, scaling: Option<&models::RopeScaling>) -> String {
    use models::RopeScaling as R;
    let how = match scaling {
        None => return format!("theta {theta}, no scaling"),
        Some(R::Linear { factor }) => format!("linear scaling ×{factor}"),
        Some(R::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => format!(
            "llama3 scaling ×{factor} (low_freq_factor {low_freq_factor}, high_freq_factor {high_freq_factor}, \
             original context {original_max_position_embeddings})"
        ),
        Some(R::Yarn { factor, original_max_position_embeddings, beta_fast, beta_slow, mscale, mscale_all_dim }) => format!(
            "yarn scaling ×{factor} (original context {original_max_position_embeddings}, beta_fast {beta_fast}, \
             beta_slow {beta_slow}, mscale {mscale}, mscale_all_dim {mscale_all_dim})"
        ),
    };
    format!("theta {theta}, {how}")
}

fn forward<B: Backend>(device: B::Device, a: ForwardArgs) -> anyhow::Result<()> {
    let rows = a.tokens.iter().map(|s| parse_ids(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let context = models::ModelConfig::from_dir(&a.model)?.max_position_embeddings;
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() > context) {
        bail!("--tokens row {i} has {} tokens, more than the model's context (max_position_embeddings {context})", r.len());
    }
    let loaded = models::load_model::<B>(&a.model, &device, a.dtype.dtype())?;
    let vocab = loaded.config.vocab_size;
    if let Some(bad) = rows.iter().flatten().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary ({vocab})");
    }
    let pad = loaded.config.pad_token_id.or(loaded.generation.pad_token_id).filter(|&p| (p as usize) < vocab).unwrap_or(0);
    let (input, lengths) = ForwardInput::<B>::right_padded(&rows, pad, &device).context("--tokens")?;
    let logits = loaded.model.forward(input).cast(FloatDType::F32).into_data();
    let logits = zero_padding(logits, &lengths)?;
    let shape = logits.shape.to_vec();
    let lengths_data = TensorData::new(lengths.iter().map(|&l| l as i64).collect::<Vec<_>>(), [lengths.len()]);
    models::write_safetensors(&a.out, &[("logits".to_string(), logits), ("lengths".to_string(), lengths_data)])?;
    let dims = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(" × ");
    eprintln!("wrote logits [{dims}] and lengths to {}", a.out.display());
    Ok(())
}

/// Zeroes the logits of padded positions (`[B, T, V]`, row `b` real up to `lengths[b]`), so
/// the file holds no meaningless numbers a reader might take for results.
fn zero_padding(logits: TensorData, lengths: &[usize]) -> anyhow::Result<TensorData> {
    let [b, t, v] = <[usize; 3]>::try_from(logits.shape.to_vec()).map_err(|s| anyhow::anyhow!("logits of rank {}", s.len()))?;
    if lengths.iter().all(|&l| l == t) {
        return Ok(logits);
    }
    let mut values: Vec<f32> = logits.into_vec::<f32>().map_err(|e| anyhow::anyhow!("logits: {e}"))?;
    for (row, &len) in lengths.iter().enumerate().take(b) {
        values[(row * t + len) * v..(row + 1) * t * v].fill(0.0);
    }
    Ok(TensorData::new(values, [b, t, v]))
}

fn generate_cmd<B: Backend>(device: B::Device, a: GenerateArgs) -> anyhow::Result<()> {
    let needs_tok = a.prompt.is_some() || !a.stop.is_empty();
    let tokenizer = if needs_tok || has_tokenizer(&a.model) {
        Some(std::sync::Arc::new(
            datasets::TextTokenizer::from_dir(&a.model).with_context(|| format!("tokenizer in {}", a.model.display()))?,
        ))
    } else {
        None
    };
    let prompt: Vec<u32> = match (&a.tokens, &a.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let tok = tokenizer.as_ref().expect("loaded for --prompt");
            let prompt = if a.chat {
                let mut msgs = Vec::new();
                if let Some(s) = &a.system {
                    msgs.push(inference::Message::system(s.clone()));
                }
                msgs.push(inference::Message::user(text.clone()));
                inference::Prompt::Messages(msgs)
            } else {
                inference::Prompt::Text(text.clone())
            };
            inference::text::prompt_ids(tok, &prompt)?
        }
        (None, None) => bail!("give --tokens or --prompt"),
    };
    let context = models::ModelConfig::from_dir(&a.model)?.max_position_embeddings;
    match prompt.len().checked_add(a.max_new_tokens) {
        Some(total) if total <= context => {}
        _ => bail!(
            "prompt ({} tokens) + --max-new-tokens {} exceeds the model's context (max_position_embeddings {context})",
            prompt.len(),
            a.max_new_tokens
        ),
    }
    let started = std::time::Instant::now();
    let loaded = models::load_model::<B>(&a.model, &device, a.dtype.dtype())?;
    let load_s = started.elapsed().as_secs_f64();
    let stop_ids = if a.ignore_eos {
        Vec::new()
    } else {
        inference::text::eos_ids(&loaded.generation.eos_token_ids, tokenizer.as_deref())
    };
    let temperature = if a.greedy { 0.0 } else { a.temperature.unwrap_or(0.0) };
    let params = SamplingParams {
        max_new_tokens: a.max_new_tokens,
        temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        stop_token_ids: stop_ids.clone(),
        ..Default::default()
    };
    let config = models::EngineConfig {
        max_batch: 1,
        max_seq_len: prompt.len() + a.max_new_tokens.max(1),
        ..Default::default()
    };
    let mut engine = models::Engine::new(&loaded.model, config);
    let id = engine.add_request(GenerationRequest::new(prompt.clone(), params))?;
    let gen_start = std::time::Instant::now();
    let mut first_token_s = None;
    let mut output = None;
    // The shared text layer: EOS dropped, incremental detokenisation, stop strings in linear time.
    let mut text_stream = inference::text::TextStream::new(stop_ids, &a.stop);
    let mut text = String::new();
    let mut new_ids: Vec<u32> = Vec::new();
    let stdout = std::io::stdout();
    'gen: while engine.has_work() {
        for ev in engine.step()? {
            first_token_s.get_or_insert(gen_start.elapsed().as_secs_f64());
            for &tid in &ev.new_tokens {
                new_ids.push(tid);
                let Some(tok) = &tokenizer else { continue };
                let step = text_stream.push(tok.as_ref(), tid)?;
                text.push_str(&step.text);
                if !a.json {
                    let mut out = stdout.lock();
                    write!(out, "{}", step.text)?;
                    out.flush()?;
                }
                if step.stopped {
                    engine.cancel(id);
                    break 'gen;
                }
            }
            if let Some(done) = ev.finished {
                output = Some(done.finish_reason);
            }
        }
    }
    let finish_reason = if text_stream.is_stopped() {
        inference::FinishReason::Stop
    } else {
        let engine_reason = output.context("generation produced no result")?;
        let tail = match &tokenizer {
            Some(tok) => text_stream.finish(tok.as_ref())?,
            None => Default::default(),
        };
        text.push_str(&tail.text);
        if !a.json {
            print!("{}", tail.text);
        }
        inference::text::finish_reason(tail.stopped, engine_reason)
    };
    let (prompt_tokens, completion_tokens) = (prompt.len(), new_ids.len());
    let total_s = gen_start.elapsed().as_secs_f64();
    let decode_tps = if completion_tokens > 1 {
        (completion_tokens - 1) as f64 / (total_s - first_token_s.unwrap_or(0.0)).max(1e-9)
    } else {
        0.0
    };
    if a.json {
        let v = serde_json::json!({
            "new_ids": new_ids,
            "text": text,
            "finish_reason": finish_reason.as_str(),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "prompt_ids": prompt,
            "load_seconds": load_s,
            "time_to_first_token_seconds": first_token_s,
            "decode_tokens_per_second": decode_tps,
        });
        println!("{v}");
    } else {
        if tokenizer.is_none() {
            print!("{}", new_ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
        }
        println!();
        eprintln!(
            "[{} prompt + {} new tokens, finish_reason={}, {:.2} tok/s decode, load {:.2}s]",
            prompt_tokens,
            completion_tokens,
            finish_reason.as_str(),
            decode_tps,
            load_s
        );
    }
    Ok(())
}

fn has_tokenizer(dir: &Path) -> bool {
    dir.join("tokenizer.json").exists()
}

/// Parses `1,2,3` into ids, naming the bad item on error.
fn parse_ids(s: &str) -> anyhow::Result<Vec<u32>> {
    s.split(',')
        .map(|x| x.trim().parse::<u32>().with_context(|| format!("--tokens {s:?}: `{x}` is not a token id")))
        .collect()
}
