//! `distill bench mla`: decode speed and KV-cache bytes per token of a small DeepSeek-V3 shape
//! with MLA's latent cache (weight-absorbed decode) against the same model with an expanded
//! per-head K/V cache, plus the latent cache without absorption (up-projecting every cached
//! latent at each step) to show why absorption matters. Random weights; same prompts and
//! greedy tokens for every variant.

use std::time::Instant;

use burn::prelude::*;
use models::deepseek::{DeepseekV3ForCausalLM, KvLayout, MlaCache};
use models::{CachedInput, CausalLm, KvCache, RandomWeights};

use crate::backend::DeviceKind;
use crate::with_backend;

/// Arguments of `distill bench mla`.
#[derive(clap::Args, Debug)]
pub struct MlaBenchArgs {
    /// Tokens already in the cache when decoding starts (prefilled, not timed).
    #[arg(long, default_value_t = 1024)]
    context: usize,
    /// Greedy tokens timed per sequence.
    #[arg(long, default_value_t = 16)]
    decode_tokens: usize,
    /// Decode batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    batches: Vec<usize>,
    /// Decoder layers of the benchmark shape.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
    /// Print one JSON object with all figures as the last line.
    #[arg(long)]
    json: bool,
}

/// A DeepSeek-V3 shape scaled down (hidden 1024, 16 heads, MLA ranks 384/256, 16 experts
/// top-2 in 4 groups, 1 shared) with DeepSeek's head dims ratio (nope 64 + rope 32, v 64).
fn small_deepseek(layers: usize, context: usize) -> anyhow::Result<models::ModelConfig> {
    let v = serde_json::json!({
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "vocab_size": 8192, "hidden_size": 1024, "intermediate_size": 2816,
        "moe_intermediate_size": 352, "num_hidden_layers": layers, "num_attention_heads": 16,
        "num_key_value_heads": 16, "q_lora_rank": 384, "kv_lora_rank": 256,
        "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "n_routed_experts": 16, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
        "n_shared_experts": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "routed_scaling_factor": 2.5, "norm_topk_prob": true, "scoring_func": "sigmoid",
        "topk_method": "noaux_tc", "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
        "max_position_embeddings": (context + 4096).max(4096),
        "tie_word_embeddings": false, "torch_dtype": "float32", "bos_token_id": 0, "eos_token_id": 1
    });
    Ok(models::ModelConfig::from_value(v, std::path::Path::new("<small deepseek-v3 shape>"))?)
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    variant: &'static str,
    batch: usize,
    decode_tokens_per_s: f64,
    kv_bytes_per_token: usize,
    kv_cache_mib: f64,
}

fn argmax_rows(logits: Vec<f32>, vocab: usize) -> Vec<i64> {
    logits
        .chunks(vocab)
        .map(|r| r.iter().enumerate().fold((0usize, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as i64)
        .collect()
}

fn run_variant<B: Backend>(
    model: &DeepseekV3ForCausalLM<B>,
    layout: KvLayout,
    absorb: bool,
    batch: usize,
    a: &MlaBenchArgs,
) -> anyhow::Result<(f64, MlaCache<B>)> {
    let device = model.device();
    let vocab = model.config.vocab_size;
    let mut cache = model.new_cache_with_layout(batch, a.context + a.decode_tokens, layout);
    let slots: Vec<usize> = (0..batch).collect();
    // Prefill in chunks (not timed): deterministic ids.
    let chunk = 256;
    let mut last = vec![0i64; batch];
    let mut p = 0;
    while p < a.context {
        let t = chunk.min(a.context - p);
        let ids: Vec<i64> = (0..batch * t).map(|i| ((i * 7919 + p * 31) % (vocab - 2) + 2) as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, t]), &device);
        let h = model.forward_cached_with(CachedInput { input_ids: ids, slots: slots.clone(), lengths: None }, &mut cache, false)?;
        let logits = model.logits(h.narrow(1, t - 1, 1));
        last = argmax_rows(logits.into_data().iter::<f32>().collect(), vocab);
        p += t;
    }
    B::sync(&device).map_err(|e| anyhow::anyhow!("device sync: {e:?}"))?;
    let start = Instant::now();
    for _ in 0..a.decode_tokens {
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(last.clone(), [batch, 1]), &device);
        let h = model.forward_cached_with(CachedInput { input_ids: ids, slots: slots.clone(), lengths: None }, &mut cache, absorb)?;
        last = argmax_rows(model.logits(h).into_data().iter::<f32>().collect(), vocab);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(((batch * a.decode_tokens) as f64 / secs, cache))
}

fn bench<B: Backend>(device: B::Device, a: MlaBenchArgs) -> anyhow::Result<()> {
    let cfg = small_deepseek(a.layers, a.context)?;
    B::seed(&device, 7);
    let mut w = RandomWeights::<B>::new(&device, models::DType::F32, 0.02, false);
    let model = DeepseekV3ForCausalLM::<B>::load(&cfg, &mut w)?;
    let report = models::deepseek::deepseek_param_report(&model.config);
    eprintln!(
        "shape: {} layers, hidden 1024, 16 heads, kv_lora_rank 256 + rope 32 vs expanded 16×(96+64); {} params ({} active/token); context {} + {} decode tokens",
        a.layers, report.total, report.active_per_token, a.context, a.decode_tokens
    );
    let variants = [
        ("mla-latent-absorbed", KvLayout::Latent, true),
        ("mla-latent-upproject", KvLayout::Latent, false),
        ("expanded-kv", KvLayout::Expanded, false),
    ];
    let mut rows = Vec::new();
    for &batch in &a.batches {
        for &(name, layout, absorb) in &variants {
            let (tps, cache) = run_variant(&model, layout, absorb, batch, &a)?;
            rows.push(Row {
                variant: name,
                batch,
                decode_tokens_per_s: tps,
                kv_bytes_per_token: cache.bytes_per_token(),
                kv_cache_mib: cache.bytes() as f64 / (1 << 20) as f64,
            });
        }
    }
    println!("{:<22} {:>5} {:>14} {:>16} {:>14}", "variant", "batch", "decode tok/s", "KV bytes/token", "KV cache MiB");
    for r in &rows {
        println!(
            "{:<22} {:>5} {:>14.1} {:>16} {:>14.1}",
            r.variant, r.batch, r.decode_tokens_per_s, r.kv_bytes_per_token, r.kv_cache_mib
        );
    }
    let lat = rows.iter().find(|r| r.variant == "mla-latent-absorbed").map(|r| r.kv_bytes_per_token).unwrap_or(1);
    let exp = rows.iter().find(|r| r.variant == "expanded-kv").map(|r| r.kv_bytes_per_token).unwrap_or(1);
    println!("MLA latent cache is {:.1}x smaller per token than expanded K/V", exp as f64 / lat as f64);
    if a.json {
        println!("{}", serde_json::json!({"bench": "mla", "context": a.context, "decode_tokens": a.decode_tokens, "rows": rows}));
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(a: MlaBenchArgs) -> anyhow::Result<()> {
    let kind = a.device;
    with_backend!(kind, bench(a))
}
