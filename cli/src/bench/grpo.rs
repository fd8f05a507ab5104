//! `distill bench grpo`: one GRPO step on a small random-init Qwen shape, split the way a real
//! step spends its time: rollouts (P prompts × G completions sampled by the native engine),
//! scoring (the old-logprob pass at the temperature) and training (forward, backward, AdamW),
//! with tokens/s of each. The training part drives the real trainer (`student::train_grpo` on
//! the sampled rollouts written as a rollouts file), so what is timed is what
//! `distill student grpo` does per step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use models::{GenerationRequest, SamplingParams};

use crate::backend::DeviceKind;
use crate::with_backend;

/// Arguments of `distill bench grpo`.
#[derive(clap::Args, Debug)]
pub struct GrpoBenchArgs {
    /// Hidden size.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Key/value heads (GQA).
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// MLP intermediate size.
    #[arg(long, default_value_t = 704)]
    intermediate: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 32000)]
    vocab: usize,
    /// Prompts (groups) per step.
    #[arg(long, default_value_t = 4)]
    prompts: usize,
    /// Completions per prompt (G).
    #[arg(long, default_value_t = 4)]
    generations: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    /// Completion length in tokens (no stop token: every completion runs to it).
    #[arg(long, default_value_t = 128)]
    completion_len: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Scratch directory (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const SEED: u64 = 7;

fn arch(a: &GrpoBenchArgs) -> serde_json::Value {
    serde_json::json!({
        "model_type": "qwen2", "vocab_size": a.vocab, "hidden_size": a.hidden,
        "intermediate_size": a.intermediate, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "max_position_embeddings": 4096, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": false
    })
}

/// Samples the step's rollouts with the policy the trainer will build (same arch and seed)
/// and writes them as a rollouts file. Returns (seconds, completion tokens).
fn rollouts<B: Backend>(device: B::Device, a: &GrpoBenchArgs, path: &Path) -> anyhow::Result<(f64, usize)> {
    let config = models::ModelConfig::from_value(arch(a), Path::new("<bench arch>"))?;
    let model = models::random_model::<B>(&config, &device, models::DType::F32, 0.02, SEED)?;
    let mut requests = Vec::new();
    let mut rng = super::ids::TokenRng::new(0x9e37_79b9_7f4a_7c15);
    let mut prompts = Vec::new();
    for _ in 0..a.prompts {
        let p = rng.ids(a.prompt_len, a.vocab);
        for j in 0..a.generations {
            let params = SamplingParams {
                max_new_tokens: a.completion_len,
                temperature: 1.0,
                seed: (prompts.len() * a.generations + j) as u64,
                ..Default::default()
            };
            requests.push(GenerationRequest::new(p.clone(), params));
        }
        prompts.push(p);
    }
    let t = Instant::now();
    let outs = models::generate_requests(&model, requests, usize::MAX)?;
    let secs = t.elapsed().as_secs_f64();
    let mut text = String::new();
    let mut tokens = 0;
    for (i, o) in outs.iter().enumerate() {
        tokens += o.new_ids.len();
        let row = serde_json::json!({
            "group": i / a.generations, "prompt_ids": prompts[i / a.generations],
            "completion_ids": o.new_ids, "reward": (i % 2) as f64,
        });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| path.display().to_string())?;
    Ok((secs, tokens))
}

fn train<B: Backend>(device: B::Device, cfg: &student::GrpoConfig) -> anyhow::Result<()> {
    // the bench's own scratch run: a rerun with the same --work-dir replaces it
    let opts = student::RunOptions { overwrite: true, ..Default::default() };
    student::train_grpo::<Autodiff<B>>(cfg, &device, &opts).context("bench GRPO step")?;
    Ok(())
}

/// Runs the benchmark and prints the figures.
pub fn run(a: GrpoBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile_dir(a.work_dir.as_deref())?;
    let file = tmp.join("rollouts.jsonl");
    let (gen_s, completion_tokens) = with_backend!(a.device, rollouts(&a, &file))?;
    let arch_toml = toml::to_string(&toml::Value::try_from(arch(&a))?)?;
    let text = format!(
        "[model]\ninit = \"random\"\n[model.arch]\n{arch_toml}\n[rollouts]\nfile = {file:?}\n[grpo]\nnum_generations = {g}\n\
         max_completion_length = {c}\nmicro_batch_tokens = 0\n[train]\nmax_steps = 1\nseed = {SEED}\n[output]\ndir = {out:?}\n",
        file = file.display().to_string(),
        g = a.generations,
        c = a.completion_len,
        out = tmp.join("run").display().to_string(),
    );
    let cfg = student::GrpoConfig::from_toml_str(&text, &[], "bench", None)?;
    with_backend!(a.device, train(&cfg))?;
    let m = student::grpo::read_grpo_metrics(&tmp.join("run"))?;
    let m = m.first().context("no metrics line")?;
    let seq_tokens = (a.prompts * a.generations * a.prompt_len + completion_tokens) as f64;
    let total = gen_s + m.score_s + m.train_s;
    println!(
        "grpo step ({} prompts × {} completions, {} + {} tokens, hidden {} × {} layers, vocab {}):",
        a.prompts, a.generations, a.prompt_len, a.completion_len, a.hidden, a.layers, a.vocab
    );
    println!("  rollout  {:8.1} completion tok/s  {:7.2}s  {:5.1}%", completion_tokens as f64 / gen_s, gen_s, 100.0 * gen_s / total);
    println!("  score    {:8.1} tok/s             {:7.2}s  {:5.1}%", seq_tokens / m.score_s, m.score_s, 100.0 * m.score_s / total);
    println!("  train    {:8.1} tok/s             {:7.2}s  {:5.1}%", seq_tokens / m.train_s, m.train_s, 100.0 * m.train_s / total);
    if a.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn tempfile_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("distill-bench-grpo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    Ok(dir)
}
