//! The Qwen2 / Llama decoder (`Qwen2ForCausalLM`, `LlamaForCausalLM`).
//!
//! Module field paths equal HF tensor names (`model.layers.3.self_attn.q_proj.weight`), so
//! loading asks for exactly the names in the file and saving writes them back unchanged.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::embedding;
use burn::tensor::DType;

use crate::attention::{Attention, FullMask};
use crate::config::{Architecture, ModelConfig};
use crate::error::ModelError;
use crate::kv_cache::DecoderCache;
use crate::layers::{HfLinear, HfRmsNorm, Mlp};
use crate::lm::{CachedInput, CausalLm, ForwardInput, HiddenStates, OutputProjection};
use crate::plan::CachePlan;
use crate::rope::RopeFreqs;
use crate::weights::WeightSource;

/// Token embedding table `weight [vocab, hidden]` (same layout as torch).
#[derive(Module, Debug)]
pub struct HfEmbedding<B: Backend> {
    /// `[vocab, hidden]`.
    pub weight: Param<Tensor<B, 2>>,
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// Feed-forward.
    pub mlp: Mlp<B>,
    /// Norm before attention.
    pub input_layernorm: HfRmsNorm<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: HfRmsNorm<B>,
}

/// The `model.` part: embeddings, blocks, final norm.
#[derive(Module, Debug)]
pub struct DecoderModel<B: Backend> {
    /// Token embeddings.
    pub embed_tokens: HfEmbedding<B>,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final RMSNorm.
    pub norm: HfRmsNorm<B>,
}

/// A Qwen2 or Llama causal LM.
#[derive(Module, Debug)]
pub struct DecoderForCausalLM<B: Backend> {
    /// Body.
    pub model: DecoderModel<B>,
    /// Output projection; `None` when embeddings are tied.
    pub lm_head: Option<HfLinear<B>>,
    /// The config it was built from.
    pub config: ModelConfig,
    /// RoPE frequencies.
    pub rope: RopeFreqs,
}

impl<B: Backend> DecoderLayer<B> {
    pub(crate) fn forward(&self, x: Tensor<B, 3>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>, mask: &FullMask<B>) -> Tensor<B, 3> {
        let h = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), cos, sin, mask);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }

    fn forward_cached(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        kv: &mut crate::kv_cache::LayerKv<B>,
        plan: &CachePlan,
    ) -> Tensor<B, 3> {
        let h = x.clone() + self.self_attn.forward_cached(self.input_layernorm.forward(x), cos, sin, kv, plan);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

impl<B: Backend> DecoderForCausalLM<B> {
    /// Builds the model from `weights`, asking for every tensor by HF name. Tied models read
    /// no `lm_head.weight`; an untied model without one is an error.
    pub fn load<W: WeightSource<B>>(config: &ModelConfig, w: &mut W) -> Result<Self, ModelError> {
        if !matches!(config.architecture, Architecture::Qwen2 | Architecture::Llama) {
            return Err(ModelError::InvalidInput(format!(
                "DecoderForCausalLM cannot build {}",
                config.architecture.class_name()
            )));
        }
        let c = config;
        let (h, eps) = (c.hidden_size, c.rms_norm_eps);
        let embed = HfEmbedding { weight: Param::from_tensor(w.tensor("model.embed_tokens.weight", [c.vocab_size, h])?) };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                self_attn: Attention::<B>::load(
                    w,
                    &format!("{p}.self_attn"),
                    h,
                    c.num_attention_heads,
                    c.num_key_value_heads,
                    c.head_dim,
                    c.attention_bias,
                )?,
                mlp: Mlp::<B>::load(w, &format!("{p}.mlp"), h, c.intermediate_size, c.mlp_bias)?,
                input_layernorm: HfRmsNorm::<B>::load(w, &format!("{p}.input_layernorm"), h, eps)?,
                post_attention_layernorm: HfRmsNorm::<B>::load(w, &format!("{p}.post_attention_layernorm"), h, eps)?,
            });
        }
        let norm = HfRmsNorm::<B>::load(w, "model.norm", h, eps)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(HfLinear::<B>::load(w, "lm_head", h, c.vocab_size, false)?)
        };
        Ok(DecoderForCausalLM {
            model: DecoderModel { embed_tokens: embed, layers, norm },
            lm_head,
            config: c.clone(),
            rope: RopeFreqs::from_config(c)?,
        })
    }

    pub(crate) fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        embedding(self.model.embed_tokens.weight.val(), ids)
    }

    fn run(&self, input: ForwardInput<B>, mut keep: Option<&mut Vec<Tensor<B, 3>>>) -> Tensor<B, 3> {
        use crate::layerwise::{AttentionImpl, LayerwiseLm};
        let ctx = self.layer_ctx(&input, AttentionImpl::Materialise);
        let mut x = self.embed(input.input_ids);
        if let Some(k) = keep.as_deref_mut() {
            k.push(x.clone());
        }
        for i in 0..self.model.layers.len() {
            x = self.layer_forward(i, x, &ctx);
            if let Some(k) = keep.as_deref_mut() {
                k.push(x.clone());
            }
        }
        self.final_norm(x)
    }
}

impl<B: Backend> CausalLm<B> for DecoderForCausalLM<B> {
    type Cache = DecoderCache<B>;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn device(&self) -> B::Device {
        self.model.embed_tokens.weight.val().device()
    }

    fn dtype(&self) -> DType {
        self.model.embed_tokens.weight.val().dtype()
    }

    fn forward_hidden(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        self.run(input, None)
    }

    fn forward_hidden_states(&self, input: ForwardInput<B>) -> HiddenStates<B> {
        let mut kept = Vec::new();
        let final_norm = self.run(input, Some(&mut kept));
        let embed = kept.remove(0);
        HiddenStates { embed, layers: kept, final_norm }
    }

    fn output_projection(&self) -> OutputProjection<'_, B> {
        OutputProjection::head_or_tied(self.lm_head.as_ref(), &self.model.embed_tokens.weight)
    }

    fn new_cache(&self, slots: usize, capacity: usize) -> DecoderCache<B> {
        let c = &self.config;
        DecoderCache::new(c.num_hidden_layers, slots, c.num_key_value_heads, capacity, c.head_dim, &self.device(), self.dtype())
    }

    fn forward_cached(&self, input: CachedInput<B>, cache: &mut DecoderCache<B>) -> Result<Tensor<B, 3>, ModelError> {
        let plan = CachePlan::new(&input, cache)?;
        let positions = plan.positions::<B>(&input.input_ids.device());
        let mut x = self.embed(input.input_ids);
        let (cos, sin) = self.rope.cos_sin(positions, x.dtype());
        for (layer, kv) in self.model.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward_cached(x, &cos, &sin, kv, &plan);
        }
        plan.commit(cache);
        Ok(self.model.norm.forward(x))
    }
}
