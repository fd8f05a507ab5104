//! The hand-written parsers `models` used before configs were deserialized by serde, kept
//! verbatim (bodies unchanged, only made free functions) as the oracle of
//! `config_serde.rs`: every fixture and quirk config must parse to the same values.
#![allow(dead_code)]

use std::path::Path;

use models::deepseek::{DeepseekV3Config, ScoringFunc, TopkMethod, YarnScaling};
use models::{Architecture, GenerationConfig, ModelConfig, ModelError, RopeScaling};
use serde::Deserialize;
use serde_json::{Map, Value};

fn from_model_type(s: &str) -> Option<Architecture> {
    match s {
        "qwen2" => Some(Architecture::Qwen2),
        "llama" => Some(Architecture::Llama),
        "deepseek_v3" => Some(Architecture::DeepseekV3),
        _ => None,
    }
}

fn key_err(path: &Path, key: &str, message: impl Into<String>) -> ModelError {
    ModelError::BadValue { path: path.to_path_buf(), key: key.to_string(), message: message.into() }
}

/// Typed getters over a JSON object that report the file and key on failure.
struct Keys<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl<'a> Keys<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn req(&self, key: &str) -> Result<&'a Value, ModelError> {
        self.get(key).ok_or_else(|| ModelError::MissingKey {
            path: self.path.to_path_buf(),
            key: key.to_string(),
        })
    }
    fn usize_of(&self, key: &str, v: &Value) -> Result<usize, ModelError> {
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| key_err(self.path, key, format!("expected a non-negative integer, found {v}")))
    }
    fn f64_of(&self, key: &str, v: &Value) -> Result<f64, ModelError> {
        v.as_f64().ok_or_else(|| key_err(self.path, key, format!("expected a number, found {v}")))
    }
    fn req_usize(&self, key: &str) -> Result<usize, ModelError> {
        self.usize_of(key, self.req(key)?)
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        self.get(key).map(|v| self.usize_of(key, v)).transpose()
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        self.get(key).map(|v| self.f64_of(key, v)).transpose()
    }
    fn opt_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| key_err(self.path, key, format!("expected a boolean, found {v}"))))
            .transpose()
    }
    fn opt_u32(&self, key: &str) -> Result<Option<u32>, ModelError> {
        Ok(self.opt_usize(key)?.map(|x| x as u32))
    }
    /// A scalar id or a list of ids (HF allows both for `eos_token_id`).
    fn id_list(&self, key: &str) -> Result<Vec<u32>, ModelError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().map(|v| self.usize_of(key, v).map(|x| x as u32)).collect()
            }
            Some(v) => Ok(vec![self.usize_of(key, v)? as u32]),
        }
    }
}

fn as_object<'a>(path: &Path, v: &'a Value) -> Result<&'a Map<String, Value>, ModelError> {
    v.as_object().ok_or_else(|| ModelError::Json {
        path: path.to_path_buf(),
        message: "top level is not a JSON object".into(),
    })
}

/// Parses `rope_scaling` (hub spelling) or `rope_parameters` (transformers ≥ 5 spelling, which
/// also carries `rope_theta`). Returns (theta override, scaling).
fn parse_rope(keys: &Keys<'_>) -> Result<(Option<f64>, Option<RopeScaling>), ModelError> {
    let (key, obj) = if let Some(v) = keys.get("rope_scaling") {
        ("rope_scaling", v)
    } else if let Some(v) = keys.get("rope_parameters") {
        ("rope_parameters", v)
    } else {
        return Ok((None, None));
    };
    let map = obj
        .as_object()
        .ok_or_else(|| key_err(keys.path, key, format!("expected an object, found {obj}")))?;
    let sub = Keys { path: keys.path, obj: map };
    let theta = sub.opt_f64("rope_theta")?;
    let kind = sub
        .get("rope_type")
        .or_else(|| sub.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let need = |k: &str| -> Result<f64, ModelError> {
        sub.opt_f64(k)?.ok_or_else(|| ModelError::MissingKey {
            path: keys.path.to_path_buf(),
            key: format!("{key}.{k}"),
        })
    };
    let scaling = match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: need("factor")? }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
        }),
        "yarn" => Some(RopeScaling::Yarn {
            factor: need("factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
            beta_fast: sub.opt_f64("beta_fast")?.unwrap_or(32.0),
            beta_slow: sub.opt_f64("beta_slow")?.unwrap_or(1.0),
            mscale: sub.opt_f64("mscale")?.unwrap_or(1.0),
            mscale_all_dim: sub.opt_f64("mscale_all_dim")?.unwrap_or(0.0),
        }),
        other => {
            return Err(key_err(
                keys.path,
                key,
                format!("unsupported rope type `{other}` (supported: default, linear, llama3, yarn)"),
            ))
        }
    };
    Ok((theta, scaling))
}

    /// Parses an already-read config; `path` is only used in error messages.
