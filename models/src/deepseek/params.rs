//! Parameter and memory accounting from the config alone (no weights needed), so
//! `distill model info` can tell users what fits where before downloading 700 GB.

use std::fmt;

use super::config::DeepseekV3Config;

/// Parameter counts and memory of a DeepSeek-V3 shape. MTP layers are not counted (they are
/// not loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamReport {
    /// Every parameter of the loaded model (router correction biases included).
    pub total: u64,
    /// Parameters one token passes through: everything except the routed experts it did not
    /// choose (`num_experts_per_tok` of `n_routed_experts` per MoE layer).
    pub active_per_token: u64,
    /// `embed_tokens` + `lm_head` (once if tied).
    pub embeddings: u64,
    /// All MLA projections and their norms.
    pub attention: u64,
    /// Dense MLPs of the first layers.
    pub dense_mlp: u64,
    /// All routed experts of all MoE layers.
    pub routed_experts: u64,
    /// Shared experts.
    pub shared_experts: u64,
    /// Router matrices and correction biases.
    pub router: u64,
    /// Layer norms and the final norm.
    pub norms: u64,
    /// Number of MoE layers.
    pub moe_layers: usize,
    /// Weights in bf16.
    pub bytes_bf16: u64,
    /// Weights in DeepSeek's FP8 layout: decoder projection matrices as e4m3 plus one f32
    /// `weight_scale_inv` per 128×128 block; embeddings, lm_head, router and norms in bf16.
    pub bytes_fp8: u64,
    /// MLA latent KV cache per token, all layers, bf16.
    pub kv_bytes_per_token_bf16: u64,
    /// What an expanded (per-head K/V) cache would need per token, bf16.
    pub expanded_kv_bytes_per_token_bf16: u64,
}

struct Acc {
    params: u64,
    fp8_bytes: u64,
}

impl Acc {
    /// A decoder projection `[out, in]`: FP8 with block scales in DeepSeek's checkpoints.
    fn quantised(&mut self, out: usize, inp: usize) -> u64 {
        let n = (out * inp) as u64;
        self.params += n;
        self.fp8_bytes += n + 4 * (out.div_ceil(128) * inp.div_ceil(128)) as u64;
        n
    }
    /// A tensor kept in bf16 even in FP8 checkpoints.
    fn plain(&mut self, n: usize) -> u64 {
        self.params += n as u64;
        self.fp8_bytes += 2 * n as u64;
        n as u64
    }
}

/// Computes the [`ParamReport`] of a config.
pub fn deepseek_param_report(c: &DeepseekV3Config) -> ParamReport {
    let mut acc = Acc { params: 0, fp8_bytes: 0 };
    let (hid, h) = (c.hidden_size, c.num_attention_heads);
    let qk = c.qk_head_dim();
    let bias = |n: usize| if c.attention_bias { n } else { 0 };
    let mut r = ParamReport {
        total: 0,
        active_per_token: 0,
        embeddings: 0,
        attention: 0,
        dense_mlp: 0,
        routed_experts: 0,
        shared_experts: 0,
        router: 0,
        norms: 0,
        moe_layers: 0,
        bytes_bf16: 0,
        bytes_fp8: 0,
        kv_bytes_per_token_bf16: 0,
        expanded_kv_bytes_per_token_bf16: 0,
    };
    r.embeddings += acc.plain(c.vocab_size * hid);
    if !c.tie_word_embeddings {
        r.embeddings += acc.plain(c.vocab_size * hid);
    }
    r.norms += acc.plain(hid);
    let expert = |acc: &mut Acc, inter: usize| {
        acc.quantised(inter, hid) + acc.quantised(inter, hid) + acc.quantised(hid, inter)
    };
    let mut one_expert = 0;
    for i in 0..c.num_hidden_layers {
        r.norms += acc.plain(2 * hid);
        let mut a = 0;
        match c.q_lora_rank {
            Some(q) => {
                a += acc.quantised(q, hid) + acc.plain(bias(q));
                r.norms += acc.plain(q);
                a += acc.quantised(h * qk, q);
            }
            None => a += acc.quantised(h * qk, hid),
        }
        a += acc.quantised(c.kv_lora_rank + c.qk_rope_head_dim, hid)
            + acc.plain(bias(c.kv_lora_rank + c.qk_rope_head_dim));
        r.norms += acc.plain(c.kv_lora_rank);
        a += acc.quantised(h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
        a += acc.quantised(hid, h * c.v_head_dim) + acc.plain(bias(hid));
        r.attention += a;
        if c.is_moe_layer(i) {
            r.moe_layers += 1;
            r.router += acc.plain(c.n_routed_experts * hid);
            if c.topk_method == super::config::TopkMethod::NoauxTc {
                r.router += acc.plain(c.n_routed_experts);
            }
            for _ in 0..c.n_routed_experts {
                one_expert = expert(&mut acc, c.moe_intermediate_size);
                r.routed_experts += one_expert;
            }
            if c.n_shared_experts > 0 {
                r.shared_experts += expert(&mut acc, c.moe_intermediate_size * c.n_shared_experts);
            }
        } else {
            r.dense_mlp += expert(&mut acc, c.intermediate_size);
        }
    }
    r.total = acc.params;
    let inactive = r.moe_layers as u64
        * (c.n_routed_experts.saturating_sub(c.num_experts_per_tok)) as u64
        * one_expert;
    r.active_per_token = r.total - inactive;
    r.bytes_bf16 = 2 * r.total;
    r.bytes_fp8 = acc.fp8_bytes;
    let layers = c.num_hidden_layers as u64;
    r.kv_bytes_per_token_bf16 = 2 * layers * (c.kv_lora_rank + c.qk_rope_head_dim) as u64;
    r.expanded_kv_bytes_per_token_bf16 = 2 * layers * (h * (qk + c.v_head_dim)) as u64;
    r
}

fn human(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}B", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2}M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}K", f / 1e3)
    } else {
        n.to_string()
    }
}

