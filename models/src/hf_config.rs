//! Serde shapes of Hugging Face `config.json` / `generation_config.json`: the keys every
//! architecture shares ([`CommonConfig`]) and the per-architecture parts ([`DenseParts`] for
//! Qwen2/Llama, `deepseek::config::DeepseekV3Parts` for DeepSeek-V3), deserialized with
//! [`parse`] so a type error names its key path (`rope_scaling.factor: invalid type: …`).
//!
//! How hub quirks are handled, and why:
//! * Unknown keys are accepted (no `deny_unknown_fields`): hub configs carry dozens of keys we
//!   do not use (`use_cache`, `quantization_config`, …), and the raw JSON is kept for saving.
//! * Every field is an `Option` even when the architecture needs it: hub files write `null` for
//!   "unset" (`"rope_scaling": null`, `"q_lora_rank": null`), and a required key that is absent
//!   *or* null must be reported as [`ModelError::MissingKey`] naming it ([`required`]).
//!   Defaults are applied by the architecture that interprets the field (documented there).
//! * `eos_token_id` is a scalar or a list ([`id_list`]); `rope_scaling` (hub) and
//!   `rope_parameters` (transformers ≥ 5, which also carries `rope_theta`) share [`RopeParams`];
//!   inside it the kind is `rope_type` or the older `type`; `torch_dtype` is `dtype` in
//!   transformers ≥ 5.
//! * The parts are composed by deserializing the same JSON value twice rather than with
//!   `#[serde(flatten)]`: flatten buffers the values and `serde_path_to_error` then loses the
//!   key path of errors inside the flattened struct.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ModelError;

/// Keys every supported architecture reads, with HF names.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CommonConfig {
    /// Decoder family (`qwen2`, `llama`, `deepseek_v3`).
    pub model_type: Option<String>,
    /// Token vocabulary size. Required.
    pub vocab_size: Option<usize>,
    /// Residual stream width. Required.
    pub hidden_size: Option<usize>,
    /// Dense MLP width. Required.
    pub intermediate_size: Option<usize>,
    /// Decoder layers. Required.
    pub num_hidden_layers: Option<usize>,
    /// Query heads. Required.
    pub num_attention_heads: Option<usize>,
    /// Key/value heads (GQA).
    pub num_key_value_heads: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: Option<f64>,
    /// RoPE base (may instead live in `rope_parameters.rope_theta`).
    pub rope_theta: Option<f64>,
    /// RoPE scaling, hub spelling.
    pub rope_scaling: Option<RopeParams>,
    /// RoPE parameters, transformers ≥ 5 spelling.
    pub rope_parameters: Option<RopeParams>,
    /// Longest supported context.
    pub max_position_embeddings: Option<usize>,
    /// Logits reuse `embed_tokens.weight`.
    pub tie_word_embeddings: Option<bool>,
    /// Attention projections carry biases.
    pub attention_bias: Option<bool>,
    /// MLP activation; only `silu` is supported.
    pub hidden_act: Option<String>,
    /// Stored dtype, transformers < 5 spelling.
    pub torch_dtype: Option<String>,
    /// Stored dtype, transformers ≥ 5 spelling.
    pub dtype: Option<String>,
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (scalar or list on the hub).
    #[serde(default, deserialize_with = "id_list")]
    pub eos_token_id: Vec<u32>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
}

impl CommonConfig {
    /// `torch_dtype`, else `dtype`.
    pub fn stored_dtype(&self) -> Option<String> {
        self.torch_dtype.clone().or_else(|| self.dtype.clone())
    }
}

/// The Qwen2/Llama-only keys.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DenseParts {
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
    pub head_dim: Option<usize>,
    /// MLP projections carry biases (Llama `mlp_bias`).
    pub mlp_bias: Option<bool>,
}

/// `rope_scaling` / `rope_parameters`. Which fields are needed depends on the kind.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RopeParams {
    /// The kind (`default`, `linear`, `llama3`, `yarn`).
    pub rope_type: Option<String>,
    /// The kind, older spelling.
    #[serde(rename = "type")]
    pub legacy_type: Option<String>,
    /// RoPE base (transformers ≥ 5 puts it here).
    pub rope_theta: Option<f64>,
    /// Scaling factor (linear, llama3, yarn).
    pub factor: Option<f64>,
    /// Llama 3 low-frequency wavelength factor.
    pub low_freq_factor: Option<f64>,
    /// Llama 3 high-frequency wavelength factor.
    pub high_freq_factor: Option<f64>,
    /// Pretraining context length. A number because some hub files write it as `8192.0`.
    pub original_max_position_embeddings: Option<f64>,
    /// YaRN fast ramp boundary.
    pub beta_fast: Option<f64>,
    /// YaRN slow ramp boundary.
    pub beta_slow: Option<f64>,
    /// YaRN magnitude scale.
    pub mscale: Option<f64>,
    /// YaRN magnitude scale over all dims.
    pub mscale_all_dim: Option<f64>,
}

