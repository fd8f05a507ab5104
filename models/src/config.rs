//! Hugging Face `config.json` and `generation_config.json`, parsed into the fields our
//! architectures need.
//!
//! The keys are deserialized by serde into [`crate::hf_config`]'s shapes (common fields +
//! per-architecture parts, hub quirks handled there, type errors naming the key path); this
//! module interprets them for the dense families (defaults, rope kinds, head-count checks).
//! The raw JSON is kept so that saving writes back every key the user had and so
//! architecture-specific code (DeepSeek-V3) can read its own keys.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::hf_config::{parse, read_json, required, CommonConfig, DenseParts, GenerationFile};

/// Which decoder family a checkpoint is. Decides which Burn module is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5, R1-Distill-Qwen): q/k/v biases.
    Qwen2,
    /// `LlamaForCausalLM` (Llama 3 / 3.1, R1-Distill-Llama).
    Llama,
    /// `DeepseekV3ForCausalLM` (DeepSeek-V3 / R1): MLA + MoE, see `crate::deepseek`.
    DeepseekV3,
}

impl Architecture {
    /// The HF `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "qwen2",
            Architecture::Llama => "llama",
            Architecture::DeepseekV3 => "deepseek_v3",
        }
    }

    /// The HF `architectures[0]` class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::DeepseekV3 => "DeepseekV3ForCausalLM",
        }
    }

    fn from_model_type(s: &str) -> Option<Self> {
        match s {
            "qwen2" => Some(Architecture::Qwen2),
            "llama" => Some(Architecture::Llama),
            "deepseek_v3" => Some(Architecture::DeepseekV3),
            _ => None,
        }
    }
}

/// RoPE frequency scaling (`rope_scaling` / `rope_parameters`), when not the default.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1 by-parts scaling: long wavelengths divided by `factor`, short kept, a smooth
    /// blend between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelength threshold factor for the low-frequency regime.
        low_freq_factor: f64,
        /// Wavelength threshold factor for the high-frequency regime.
        high_freq_factor: f64,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
    },
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Divisor of all frequencies.
        factor: f64,
    },
    /// YaRN (DeepSeek-V3/R1). Interpreted by `crate::deepseek`.
    Yarn {
        /// Context extension factor.
        factor: f64,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
        /// High-frequency correction bound (default 32).
        beta_fast: f64,
        /// Low-frequency correction bound (default 1).
        beta_slow: f64,
        /// Attention-scale mscale (default 1).
        mscale: f64,
        /// mscale applied over all dims (default 0).
        mscale_all_dim: f64,
    },
}

/// The architecture-defining part of a HF `config.json`.
///
/// Field names follow HF so a reader can map them one to one. Values are validated at parse
/// time (heads divide hidden size, kv heads divide heads, …).
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Decoder family.
    pub architecture: Architecture,
    /// Token vocabulary size (rows of `embed_tokens`).
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width (dense MLP; DeepSeek's dense layers).
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); equals `num_attention_heads` when absent from the file.
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` when absent from the file.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling, `None` for plain RoPE.
    pub rope_scaling: Option<RopeScaling>,
    /// Longest context the model supports.
    pub max_position_embeddings: usize,
    /// When true there is no `lm_head.weight`: logits use `embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2 always; Llama when `attention_bias`).
    pub attention_bias: bool,
    /// MLP projections carry a bias (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// Beginning-of-sequence id from config.json.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids from config.json (a scalar becomes a one-element list).
    pub eos_token_ids: Vec<u32>,
    /// Padding id, if any.
    pub pad_token_id: Option<u32>,
    /// `torch_dtype` / `dtype` string as stored (e.g. "bfloat16"); informational.
    pub torch_dtype: Option<String>,
    /// The whole file, so saving round-trips unknown keys and DeepSeek code can read its own.
    pub raw: Value,
}

