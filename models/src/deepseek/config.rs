//! `DeepseekV3Config`: the hub `config.json` of `DeepseekV3ForCausalLM` checkpoints
//! (DeepSeek-V3/R1, Moonlight, tiny research MoEs), parsed into the values the Burn model needs.
//!
//! The keys are deserialized by serde: the shared ones into [`CommonConfig`], the MLA/MoE ones
//! into [`DeepseekV3Parts`] (see `crate::hf_config` for the hub quirks: nulls, unknown keys,
//! `rope_parameters`, scalar-or-list ids; type errors name the key path). Every field the
//! architecture *depends on* is then checked for consistency in
//! [`DeepseekV3Config::validate`], which names the offending key.

use std::path::Path;

use serde::Deserialize;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::hf_config::{parse, required, CommonConfig};

/// How the router turns logits into expert scores (`scoring_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoringFunc {
    /// DeepSeek-V3/R1, Moonlight: independent per-expert sigmoid.
    #[default]
    Sigmoid,
    /// DeepSeek-V2 style softmax over all experts.
    Softmax,
}

/// How experts are picked from the scores (`topk_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TopkMethod {
    /// DeepSeek-V3: scores + `e_score_correction_bias` for selection, group score = sum of the
    /// top-2 experts of the group, keep `topk_group` groups, top-k among their experts.
    #[default]
    NoauxTc,
    /// Plain top-k over all experts (no groups, no bias).
    Greedy,
    /// DeepSeek-V2: group score = best expert of the group, then top-k among kept groups.
    GroupLimitedGreedy,
}

/// DeepSeek's YaRN parameters (`rope_scaling` with `type`/`rope_type` = `yarn`).
#[derive(Clone, Debug, PartialEq)]
pub struct YarnScaling {
    /// `factor` as written (40 for DeepSeek-V3): the softmax-scale correction uses it.
    pub factor: f64,
    /// Factor the frequency ramp and cos/sin magnitude use (= `factor`; kept separate so a
    /// caller can model implementations that derive it from the context lengths).
    pub rope_factor: f64,
    /// Fast boundary of the frequency ramp, in rotations (default 32).
    pub beta_fast: f64,
    /// Slow boundary of the frequency ramp, in rotations (default 1).
    pub beta_slow: f64,
    /// `mscale` for the cos/sin magnitude (absent = `None`, as transformers distinguishes).
    pub mscale: Option<f64>,
    /// `mscale_all_dim`: the cos/sin divisor and the softmax-scale correction.
    pub mscale_all_dim: Option<f64>,
    /// Context length the model was pre-trained with (ramp boundaries are computed from it).
    pub original_max_position_embeddings: usize,
}

/// Every architecture parameter of a DeepSeek-V3 checkpoint, with HF names.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepseekV3Config {
    /// Vocabulary size (rows of `embed_tokens` and `lm_head`).
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// Dense MLP width (layers `< first_k_dense_replace`).
    pub intermediate_size: usize,
    /// Width of each routed expert and, times `n_shared_experts`, of the shared expert.
    pub moe_intermediate_size: usize,
    /// Decoder layers (excluding MTP layers).
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Rank of the query compression; `None` means a plain `q_proj`.
    pub q_lora_rank: Option<usize>,
    /// Rank of the compressed KV latent: what the KV cache stores per token.
    pub kv_lora_rank: usize,
    /// Per-head query/key dims without rotary position.
    pub qk_nope_head_dim: usize,
    /// Rotary dims (one key head shared by all query heads).
    pub qk_rope_head_dim: usize,
    /// Per-head value dims (differs from the qk head dim).
    pub v_head_dim: usize,
    /// Routed experts per MoE layer (0 = dense model).
    pub n_routed_experts: usize,
    /// Experts each token is sent to.
    pub num_experts_per_tok: usize,
    /// Expert groups for group-limited routing.
    pub n_group: usize,
    /// Groups each token may choose from.
    pub topk_group: usize,
    /// Normalise the chosen weights to sum 1 before scaling.
    pub norm_topk_prob: bool,
    /// Multiplier on the routed output.
    pub routed_scaling_factor: f64,
    /// Shared experts (fused into one MLP of width `moe_intermediate_size · n`), 0 for none.
    pub n_shared_experts: usize,
    /// Leading dense layers.
    pub first_k_dense_replace: usize,
    /// Every `moe_layer_freq`-th layer after the dense ones is MoE.
    pub moe_layer_freq: usize,
    /// Router score function.
    pub scoring_func: ScoringFunc,
    /// Router selection method.
    pub topk_method: TopkMethod,
    /// DeepSeek's pairwise-interleaved rotary layout (default true).
    pub rope_interleave: bool,
    /// Rotary base.
    pub rope_theta: f64,
    /// YaRN scaling, if any.
    pub rope_scaling: Option<YarnScaling>,
    /// Positions the model supports (after YaRN extension).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Biases on `q_a_proj`/`kv_a_proj_with_mqa`/`o_proj`.
    pub attention_bias: bool,
    /// `lm_head` shares `embed_tokens`.
    pub tie_word_embeddings: bool,
    /// Multi-token-prediction layers stored after the decoder layers (skipped on load).
    pub num_nextn_predict_layers: usize,
    /// BOS id(s) from config.json, if any.
    pub bos_token_id: Option<u32>,
    /// EOS ids from config.json (a number or a list on the hub).
    pub eos_token_ids: Vec<u32>,
}