impl RopeParams {
    /// `rope_type`, else `type`, else `"default"`.
    pub fn kind(&self) -> &str {
        self.rope_type.as_deref().or(self.legacy_type.as_deref()).unwrap_or("default")
    }
}

/// The keys of `generation_config.json` we use.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GenerationFile {
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (scalar or list).
    #[serde(default, deserialize_with = "id_list")]
    pub eos_token_id: Vec<u32>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
    /// Sample by default.
    pub do_sample: Option<bool>,
    /// Default temperature.
    pub temperature: Option<f64>,
    /// Default nucleus mass.
    pub top_p: Option<f64>,
    /// Default top-k.
    pub top_k: Option<usize>,
}

/// Deserializes `T` from a config already read as JSON. A value of the wrong type becomes
/// [`ModelError::BadValue`] whose key is the full path (`rope_scaling.factor`); `path` is the
/// file named in errors.
pub fn parse<T: DeserializeOwned>(value: &Value, path: &Path) -> Result<T, ModelError> {
    if !value.is_object() {
        return Err(ModelError::Json { path: path.to_path_buf(), message: "top level is not a JSON object".into() });
    }
    serde_path_to_error::deserialize(value).map_err(|e| ModelError::BadValue {
        path: path.to_path_buf(),
        key: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// A required key: absent or `null` is [`ModelError::MissingKey`] naming `key`.
pub fn required<T>(v: Option<T>, path: &Path, key: &str) -> Result<T, ModelError> {
    v.ok_or_else(|| ModelError::MissingKey { path: path.to_path_buf(), key: key.to_string() })
}

/// Reads a JSON file; a syntax error names the file.
pub fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Json { path: path.to_path_buf(), message: e.to_string() })
}

/// `eos_token_id`: a token id, a list of ids, or `null` (= none).
pub fn id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    d.deserialize_any(IdList)
}

struct IdList;

impl<'de> Visitor<'de> for IdList {
    type Value = Vec<u32>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token id or a list of token ids")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<u32>, E> {
        u32::try_from(v).map(|x| vec![x]).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<u32>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<u32>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        let mut out = Vec::new();
        while let Some(x) = seq.next_element::<u32>()? {
            out.push(x);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> &'static Path {
        Path::new("dir/config.json")
    }

    #[test]
    fn bad_type_names_the_key_path_and_file() {
        let v = json!({"vocab_size": 8, "rope_scaling": {"rope_type": "linear", "factor": "x"}});
        let e = parse::<CommonConfig>(&v, p()).unwrap_err();
        assert!(matches!(&e, ModelError::BadValue { key, .. } if key == "rope_scaling.factor"), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("dir/config.json") && msg.contains("invalid type: string \"x\", expected f64"), "{msg}");
        let e = parse::<CommonConfig>(&json!({"eos_token_id": [1, "two"]}), p()).unwrap_err();
        assert!(matches!(&e, ModelError::BadValue { key, .. } if key == "eos_token_id[1]"), "{e}");
        let e = parse::<CommonConfig>(&json!({"hidden_size": 4096.5}), p()).unwrap_err();
        assert!(matches!(&e, ModelError::BadValue { key, .. } if key == "hidden_size"), "{e}");
    }

    #[test]
    fn quirks_nulls_unknown_keys_and_id_spellings_are_accepted() {
        let v = json!({"vocab_size": null, "rope_scaling": null, "whatever": {"x": 1},
                       "eos_token_id": 7, "dtype": "bfloat16"});
        let c = parse::<CommonConfig>(&v, p()).unwrap();
        assert_eq!((c.vocab_size, c.eos_token_id.as_slice()), (None, &[7u32][..]));
        assert_eq!(c.stored_dtype().as_deref(), Some("bfloat16"));
        let c = parse::<CommonConfig>(&json!({"eos_token_id": [1, 2], "torch_dtype": "float32", "dtype": "x"}), p()).unwrap();
        assert_eq!((c.stored_dtype(), c.eos_token_id), (Some("float32".into()), vec![1, 2]));
        assert!(parse::<CommonConfig>(&json!({"eos_token_id": null}), p()).unwrap().eos_token_id.is_empty());
        let r = parse::<RopeParams>(&json!({"type": "yarn", "rope_type": "llama3"}), p()).unwrap();
        assert_eq!(r.kind(), "llama3");
        assert!(matches!(parse::<CommonConfig>(&json!([1]), p()), Err(ModelError::Json { .. })));
    }

    #[test]
    fn missing_required_key_is_named() {
        let c = parse::<CommonConfig>(&json!({"vocab_size": null}), p()).unwrap();
        let e = required(c.vocab_size, p(), "vocab_size").unwrap_err();
        assert!(matches!(&e, ModelError::MissingKey { key, .. } if key == "vocab_size"), "{e}");
        assert!(e.to_string().contains("dir/config.json"), "{e}");
    }
}
