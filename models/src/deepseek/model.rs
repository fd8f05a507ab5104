//! `DeepseekV3ForCausalLM`: embedding, decoder layers (MLA + dense MLP or MoE), final norm,
//! lm_head. Module paths mirror the HF tensor names (`model.layers.N.self_attn.q_a_proj`,
//! `model.layers.N.mlp.experts.E.gate_proj`, …); the dense/MoE choice is an enum, so
//! burn-store users must pass `.skip_enum_variants(true)`.

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::{backend::Backend, Bool, DType, Tensor};

use super::attention::{AttnCtx, MlaAttention};
use super::cache::{KvLayout, MlaCache, MlaCacheShape};
use super::config::DeepseekV3Config;
use super::moe::{DeepseekMoe, RouterChoices};
use super::rope::RopeFrequencies;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layers::{HfLinear, HfRmsNorm, Mlp};
use crate::lm::{CachedInput, CausalLm, ForwardInput, HiddenStates, OutputProjection};
use crate::plan::CachePlan;

/// Feed-forward of one layer: dense for the first `first_k_dense_replace` layers, MoE after.
// A handful of these exist per model; boxing would only complicate the module paths.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum DeepseekFfn<B: Backend> {
    /// `mlp.{gate,up,down}_proj`.
    Dense(Mlp<B>),
    /// `mlp.gate`, `mlp.experts.E`, `mlp.shared_experts`.
    Moe(DeepseekMoe<B>),
}

/// One decoder layer (`model.layers.N`).
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Pre-attention norm.
    pub input_layernorm: HfRmsNorm<B>,
    /// MLA.
    pub self_attn: MlaAttention<B>,
    /// Pre-MLP norm.
    pub post_attention_layernorm: HfRmsNorm<B>,
    /// Dense MLP or MoE.
    pub mlp: DeepseekFfn<B>,
}

impl<B: Backend> DecoderLayer<B> {
    pub(crate) fn ffn(&self, h: Tensor<B, 3>, record: bool) -> (Tensor<B, 3>, Option<RouterChoices>) {
        match &self.mlp {
            DeepseekFfn::Dense(m) => (m.forward(h), None),
            DeepseekFfn::Moe(m) => m.forward(h, record),
        }
    }
}

/// The decoder stack (`model.*`).
#[derive(Module, Debug)]
pub struct DeepseekV3Model<B: Backend> {
    /// Token embedding.
    pub embed_tokens: Embedding<B>,
    /// Decoder layers (MTP layers are not loaded).
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: HfRmsNorm<B>,
}

/// The full causal LM.
#[derive(Module, Debug)]
pub struct DeepseekV3ForCausalLM<B: Backend> {
    /// Decoder.
    pub model: DeepseekV3Model<B>,
    /// Output projection; `None` when tied to `embed_tokens`.
    pub lm_head: Option<HfLinear<B>>,
    /// Generic config (what [`CausalLm::config`] returns).
    pub model_config: ModelConfig,
    /// DeepSeek-specific config.
    pub config: DeepseekV3Config,
    /// Rotary frequencies (host side).
    pub rope: RopeFrequencies,
}

/// Everything a traced forward records: hidden states and per-layer router choices
/// (`None` for dense layers).
#[derive(Clone, Debug)]
pub struct DeepseekTrace<B: Backend> {
    /// Residual stream snapshots.
    pub hidden: HiddenStates<B>,
    /// Router choices of every layer.
    pub router: Vec<Option<RouterChoices>>,
}

impl<B: Backend> DeepseekV3ForCausalLM<B> {
    /// Shapes of this model's KV cache.
    pub fn cache_shape(&self) -> MlaCacheShape {
        let c = &self.config;
        MlaCacheShape {
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            kv_lora_rank: c.kv_lora_rank,
            rope_dim: c.qk_rope_head_dim,
            qk_head_dim: c.qk_head_dim(),
            v_head_dim: c.v_head_dim,
        }
    }

    /// A cache in a chosen layout (`Expanded` exists for benchmarks and checks).
    pub fn new_cache_with_layout(&self, slots: usize, capacity: usize, layout: KvLayout) -> MlaCache<B> {
        MlaCache::new(self.cache_shape(), layout, slots, capacity, self.dtype(), &self.device())
    }