/// `generation_config.json`: the defaults `model.generate` would use.
#[derive(Clone, Debug, Default)]
pub struct GenerationConfig {
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// Any of these ends generation.
    pub eos_token_ids: Vec<u32>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
    /// Whether the model's authors sample by default.
    pub do_sample: Option<bool>,
    /// Default sampling temperature.
    pub temperature: Option<f64>,
    /// Default nucleus mass.
    pub top_p: Option<f64>,
    /// Default top-k.
    pub top_k: Option<usize>,
    /// The whole file, for round-tripping on save.
    pub raw: Value,
}

fn key_err(path: &Path, key: &str, message: impl Into<String>) -> ModelError {
    ModelError::BadValue { path: path.to_path_buf(), key: key.to_string(), message: message.into() }
}

/// Interprets `rope_scaling` (hub spelling, preferred) or `rope_parameters` (transformers ≥ 5,
/// which also carries `rope_theta`) for the dense families. Returns (theta override, scaling).
/// YaRN defaults: `beta_fast` 32, `beta_slow` 1, `mscale` 1, `mscale_all_dim` 0.
fn rope_of(c: &CommonConfig, path: &Path) -> Result<(Option<f64>, Option<RopeScaling>), ModelError> {
    let (key, r) = match (&c.rope_scaling, &c.rope_parameters) {
        (Some(r), _) => ("rope_scaling", r),
        (None, Some(r)) => ("rope_parameters", r),
        (None, None) => return Ok((None, None)),
    };
    let need = |v: Option<f64>, k: &str| required(v, path, &format!("{key}.{k}"));
    let scaling = match r.kind() {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: need(r.factor, "factor")? }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: need(r.factor, "factor")?,
            low_freq_factor: need(r.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: need(r.high_freq_factor, "high_freq_factor")?,
            original_max_position_embeddings: need(r.original_max_position_embeddings, "original_max_position_embeddings")?
                as usize,
        }),
        "yarn" => Some(RopeScaling::Yarn {
            factor: need(r.factor, "factor")?,
            original_max_position_embeddings: need(r.original_max_position_embeddings, "original_max_position_embeddings")?
                as usize,
            beta_fast: r.beta_fast.unwrap_or(32.0),
            beta_slow: r.beta_slow.unwrap_or(1.0),
            mscale: r.mscale.unwrap_or(1.0),
            mscale_all_dim: r.mscale_all_dim.unwrap_or(0.0),
        }),
        other => {
            return Err(key_err(
                path,
                key,
                format!("unsupported rope type `{other}` (supported: default, linear, llama3, yarn)"),
            ))
        }
    };
    Ok((r.rope_theta, scaling))
}

/// Head counts and head width, validated: heads divide, RoPE width even (dense families).
fn heads_of(c: &CommonConfig, d: &DenseParts, arch: Architecture, path: &Path) -> Result<(usize, usize, usize), ModelError> {
    let hidden_size = required(c.hidden_size, path, "hidden_size")?;
    let heads = required(c.num_attention_heads, path, "num_attention_heads")?;
    let kv_heads = c.num_key_value_heads.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 {
        return Err(key_err(path, "num_attention_heads", "head counts must be positive"));
    }
    if heads % kv_heads != 0 {
        return Err(key_err(path, "num_key_value_heads", format!("{kv_heads} does not divide num_attention_heads {heads}")));
    }
    let head_dim = match d.head_dim {
        Some(d) => d,
        None => {
            if arch != Architecture::DeepseekV3 && hidden_size % heads != 0 {
                return Err(key_err(
                    path,
                    "hidden_size",
                    format!("{hidden_size} is not divisible by num_attention_heads {heads} and no head_dim is given"),
                ));
            }
            hidden_size / heads
        }
    };
    if arch != Architecture::DeepseekV3 && head_dim % 2 != 0 {
        return Err(key_err(path, "head_dim", format!("RoPE needs an even head_dim, found {head_dim}")));
    }
    Ok((heads, kv_heads, head_dim))
}