/// The DeepSeek-V3-only keys of `config.json` (MLA + MoE); the shared keys are
/// [`CommonConfig`]. Absent or `null` optional keys take the defaults documented on
/// [`DeepseekV3Config`]'s construction in [`DeepseekV3Config::from_value`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeepseekV3Parts {
    /// Routed expert width (default `intermediate_size`).
    pub moe_intermediate_size: Option<usize>,
    /// Query compression rank (`None` = plain `q_proj`).
    pub q_lora_rank: Option<usize>,
    /// KV latent rank. Required.
    pub kv_lora_rank: Option<usize>,
    /// Non-rotary qk head dims. Required.
    pub qk_nope_head_dim: Option<usize>,
    /// Rotary qk head dims. Required.
    pub qk_rope_head_dim: Option<usize>,
    /// Value head dims. Required.
    pub v_head_dim: Option<usize>,
    /// Routed experts (default 0 = dense).
    pub n_routed_experts: Option<usize>,
    /// Experts per token (default 0).
    pub num_experts_per_tok: Option<usize>,
    /// Expert groups (default 1).
    pub n_group: Option<usize>,
    /// Groups per token (default 1).
    pub topk_group: Option<usize>,
    /// Normalise chosen weights (default true).
    pub norm_topk_prob: Option<bool>,
    /// Routed output multiplier (default 1).
    pub routed_scaling_factor: Option<f64>,
    /// Shared experts (default 0).
    pub n_shared_experts: Option<usize>,
    /// Leading dense layers (default 0).
    pub first_k_dense_replace: Option<usize>,
    /// MoE layer period (default 1).
    pub moe_layer_freq: Option<usize>,
    /// Router score function (default sigmoid).
    pub scoring_func: Option<ScoringFunc>,
    /// Router selection (default noaux_tc).
    pub topk_method: Option<TopkMethod>,
    /// Interleaved rotary layout (default true).
    pub rope_interleave: Option<bool>,
    /// MTP layers after the decoder (default 0).
    pub num_nextn_predict_layers: Option<usize>,
}

/// DeepSeek's reading of `rope_parameters` (preferred, transformers ≥ 5) / `rope_scaling`:
/// (theta override, YaRN). A YaRN `original_max_position_embeddings` that is absent falls
/// back to `max_position_embeddings`.
fn yarn_of(c: &CommonConfig, path: &Path) -> Result<(Option<f64>, Option<YarnScaling>), ModelError> {
    let Some(r) = c.rope_parameters.as_ref().or(c.rope_scaling.as_ref()) else { return Ok((None, None)) };
    match r.kind() {
        "default" => Ok((r.rope_theta, None)),
        "yarn" => {
            let factor = required(r.factor, path, "rope_scaling.factor")?;
            let original = match (r.original_max_position_embeddings, c.max_position_embeddings) {
                (Some(o), _) if o > 0.0 => o as usize,
                (None, Some(m)) => m,
                _ => {
                    return Err(ModelError::MissingKey {
                        path: path.to_path_buf(),
                        key: "rope_scaling.original_max_position_embeddings".into(),
                    })
                }
            };
            // The ramp uses `factor` as written, as DeepSeek's reference code does
            // (transformers 4.x substituted max_position_embeddings / original, equal in every
            // DeepSeek release).
            let yarn = YarnScaling {
                factor,
                rope_factor: factor,
                beta_fast: r.beta_fast.unwrap_or(32.0),
                beta_slow: r.beta_slow.unwrap_or(1.0),
                mscale: r.mscale,
                mscale_all_dim: r.mscale_all_dim,
                original_max_position_embeddings: original,
            };
            Ok((r.rope_theta, Some(yarn)))
        }
        other => Err(ModelError::BadValue {
            path: path.to_path_buf(),
            key: "rope_scaling".into(),
            message: format!("type {other:?} is not supported for deepseek_v3 (default, yarn)"),
        }),
    }
}