    /// cos/sin `[rows, 1, t, half]` for per-row positions (one table row if all rows agree).
    pub(crate) fn rope_ctx(&self, positions: &[Vec<usize>], mask: Option<Tensor<B, 4, Bool>>) -> AttnCtx<B> {
        let device = self.device();
        let rows: Vec<&Vec<usize>> = if positions.iter().all(|p| p == &positions[0]) {
            vec![&positions[0]]
        } else {
            positions.iter().collect()
        };
        let t = rows[0].len();
        let (cos, sin) = self.rope.tables::<B>(rows.iter().map(|r| r.as_slice()), &device);
        let half = self.config.qk_rope_head_dim / 2;
        let dtype = self.dtype();
        AttnCtx {
            cos: cos.reshape([rows.len(), 1, t, half]).cast(dtype),
            sin: sin.reshape([rows.len(), 1, t, half]).cast(dtype),
            mask,
            interleaved: self.rope.interleaved,
        }
    }

    /// Full forward recording what `record` asks for.
    fn run(&self, input: ForwardInput<B>, record: bool) -> (Tensor<B, 3>, Option<DeepseekTrace<B>>) {
        use crate::layerwise::{AttentionImpl, LayerwiseLm};
        let ctx = self.layer_ctx(&input, AttentionImpl::Materialise);
        let mut x = self.model.embed_tokens.forward(input.input_ids);
        let embed = record.then(|| x.clone());
        let mut layers = Vec::new();
        let mut router = Vec::new();
        for i in 0..self.model.layers.len() {
            let (out, choices) = self.layer_forward_record(i, x, &ctx, record);
            x = out;
            if record {
                layers.push(x.clone());
                router.push(choices);
            }
        }
        let out = self.final_norm(x);
        let trace = embed.map(|embed| DeepseekTrace {
            hidden: HiddenStates { embed, layers, final_norm: out.clone() },
            router,
        });
        (out, trace)
    }

    /// Full forward returning hidden states and router choices of every layer (for
    /// comparisons with reference implementations and routing statistics).
    pub fn forward_traced(&self, input: ForwardInput<B>) -> DeepseekTrace<B> {
        self.run(input, true).1.expect("recorded")
    }

    /// Cached forward with an explicit choice of absorbed (latent-space) vs up-projected
    /// attention; [`CausalLm::forward_cached`] absorbs for single-token decode steps.
    pub fn forward_cached_with(
        &self,
        input: CachedInput<B>,
        cache: &mut MlaCache<B>,
        absorb: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let plan = CachePlan::new(&input, cache)?;
        let ctx = self.rope_ctx(&plan.position_rows(), plan.mask(&self.device()));
        let mut x = self.model.embed_tokens.forward(input.input_ids);
        for (li, layer) in self.model.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(x.clone());
            x = x + layer.self_attn.forward_cached(h, &ctx, cache, li, &plan, absorb);
            x = x.clone() + layer.ffn(layer.post_attention_layernorm.forward(x), false).0;
        }
        plan.commit(cache);
        Ok(self.model.norm.forward(x))
    }
}

impl<B: Backend> CausalLm<B> for DeepseekV3ForCausalLM<B> {
    type Cache = MlaCache<B>;

    fn config(&self) -> &ModelConfig {
        &self.model_config
    }

    fn device(&self) -> B::Device {
        self.model.embed_tokens.weight.val().device()
    }

    fn dtype(&self) -> DType {
        self.model.embed_tokens.weight.val().dtype()
    }

    fn forward_hidden(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        self.run(input, false).0
    }

    fn forward_hidden_states(&self, input: ForwardInput<B>) -> HiddenStates<B> {
        self.forward_traced(input).hidden
    }

    fn output_projection(&self) -> OutputProjection<'_, B> {
        OutputProjection::head_or_tied(self.lm_head.as_ref(), &self.model.embed_tokens.weight)
    }

    fn new_cache(&self, slots: usize, capacity: usize) -> MlaCache<B> {
        self.new_cache_with_layout(slots, capacity, KvLayout::Latent)
    }

    fn forward_cached(
        &self,
        input: CachedInput<B>,
        cache: &mut MlaCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        // Decode (one new token per row) attends in latent space; prefill chunks up-project the
        // latents, which costs fewer FLOPs when many queries share them.
        let absorb = input.input_ids.dims()[1] == 1;
        self.forward_cached_with(input, cache, absorb)
    }
}