fn gib(b: u64) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.2} GiB")
    } else {
        format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

impl fmt::Display for ParamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "parameters (total):        {} ({})", human(self.total), self.total)?;
        writeln!(f, "parameters (active/token): {} ({})", human(self.active_per_token), self.active_per_token)?;
        writeln!(
            f,
            "  embeddings {}  attention {}  dense MLP {}  routed experts {}  shared experts {}  router {}  norms {}",
            human(self.embeddings),
            human(self.attention),
            human(self.dense_mlp),
            human(self.routed_experts),
            human(self.shared_experts),
            human(self.router),
            human(self.norms)
        )?;
        writeln!(f, "MoE layers:                {}", self.moe_layers)?;
        writeln!(f, "weights at bf16:           {}", gib(self.bytes_bf16))?;
        writeln!(f, "weights at FP8 (e4m3+128x128 scales): {}", gib(self.bytes_fp8))?;
        write!(
            f,
            "KV cache per token (bf16): {} B latent (MLA) vs {} B expanded K/V ({:.1}x smaller)",
            self.kv_bytes_per_token_bf16,
            self.expanded_kv_bytes_per_token_bf16,
            self.expanded_kv_bytes_per_token_bf16 as f64 / self.kv_bytes_per_token_bf16.max(1) as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DeepSeek-V3's published config: 671B total (without the 14B MTP module), 37B active.
    #[test]
    fn deepseek_v3_full_size_matches_the_paper() {
        let json = serde_json::json!({
            "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168,
            "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
            "num_attention_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
            "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
            "n_routed_experts": 256, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
            "n_shared_experts": 1, "first_k_dense_replace": 3, "moe_layer_freq": 1,
            "routed_scaling_factor": 2.5, "norm_topk_prob": true, "scoring_func": "sigmoid",
            "topk_method": "noaux_tc", "rope_theta": 10000, "max_position_embeddings": 163840,
            "rope_scaling": {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1,
                "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096},
            "num_nextn_predict_layers": 1, "tie_word_embeddings": false
        });
        let c = DeepseekV3Config::from_value(&json, std::path::Path::new("config.json")).unwrap();
        let r = deepseek_param_report(&c);
        let b = |x: u64| x as f64 / 1e9;
        assert!((b(r.total) - 671.0).abs() < 1.0, "total {}", b(r.total));
        assert!((b(r.active_per_token) - 37.5).abs() < 1.0, "active {}", b(r.active_per_token));
        assert_eq!(r.kv_bytes_per_token_bf16, 2 * 61 * 576);
        // The FP8 checkpoint is ~690 GB on the hub including MTP.
        assert!(r.bytes_fp8 < r.bytes_bf16 / 2 + r.bytes_bf16 / 50);
    }
}