impl DeepseekV3Config {
    /// Reads and validates a `config.json`; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Json { path: path.to_path_buf(), message: e.to_string() })?;
        Self::from_value(&v, path)
    }

    /// Reads the DeepSeek keys from the raw JSON that [`ModelConfig`] keeps.
    pub fn from_model_config(cfg: &ModelConfig) -> Result<Self, ModelError> {
        Self::from_value(&cfg.raw, Path::new("config.json"))
    }

    /// Parses config.json (both `rope_scaling` and transformers-5 `rope_parameters`);
    /// `path` is only used in error messages.
    pub fn from_value(value: &serde_json::Value, path: &Path) -> Result<Self, ModelError> {
        let bad = |key: &str, message: String| ModelError::BadValue {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let c: CommonConfig = parse(value, path)?;
        let p: DeepseekV3Parts = parse(value, path)?;
        if let Some(mt) = &c.model_type {
            if mt != "deepseek_v3" {
                return Err(bad("model_type", format!("{mt:?}, expected \"deepseek_v3\"")));
            }
        }
        if let Some(act) = &c.hidden_act {
            if act != "silu" {
                return Err(bad("hidden_act", format!("{act:?} is not supported (silu)")));
            }
        }
        let (theta_override, rope_scaling) = yarn_of(&c, path)?;
        let intermediate_size = required(c.intermediate_size, path, "intermediate_size")?;
        let cfg = DeepseekV3Config {
            vocab_size: required(c.vocab_size, path, "vocab_size")?,
            hidden_size: required(c.hidden_size, path, "hidden_size")?,
            intermediate_size,
            moe_intermediate_size: p.moe_intermediate_size.unwrap_or(intermediate_size),
            num_hidden_layers: required(c.num_hidden_layers, path, "num_hidden_layers")?,
            num_attention_heads: required(c.num_attention_heads, path, "num_attention_heads")?,
            q_lora_rank: p.q_lora_rank,
            kv_lora_rank: required(p.kv_lora_rank, path, "kv_lora_rank")?,
            qk_nope_head_dim: required(p.qk_nope_head_dim, path, "qk_nope_head_dim")?,
            qk_rope_head_dim: required(p.qk_rope_head_dim, path, "qk_rope_head_dim")?,
            v_head_dim: required(p.v_head_dim, path, "v_head_dim")?,
            n_routed_experts: p.n_routed_experts.unwrap_or(0),
            num_experts_per_tok: p.num_experts_per_tok.unwrap_or(0),
            n_group: p.n_group.unwrap_or(1),
            topk_group: p.topk_group.unwrap_or(1),
            norm_topk_prob: p.norm_topk_prob.unwrap_or(true),
            routed_scaling_factor: p.routed_scaling_factor.unwrap_or(1.0),
            n_shared_experts: p.n_shared_experts.unwrap_or(0),
            first_k_dense_replace: p.first_k_dense_replace.unwrap_or(0),
            moe_layer_freq: p.moe_layer_freq.unwrap_or(1),
            scoring_func: p.scoring_func.unwrap_or_default(),
            topk_method: p.topk_method.unwrap_or_default(),
            rope_interleave: p.rope_interleave.unwrap_or(true),
            rope_theta: c.rope_theta.or(theta_override).unwrap_or(10000.0),
            rope_scaling,
            max_position_embeddings: c.max_position_embeddings.unwrap_or(4096),
            rms_norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
            attention_bias: c.attention_bias.unwrap_or(false),
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            num_nextn_predict_layers: p.num_nextn_predict_layers.unwrap_or(0),
            bos_token_id: c.bos_token_id,
            eos_token_ids: c.eos_token_id,
        };
        cfg.validate().map_err(|(key, message)| bad(key, message))?;
        Ok(cfg)
    }

    /// Checks the relations between keys that the forward pass relies on; the error names the
    /// key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.qk_rope_head_dim.is_multiple_of(2) {
            return Err(("qk_rope_head_dim", format!("{} must be even", self.qk_rope_head_dim)));
        }
        if self.n_routed_experts > 0 {
            let (e, g, k, tg) =
                (self.n_routed_experts, self.n_group, self.num_experts_per_tok, self.topk_group);
            if g == 0 || e % g != 0 {
                return Err(("n_group", format!("n_routed_experts {e} is not divisible by n_group {g}")));
            }
            if tg == 0 || tg > g {
                return Err(("topk_group", format!("{tg} must be in 1..=n_group ({g})")));
            }
            if k == 0 || k > e {
                return Err(("num_experts_per_tok", format!("{k} must be in 1..=n_routed_experts ({e})")));
            }
            if self.topk_method == TopkMethod::NoauxTc && e / g < 2 {
                return Err((
                    "n_group",
                    format!("noaux_tc group scores sum the top-2 experts, but n_routed_experts/n_group = {}", e / g),
                ));
            }
            if self.moe_layer_freq == 0 {
                return Err(("moe_layer_freq", "must be >= 1".into()));
            }
        }
        Ok(())
    }

    /// Full query/key head dim (`nope + rope`), the softmax `√d`.
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// Whether decoder layer `i` has a routed MoE instead of a dense MLP (DeepSeek's rule).
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.n_routed_experts > 0
            && i >= self.first_k_dense_replace
            && i.is_multiple_of(self.moe_layer_freq.max(1))
    }

    /// The attention softmax scale: `qk_head_dim^-½`, times `mscale²` under YaRN with
    /// `mscale_all_dim` (the correction that keeps attention entropy at long context).
    pub fn softmax_scale(&self) -> f64 {
        let mut s = (self.qk_head_dim() as f64).powf(-0.5);
        if let Some(y) = &self.rope_scaling {
            if let Some(all) = y.mscale_all_dim.filter(|m| *m != 0.0) {
                let m = super::rope::yarn_get_mscale(y.factor, all);
                s *= m * m;
            }
        }
        s
    }
}
