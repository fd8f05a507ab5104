//! Builds [`DeepseekV3ForCausalLM`] from a hub checkpoint directory, one tensor at a time.

use std::path::Path;

use burn::tensor::{backend::Backend, DType};

use super::attention::MlaAttention;
use super::config::DeepseekV3Config;
use super::fp8::{fp8_block_size, fp8_decoder};
use super::layers::ParamLoader;
use super::model::{DecoderLayer, DeepseekFfn, DeepseekV3ForCausalLM, DeepseekV3Model};
use super::moe::{DeepseekMoe, MoeGate, RouterSpec};
use super::rope::RopeFrequencies;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layers::HfLinear;
use crate::weights::{CheckpointWeights, SafetensorsFiles, WeightSource};

impl<B: Backend> DeepseekV3ForCausalLM<B> {
    /// Loads a checkpoint directory (single file or sharded, bf16/f32/FP8) onto `device` in
    /// `dtype` (F32 on CPU; BF16 halves GPU memory). FP8 weights are dequantised per tensor.
    pub fn load_dir(dir: &Path, device: &B::Device, dtype: DType) -> Result<Self, ModelError> {
        let model_config = ModelConfig::from_dir(dir)?;
        let mut files = SafetensorsFiles::open(dir)?;
        files.set_decoder(fp8_decoder(fp8_block_size(&model_config.raw)));
        let mut weights = CheckpointWeights::<B>::new(&files, device, dtype);
        let model = Self::load(&model_config, &mut weights)?;
        let unused = files.unused();
        if !unused.is_empty() {
            tracing::warn!(count = unused.len(), first = %unused[0], "checkpoint tensors not used by DeepseekV3ForCausalLM");
        }
        Ok(model)
    }

    /// Builds the model from any [`WeightSource`] (checkpoint or random init).
    /// Multi-token-prediction layers (`model.layers.{num_hidden_layers..}`) are not requested,
    /// so they stay in the files unread.
    pub fn load<W: WeightSource<B>>(model_config: &ModelConfig, weights: &mut W) -> Result<Self, ModelError> {
        let config = DeepseekV3Config::from_model_config(model_config)?;
        if config.num_nextn_predict_layers > 0 {
            tracing::info!(
                layers = config.num_nextn_predict_layers,
                "skipping multi-token-prediction (MTP) layers: they only serve speculative decoding"
            );
        }
        let mut p = ParamLoader::<B, W>::new(weights);
        let c = &config;
        let (hid, eps) = (c.hidden_size, c.rms_norm_eps);
        let embed_tokens = p.embedding("model.embed_tokens.weight", c.vocab_size, hid)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let pre = format!("model.layers.{i}");
            let a = format!("{pre}.self_attn");
            let h = c.num_attention_heads;
            let qk = c.qk_head_dim();
            let (q_a_proj, q_a_layernorm, q_b_proj, q_proj) = match c.q_lora_rank {
                Some(r) => (
                    Some(p.linear(&format!("{a}.q_a_proj"), hid, r, c.attention_bias)?),
                    Some(p.norm(&format!("{a}.q_a_layernorm"), r, eps)?),
                    Some(p.linear(&format!("{a}.q_b_proj"), r, h * qk, false)?),
                    None,
                ),
                None => (None, None, None, Some(p.linear(&format!("{a}.q_proj"), hid, h * qk, false)?)),
            };
            let r = c.kv_lora_rank;
            let self_attn = MlaAttention {
                q_a_proj,
                q_a_layernorm,
                q_b_proj,
                q_proj,
                kv_a_proj_with_mqa: p.linear(
                    &format!("{a}.kv_a_proj_with_mqa"),
                    hid,
                    r + c.qk_rope_head_dim,
                    c.attention_bias,
                )?,
                kv_a_layernorm: p.norm(&format!("{a}.kv_a_layernorm"), r, eps)?,
                kv_b_proj: p.linear(
                    &format!("{a}.kv_b_proj"),
                    r,
                    h * (c.qk_nope_head_dim + c.v_head_dim),
                    false,
                )?,
                o_proj: p.linear(&format!("{a}.o_proj"), h * c.v_head_dim, hid, c.attention_bias)?,
                num_heads: h,
                nope_dim: c.qk_nope_head_dim,
                rope_dim: c.qk_rope_head_dim,
                v_dim: c.v_head_dim,
                kv_lora_rank: r,
                softmax_scale: c.softmax_scale(),
            };
            let m = format!("{pre}.mlp");
            let mlp = if c.is_moe_layer(i) {
                let e = c.n_routed_experts;
                let bias_name = format!("{m}.gate.e_score_correction_bias");
                let e_score_correction_bias = if p.contains(&bias_name) {
                    Some(p.buffer_f32(&bias_name, e)?)
                } else if c.topk_method == super::config::TopkMethod::NoauxTc {
                    return Err(ModelError::MissingTensor {
                        tensor: bias_name,
                        files: "checkpoint (topk_method noaux_tc needs it)".into(),
                    });
                } else {
                    None
                };
                let experts = (0..e)
                    .map(|x| p.mlp(&format!("{m}.experts.{x}"), hid, c.moe_intermediate_size))
                    .collect::<Result<Vec<_>, _>>()?;
                let shared_experts = if c.n_shared_experts > 0 {
                    Some(p.mlp(
                        &format!("{m}.shared_experts"),
                        hid,
                        c.moe_intermediate_size * c.n_shared_experts,
                    )?)
                } else {
                    None
                };
                DeepseekFfn::Moe(DeepseekMoe {
                    gate: MoeGate {
                        weight: p.matrix(&format!("{m}.gate.weight"), [e, hid])?,
                        e_score_correction_bias,
                    },
                    experts,
                    shared_experts,
                    spec: RouterSpec::new(c),
                })
            } else {
                DeepseekFfn::Dense(p.mlp(&m, hid, c.intermediate_size)?)
            };
            layers.push(DecoderLayer {
                input_layernorm: p.norm(&format!("{pre}.input_layernorm"), hid, eps)?,
                self_attn,
                post_attention_layernorm: p.norm(&format!("{pre}.post_attention_layernorm"), hid, eps)?,
                mlp,
            });
            tracing::debug!(layer = i, "loaded decoder layer");
        }
        let norm = p.norm("model.norm", hid, eps)?;
        let lm_head: Option<HfLinear<B>> = if c.tie_word_embeddings {
            None
        } else {
            Some(p.linear("lm_head", hid, c.vocab_size, false)?)
        };
        let rope = RopeFrequencies::new(c);
        Ok(DeepseekV3ForCausalLM {
            model: DeepseekV3Model { embed_tokens, layers, norm },
            lm_head,
            model_config: model_config.clone(),
            config,
            rope,
        })
    }
}