pub fn model_config(raw: Value, path: &Path) -> Result<ModelConfig, ModelError> {
        let obj = as_object(path, &raw)?;
        let k = Keys { path, obj };
        let model_type = k
            .req("model_type")?
            .as_str()
            .ok_or_else(|| key_err(path, "model_type", "expected a string"))?;
        let architecture = from_model_type(model_type).ok_or_else(|| {
            ModelError::UnsupportedArchitecture { path: path.to_path_buf(), model_type: model_type.into() }
        })?;
        let hidden_size = k.req_usize("hidden_size")?;
        let num_attention_heads = k.req_usize("num_attention_heads")?;
        let num_key_value_heads = k.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_attention_heads == 0 || num_key_value_heads == 0 {
            return Err(key_err(path, "num_attention_heads", "head counts must be positive"));
        }
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(key_err(
                path,
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"),
            ));
        }
        let head_dim = match k.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                if architecture != Architecture::DeepseekV3 && hidden_size % num_attention_heads != 0 {
                    return Err(key_err(
                        path,
                        "hidden_size",
                        format!("{hidden_size} is not divisible by num_attention_heads {num_attention_heads} and no head_dim is given"),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if architecture != Architecture::DeepseekV3 && head_dim % 2 != 0 {
            return Err(key_err(path, "head_dim", format!("RoPE needs an even head_dim, found {head_dim}")));
        }
        let (theta_override, rope_scaling) = parse_rope(&k)?;
        let rope_theta = match k.opt_f64("rope_theta")? {
            Some(t) => t,
            None => theta_override.unwrap_or(10_000.0),
        };
        let hidden_act = k.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("silu");
        if hidden_act != "silu" {
            return Err(key_err(path, "hidden_act", format!("only silu is supported, found `{hidden_act}`")));
        }
        let attention_bias = match architecture {
            Architecture::Qwen2 => true,
            _ => k.opt_bool("attention_bias")?.unwrap_or(false),
        };
        let torch_dtype = k
            .get("torch_dtype")
            .or_else(|| k.get("dtype"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let cfg = ModelConfig {
            architecture,
            vocab_size: k.req_usize("vocab_size")?,
            hidden_size,
            intermediate_size: k.req_usize("intermediate_size")?,
            num_hidden_layers: k.req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: k.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: k.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            tie_word_embeddings: k.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            attention_bias,
            mlp_bias: k.opt_bool("mlp_bias")?.unwrap_or(false),
            bos_token_id: k.opt_u32("bos_token_id")?,
            eos_token_ids: k.id_list("eos_token_id")?,
            pad_token_id: k.opt_u32("pad_token_id")?,
            torch_dtype,
            raw: Value::Null,
        };
        Ok(ModelConfig { raw, ..cfg })
    }


    /// Parses an already-read generation config; `path` is only used in error messages.
pub fn generation_config(raw: Value, path: &Path) -> Result<GenerationConfig, ModelError> {
        let obj = as_object(path, &raw)?;
        let k = Keys { path, obj };
        let g = GenerationConfig {
            bos_token_id: k.opt_u32("bos_token_id")?,
            eos_token_ids: k.id_list("eos_token_id")?,
            pad_token_id: k.opt_u32("pad_token_id")?,
            do_sample: k.opt_bool("do_sample")?,
            temperature: k.opt_f64("temperature")?,
            top_p: k.opt_f64("top_p")?,
            top_k: k.opt_usize("top_k")?,
            raw: Value::Null,
        };
        Ok(GenerationConfig { raw, ..g })
    }


#[derive(Deserialize)]
struct RawRope {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    beta_fast: Option<f64>,
    beta_slow: Option<f64>,
    mscale: Option<f64>,
    mscale_all_dim: Option<f64>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    moe_intermediate_size: Option<usize>,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    q_lora_rank: Option<usize>,
    kv_lora_rank: usize,
    qk_nope_head_dim: usize,
    qk_rope_head_dim: usize,
    v_head_dim: usize,
    n_routed_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    n_group: Option<usize>,
    topk_group: Option<usize>,
    norm_topk_prob: Option<bool>,
    routed_scaling_factor: Option<f64>,
    n_shared_experts: Option<usize>,
    first_k_dense_replace: Option<usize>,
    moe_layer_freq: Option<usize>,
    scoring_func: Option<ScoringFunc>,
    topk_method: Option<TopkMethod>,
    rope_interleave: Option<bool>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    attention_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    num_nextn_predict_layers: Option<usize>,
    hidden_act: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

    /// Parses config.json (both `rope_scaling` and transformers-5 `rope_parameters`);
    /// `path` is only used in error messages.
pub fn deepseek_config(value: &serde_json::Value, path: &Path) -> Result<DeepseekV3Config, ModelError> {
        let bad = |key: &str, message: String| ModelError::BadValue {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let raw: RawConfig = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::Json { path: path.to_path_buf(), message: e.to_string() })?;
        if let Some(mt) = &raw.model_type {
            if mt != "deepseek_v3" {
                return Err(bad("model_type", format!("{mt:?}, expected \"deepseek_v3\"")));
            }
        }
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(bad("hidden_act", format!("{act:?} is not supported (silu)")));
            }
        }
        // `rope_parameters` (transformers >= 5) wins over the hub's `rope_scaling`; rope_theta
        // may live inside it.
        let rope = raw.rope_parameters.or(raw.rope_scaling);
        let mut rope_theta = raw.rope_theta;
        let mut rope_scaling = None;
        if let Some(r) = rope {
            if rope_theta.is_none() {
                rope_theta = r.rope_theta;
            }
            match r.rope_type.as_deref() {
                None | Some("default") => {}
                Some("yarn") => {
                    let factor = r.factor.ok_or_else(|| ModelError::MissingKey {
                        path: path.to_path_buf(),
                        key: "rope_scaling.factor".into(),
                    })?;
                    // The ramp uses `factor` as written, as DeepSeek's reference code does
                    // (transformers 4.x substituted max_position_embeddings / original, equal
                    // in every DeepSeek release).
                    let rope_factor = factor;
                    let original = match (r.original_max_position_embeddings, raw.max_position_embeddings) {
                        (Some(o), _) if o > 0 => o,
                        (None, Some(m)) => m,
                        _ => {
                            return Err(ModelError::MissingKey {
                                path: path.to_path_buf(),
                                key: "rope_scaling.original_max_position_embeddings".into(),
                            })
                        }
                    };
                    rope_scaling = Some(YarnScaling {
                        factor,
                        rope_factor,
                        beta_fast: r.beta_fast.unwrap_or(32.0),
                        beta_slow: r.beta_slow.unwrap_or(1.0),
                        mscale: r.mscale,
                        mscale_all_dim: r.mscale_all_dim,
                        original_max_position_embeddings: original,
                    });
                }
                Some(other) => {
                    return Err(bad(
                        "rope_scaling",
                        format!("type {other:?} is not supported for deepseek_v3 (default, yarn)"),
                    ))
                }
            }
        }
        let eos_token_ids = match raw.eos_token_id {
            None => vec![],
            Some(OneOrMany::One(x)) => vec![x],
            Some(OneOrMany::Many(v)) => v,
        };
        let n_routed = raw.n_routed_experts.unwrap_or(0);
        let cfg = DeepseekV3Config {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            moe_intermediate_size: raw.moe_intermediate_size.unwrap_or(raw.intermediate_size),
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            q_lora_rank: raw.q_lora_rank,
            kv_lora_rank: raw.kv_lora_rank,
            qk_nope_head_dim: raw.qk_nope_head_dim,
            qk_rope_head_dim: raw.qk_rope_head_dim,
            v_head_dim: raw.v_head_dim,
            n_routed_experts: n_routed,
            num_experts_per_tok: raw.num_experts_per_tok.unwrap_or(0),
            n_group: raw.n_group.unwrap_or(1),
            topk_group: raw.topk_group.unwrap_or(1),
            norm_topk_prob: raw.norm_topk_prob.unwrap_or(true),
            routed_scaling_factor: raw.routed_scaling_factor.unwrap_or(1.0),
            n_shared_experts: raw.n_shared_experts.unwrap_or(0),
            first_k_dense_replace: raw.first_k_dense_replace.unwrap_or(0),
            moe_layer_freq: raw.moe_layer_freq.unwrap_or(1),
            scoring_func: raw.scoring_func.unwrap_or_default(),
            topk_method: raw.topk_method.unwrap_or_default(),
            rope_interleave: raw.rope_interleave.unwrap_or(true),
            rope_theta: rope_theta.unwrap_or(10000.0),
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            attention_bias: raw.attention_bias.unwrap_or(false),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            num_nextn_predict_layers: raw.num_nextn_predict_layers.unwrap_or(0),
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
        };
        cfg.validate().map_err(|(key, message)| bad(key, message))?;
        Ok(cfg)
    }

