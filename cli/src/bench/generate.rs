//! `distill bench generate`: prefill and decode speed of the native engine on a
//! Qwen2.5-0.5B-shaped model with random weights, next to transformers/PyTorch running the
//! same shape on the same machine (`benches/generate_transformers.py`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::prelude::*;
use models::{Engine, EngineConfig, GenerationRequest, SamplingParams};

use crate::backend::DeviceKind;
use crate::with_backend;

/// Arguments of `distill bench generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateBenchArgs {
    /// Prompt tokens for the prefill measurement.
    #[arg(long, default_value_t = 512)]
    prompt_len: usize,
    /// Prompt tokens of each sequence in the decode measurements.
    #[arg(long, default_value_t = 32)]
    decode_prompt_len: usize,
    /// Greedy tokens timed per sequence in the decode measurements.
    #[arg(long, default_value_t = 16)]
    decode_tokens: usize,
    /// Decode batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batches: Vec<usize>,
    /// Decoder layers (24 = Qwen2.5-0.5B; fewer for a quick smoke run).
    #[arg(long, default_value_t = 24)]
    layers: usize,
    /// Python interpreter with torch + transformers for the peer run.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The peer script.
    #[arg(long, default_value = "benches/generate_transformers.py")]
    peer_script: PathBuf,
    /// Skip the transformers run.
    #[arg(long)]
    no_peer: bool,
    /// Disable the dedicated CPU decode GEMV (plain flex `matmul`), to see what it buys.
    #[arg(long)]
    matmul_only: bool,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
    /// Print one JSON object with both sides as the last line.
    #[arg(long)]
    json: bool,
}

/// What one side measured.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Figures {
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: std::collections::BTreeMap<String, f64>,
    peak_rss_mb: f64,
}

fn qwen25_05b(layers: usize) -> anyhow::Result<models::ModelConfig> {
    let v = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": layers, "num_attention_heads": 14, "num_key_value_heads": 2,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": true, "torch_dtype": "float32", "bos_token_id": 151643, "eos_token_id": 151643
    });
    Ok(models::ModelConfig::from_value(v, std::path::Path::new("<qwen2.5-0.5b shape>"))?)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn ours<B: Backend>(device: B::Device, a: &GenerateBenchArgs) -> anyhow::Result<Figures> {
    let cfg = qwen25_05b(a.layers)?;
    let t0 = Instant::now();
    let model = models::random_model::<B>(&cfg, &device, models::DType::F32, 0.02, 0)?;
    eprintln!("ours: built {:.3} B-param model in {:.1}s", model.param_count() as f64 / 1e9, t0.elapsed().as_secs_f64());
    let mut rng = super::ids::TokenRng::new(0x9e37_79b9_7f4a_7c15);
    let vocab = cfg.vocab_size;
    let mut figures = Figures::default();

    // Prefill: one request, the step that prefills it and samples its first token.
    let prefill = |prompt: Vec<u32>| -> anyhow::Result<f64> {
        let cfg = EngineConfig { max_batch: 1, max_seq_len: prompt.len() + 2, prefill_chunk: prompt.len() };
        let mut engine = Engine::new(&model, cfg);
        engine.add_request(GenerationRequest::new(prompt, SamplingParams::greedy(1, vec![])))?;
        let t = Instant::now();
        engine.step()?;
        Ok(t.elapsed().as_secs_f64())
    };
    prefill(rng.ids(16, vocab))?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..2 {
        best = best.min(prefill(rng.ids(a.prompt_len, vocab))?);
    }
    figures.prefill_tokens_per_s = a.prompt_len as f64 / best;
    eprintln!("ours: prefill {} tokens: {:.1} tok/s", a.prompt_len, figures.prefill_tokens_per_s);

    for &b in &a.batches {
        let cfg = EngineConfig { max_batch: b, max_seq_len: a.decode_prompt_len + a.decode_tokens + 2, ..Default::default() };
        let mut engine = Engine::new(&model, cfg);
        for _ in 0..b {
            let p = rng.ids(a.decode_prompt_len, vocab);
            engine.add_request(GenerationRequest::new(p, SamplingParams::greedy(a.decode_tokens + 1, vec![])))?;
        }
        engine.step()?; // prefill all + first tokens
        let t = Instant::now();
        let mut tokens = 0usize;
        while engine.has_work() {
            tokens += engine.step()?.iter().map(|e| e.new_tokens.len()).sum::<usize>();
        }
        let tps = tokens as f64 / t.elapsed().as_secs_f64();
        eprintln!("ours: decode batch {b}: {tps:.2} tok/s ({tokens} tokens)");
        figures.decode_tokens_per_s.insert(b.to_string(), tps);
    }
    figures.peak_rss_mb = peak_rss_mb();
    Ok(figures)
}

fn peer(a: &GenerateBenchArgs) -> Result<Figures, String> {
    let batches = a.batches.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let out = std::process::Command::new(&a.python)
        .arg(&a.peer_script)
        .args(["--prompt-len", &a.prompt_len.to_string()])
        .args(["--decode-prompt-len", &a.decode_prompt_len.to_string()])
        .args(["--decode-tokens", &a.decode_tokens.to_string()])
        .args(["--batches", &batches])
        .args(["--layers", &a.layers.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run {} {}: {e}", a.python, a.peer_script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(last).map_err(|_| format!("peer printed no JSON ({})", out.status))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    serde_json::from_value(v).map_err(|e| format!("peer JSON: {e}"))
}

/// Runs the benchmark and prints ours next to transformers.
pub fn run(a: GenerateBenchArgs) -> anyhow::Result<()> {
    models::backend_ext::set_gemv_enabled(!a.matmul_only);
    let kind = a.device;
    let ours = with_backend!(kind, ours(&a)).context("native run")?;
    let peer = if a.no_peer { Err("skipped (--no-peer)".to_string()) } else { peer(&a) };
    let fmt = |x: Option<f64>| x.map(|v| format!("{v:>10.2}")).unwrap_or_else(|| format!("{:>10}", "n/a"));
    let p = peer.as_ref().ok();
    println!("Qwen2.5-0.5B shape ({} layers), random weights, f32, {}", a.layers, a.device);
    println!("{:<34}{:>10}{:>14}{:>8}", "metric", "distill", "transformers", "ratio");
    let row = |name: String, ours: f64, theirs: Option<f64>| {
        let ratio = theirs.filter(|t| *t > 0.0).map(|t| format!("{:>7.2}x", ours / t)).unwrap_or_else(|| format!("{:>8}", "-"));
        println!("{name:<34}{}{:>12}  {ratio}", fmt(Some(ours)), fmt(theirs).trim());
    };
    row(format!("prefill {} tok (tok/s)", a.prompt_len), ours.prefill_tokens_per_s, p.map(|p| p.prefill_tokens_per_s));
    for (b, v) in &ours.decode_tokens_per_s {
        row(format!("decode batch {b} (tok/s)"), *v, p.and_then(|p| p.decode_tokens_per_s.get(b).copied()));
    }
    println!("{:<34}{}{:>12}", "peak RSS (MB)", fmt(Some(ours.peak_rss_mb)), fmt(p.map(|p| p.peak_rss_mb)).trim());
    if let Err(e) = &peer {
        println!("transformers: {e}");
        println!("(install the peer: see the header of {})", a.peer_script.display());
    }
    if a.json {
        let v = serde_json::json!({ "distill": ours, "transformers": p, "peer_error": peer.as_ref().err() });
        println!("{v}");
    }
    Ok(())
}