impl ModelConfig {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        Self::from_file(&dir.join("config.json"))
    }

    /// Reads and validates one config.json file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let raw = read_json(path)?;
        Self::from_value(raw, path)
    }

    /// Parses an already-read config; `path` is only used in error messages. Defaults for
    /// absent keys: `num_key_value_heads` = heads, `head_dim` = hidden / heads, `rms_norm_eps`
    /// 1e-6, `rope_theta` 10000, `max_position_embeddings` 4096, biases and tying false (Qwen2
    /// always has q/k/v biases), `hidden_act` silu.
    pub fn from_value(raw: Value, path: &Path) -> Result<Self, ModelError> {
        let c: CommonConfig = parse(&raw, path)?;
        let d: DenseParts = parse(&raw, path)?;
        let model_type = required(c.model_type.as_deref(), path, "model_type")?;
        let architecture = Architecture::from_model_type(model_type).ok_or_else(|| {
            ModelError::UnsupportedArchitecture { path: path.to_path_buf(), model_type: model_type.into() }
        })?;
        let (num_attention_heads, num_key_value_heads, head_dim) = heads_of(&c, &d, architecture, path)?;
        let (theta_override, rope_scaling) = rope_of(&c, path)?;
        let hidden_act = c.hidden_act.as_deref().unwrap_or("silu");
        if hidden_act != "silu" {
            return Err(key_err(path, "hidden_act", format!("only silu is supported, found `{hidden_act}`")));
        }
        let attention_bias = match architecture {
            Architecture::Qwen2 => true,
            _ => c.attention_bias.unwrap_or(false),
        };
        Ok(ModelConfig {
            architecture,
            vocab_size: required(c.vocab_size, path, "vocab_size")?,
            hidden_size: required(c.hidden_size, path, "hidden_size")?,
            intermediate_size: required(c.intermediate_size, path, "intermediate_size")?,
            num_hidden_layers: required(c.num_hidden_layers, path, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: c.rope_theta.or(theta_override).unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: c.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            attention_bias,
            mlp_bias: d.mlp_bias.unwrap_or(false),
            bos_token_id: c.bos_token_id,
            eos_token_ids: c.eos_token_id.clone(),
            pad_token_id: c.pad_token_id,
            torch_dtype: c.stored_dtype(),
            raw,
        })
    }

    /// Number of parameters the architecture holds (tied embeddings counted once). Dense
    /// families only; DeepSeek computes its own from its module.
    pub fn dense_param_count(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim);
        let attn = h * q + 2 * h * kv + q * h + if self.attention_bias { q + 2 * kv } else { 0 };
        let mlp = 3 * h * i + if self.mlp_bias { 2 * i + h } else { 0 };
        let layer = attn + mlp + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * layer + h + head
    }

    /// A lower bound of the weight bytes at `bytes_per_param` (the dense formula, which
    /// undercounts MoE models), computed in saturating 128-bit arithmetic so absurd configs
    /// cannot wrap around to a small number.
    pub fn min_weight_bytes(&self, bytes_per_param: usize) -> u128 {
        let n = |x: usize| x as u128;
        let (h, i, v) = (n(self.hidden_size), n(self.intermediate_size), n(self.vocab_size));
        let q = n(self.num_attention_heads).saturating_mul(n(self.head_dim));
        let kv = n(self.num_key_value_heads).saturating_mul(n(self.head_dim));
        let attn = h.saturating_mul(q.saturating_mul(2).saturating_add(kv.saturating_mul(2)));
        let layer = attn.saturating_add(h.saturating_mul(i).saturating_mul(3));
        let embed = v.saturating_mul(h).saturating_mul(if self.tie_word_embeddings { 1 } else { 2 });
        n(self.num_hidden_layers).saturating_mul(layer).saturating_add(embed).saturating_mul(n(bytes_per_param))
    }

    /// Refuses, before anything is allocated, a config whose weights alone exceed this
    /// machine's physical memory (RAM + swap): a typo such as `num_hidden_layers: 1000000000`
    /// must be an error naming the file, not a multi-terabyte allocation abort.
    pub fn check_fits_in_memory(&self, bytes_per_param: usize, path: &Path) -> Result<(), ModelError> {
        let need = self.min_weight_bytes(bytes_per_param);
        let Some(have) = physical_memory_bytes() else { return Ok(()) };
        if need > u128::from(have) {
            return Err(key_err(
                path,
                "num_hidden_layers",
                format!(
                    "the weights of this config (hidden_size {}, intermediate_size {}, {} layers, vocab {}) \
                     need at least {:.1} GB, more than this machine's {:.1} GB of memory",
                    self.hidden_size,
                    self.intermediate_size,
                    self.num_hidden_layers,
                    self.vocab_size,
                    need as f64 / 1e9,
                    have as f64 / 1e9
                ),
            ));
        }
        Ok(())
    }

    /// The config as JSON for saving: the raw file with our parsed fields written back, so a
    /// round trip keeps every key the user had.
    pub fn to_json(&self) -> Value {
        let mut v = if self.raw.is_object() { self.raw.clone() } else { Value::Object(Map::new()) };
        let o = v.as_object_mut().expect("object");
        o.insert("model_type".into(), self.architecture.model_type().into());
        o.insert("architectures".into(), Value::Array(vec![self.architecture.class_name().into()]));
        o.insert("vocab_size".into(), self.vocab_size.into());
        o.insert("hidden_size".into(), self.hidden_size.into());
        o.insert("intermediate_size".into(), self.intermediate_size.into());
        o.insert("num_hidden_layers".into(), self.num_hidden_layers.into());
        o.insert("num_attention_heads".into(), self.num_attention_heads.into());
        o.insert("num_key_value_heads".into(), self.num_key_value_heads.into());
        o.insert("rms_norm_eps".into(), self.rms_norm_eps.into());
        o.insert("max_position_embeddings".into(), self.max_position_embeddings.into());
        o.insert("tie_word_embeddings".into(), self.tie_word_embeddings.into());
        if !o.contains_key("rope_parameters") {
            o.insert("rope_theta".into(), self.rope_theta.into());
        }
        v
    }
}

