//! [`Model`]: every architecture behind one type, so commands and stage crates load "a
//! checkpoint" without caring which family it is.
//!
//! Adding an architecture = one variant here, one in [`ModelCache`], and one arm in each match.

use burn::prelude::*;
use burn::tensor::DType;

use crate::config::{Architecture, ModelConfig};
use crate::decoder::DecoderForCausalLM;
use crate::deepseek::{DeepseekV3ForCausalLM, MlaCache};
use crate::error::ModelError;
use crate::kv_cache::DecoderCache;
use crate::lm::{CachedInput, CausalLm, ForwardInput, HiddenStates, KvCache};
use crate::weights::WeightSource;

/// Any supported causal LM. Module paths skip the variant name (see [`crate::save_model`]),
/// so saved tensor names are the HF names.
// One value per loaded model: the variant size difference is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model<B: Backend> {
    /// Qwen2 / Llama.
    Decoder(DecoderForCausalLM<B>),
    /// DeepSeek-V3 / R1 (MLA + MoE).
    DeepseekV3(DeepseekV3ForCausalLM<B>),
}

/// The KV cache matching a [`Model`] variant.
#[derive(Clone, Debug)]
pub enum ModelCache<B: Backend> {
    /// Cache of [`Model::Decoder`].
    Decoder(DecoderCache<B>),
    /// Latent cache of [`Model::DeepseekV3`].
    DeepseekV3(MlaCache<B>),
}

impl<B: Backend> Model<B> {
    /// Builds the architecture `config` names from `weights`.
    pub fn load<W: WeightSource<B>>(config: &ModelConfig, weights: &mut W) -> Result<Self, ModelError> {
        match config.architecture {
            Architecture::Qwen2 | Architecture::Llama => Ok(Model::Decoder(DecoderForCausalLM::<B>::load(config, weights)?)),
            Architecture::DeepseekV3 => Ok(Model::DeepseekV3(DeepseekV3ForCausalLM::load(config, weights)?)),
        }
    }

    /// Parameter count (tied embeddings once).
    pub fn param_count(&self) -> usize {
        self.num_params()
    }
}

macro_rules! cache_dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            ModelCache::Decoder($c) => $e,
            ModelCache::DeepseekV3($c) => $e,
        }
    };
}

impl<B: Backend> KvCache for ModelCache<B> {
    fn num_slots(&self) -> usize {
        cache_dispatch!(self, c => c.num_slots())
    }
    fn capacity(&self) -> usize {
        cache_dispatch!(self, c => c.capacity())
    }
    fn len(&self, slot: usize) -> usize {
        cache_dispatch!(self, c => c.len(slot))
    }
    fn reset(&mut self, slot: usize) {
        cache_dispatch!(self, c => c.reset(slot))
    }
    fn bytes(&self) -> usize {
        cache_dispatch!(self, c => c.bytes())
    }
}

impl<B: Backend> CausalLm<B> for Model<B> {
    type Cache = ModelCache<B>;

    fn config(&self) -> &ModelConfig {
        match self {
            Model::Decoder(m) => m.config(),
            Model::DeepseekV3(m) => m.config(),
        }
    }
    fn device(&self) -> B::Device {
        match self {
            Model::Decoder(m) => m.device(),
            Model::DeepseekV3(m) => m.device(),
        }
    }
    fn dtype(&self) -> DType {
        match self {
            Model::Decoder(m) => m.dtype(),
            Model::DeepseekV3(m) => m.dtype(),
        }
    }
    fn forward_hidden(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        match self {
            Model::Decoder(m) => m.forward_hidden(input),
            Model::DeepseekV3(m) => m.forward_hidden(input),
        }
    }
    fn forward_hidden_states(&self, input: ForwardInput<B>) -> HiddenStates<B> {
        match self {
            Model::Decoder(m) => m.forward_hidden_states(input),
            Model::DeepseekV3(m) => m.forward_hidden_states(input),
        }
    }
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Model::Decoder(m) => m.logits(hidden),
            Model::DeepseekV3(m) => m.logits(hidden),
        }
    }
    fn new_cache(&self, slots: usize, capacity: usize) -> ModelCache<B> {
        match self {
            Model::Decoder(m) => ModelCache::Decoder(m.new_cache(slots, capacity)),
            Model::DeepseekV3(m) => ModelCache::DeepseekV3(m.new_cache(slots, capacity)),
        }
    }
    fn forward_cached(&self, input: CachedInput<B>, cache: &mut ModelCache<B>) -> Result<Tensor<B, 3>, ModelError> {
        match (self, cache) {
            (Model::Decoder(m), ModelCache::Decoder(c)) => m.forward_cached(input, c),
            (Model::DeepseekV3(m), ModelCache::DeepseekV3(c)) => m.forward_cached(input, c),
            #[allow(unreachable_patterns)]
            _ => Err(ModelError::InvalidInput("cache belongs to a different architecture".into())),
        }
    }
}

/// Lets engines and helpers take a model by reference.
impl<B: Backend, M: CausalLm<B>> CausalLm<B> for &M {
    type Cache = M::Cache;
    fn config(&self) -> &ModelConfig {
        (**self).config()
    }
    fn device(&self) -> B::Device {
        (**self).device()
    }
    fn dtype(&self) -> DType {
        (**self).dtype()
    }
    fn forward_hidden(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        (**self).forward_hidden(input)
    }
    fn forward_hidden_states(&self, input: ForwardInput<B>) -> HiddenStates<B> {
        (**self).forward_hidden_states(input)
    }
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        (**self).logits(hidden)
    }
    fn forward(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        (**self).forward(input)
    }
    fn new_cache(&self, slots: usize, capacity: usize) -> Self::Cache {
        (**self).new_cache(slots, capacity)
    }
    fn forward_cached(&self, input: CachedInput<B>, cache: &mut Self::Cache) -> Result<Tensor<B, 3>, ModelError> {
        (**self).forward_cached(input, cache)
    }
}