impl GenerationConfig {
    /// Reads `dir/generation_config.json`; an absent file gives the defaults (HF does the same),
    /// with bos/eos/pad taken from `model` so callers can always use this struct.
    pub fn from_dir(dir: &Path, model: &ModelConfig) -> Result<Self, ModelError> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(GenerationConfig {
                bos_token_id: model.bos_token_id,
                eos_token_ids: model.eos_token_ids.clone(),
                pad_token_id: model.pad_token_id,
                ..Default::default()
            });
        }
        let raw = read_json(&path)?;
        let mut g = Self::from_value(raw, &path)?;
        if g.eos_token_ids.is_empty() {
            g.eos_token_ids = model.eos_token_ids.clone();
        }
        g.bos_token_id = g.bos_token_id.or(model.bos_token_id);
        g.pad_token_id = g.pad_token_id.or(model.pad_token_id);
        Ok(g)
    }

    /// Parses an already-read generation config; `path` is only used in error messages.
    pub fn from_value(raw: Value, path: &Path) -> Result<Self, ModelError> {
        let g: GenerationFile = parse(&raw, path)?;
        Ok(GenerationConfig {
            bos_token_id: g.bos_token_id,
            eos_token_ids: g.eos_token_id,
            pad_token_id: g.pad_token_id,
            do_sample: g.do_sample,
            temperature: g.temperature,
            top_p: g.top_p,
            top_k: g.top_k,
            raw,
        })
    }

    /// JSON for saving: the raw file with bos/eos/pad written back.
    pub fn to_json(&self) -> Value {
        let mut v = if self.raw.is_object() { self.raw.clone() } else { Value::Object(Map::new()) };
        let o = v.as_object_mut().expect("object");
        if let Some(b) = self.bos_token_id {
            o.insert("bos_token_id".into(), b.into());
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                o.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                o.insert("eos_token_id".into(), Value::Array(many.iter().map(|&x| x.into()).collect()));
            }
        }
        if let Some(p) = self.pad_token_id {
            o.insert("pad_token_id".into(), p.into());
        }
        v
    }
}

/// The path a config error should name for a directory.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

/// RAM + swap of this machine from `/proc/meminfo` (`None` where it cannot be read).
fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kb("MemTotal:")? + kb("SwapTotal:").unwrap_or(0)) * 1024)
}

