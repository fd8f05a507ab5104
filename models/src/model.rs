//! [`Model`]: every architecture behind one type, so commands and stage crates load "a
//! checkpoint" without caring which family it is.
//!
//! Adding an architecture = one variant in [`Model`] and [`ModelCache`], one arm in
//! [`Model::load`], and one line in each rule of [`dispatch!`], the only place that matches
//! on the variants (it also serves [`crate::LayerwiseLm`]).

use burn::prelude::*;
use burn::tensor::DType;

use crate::config::{Architecture, ModelConfig};
use crate::decoder::DecoderForCausalLM;
use crate::deepseek::{DeepseekV3ForCausalLM, MlaCache};
use crate::error::ModelError;
use crate::kv_cache::DecoderCache;
use crate::lm::{CachedInput, CausalLm, ForwardInput, HiddenStates, KvCache, OutputProjection, SlotLengths};
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

/// Enum dispatch over the architectures, generated in one place:
/// * `dispatch!(each Model, value, m => expr)`: `expr` on whichever variant `value` holds
///   (also `each ModelCache`);
/// * `dispatch!(cache_of value, m => expr)`: `expr` builds the cache of the same variant;
/// * `dispatch!(pair (model, cache), (m, c) => expr, else mismatch)`: a model with its own
///   architecture's cache, `mismatch` otherwise.
macro_rules! dispatch {
    (each $enum:ident, $value:expr, $m:ident => $e:expr) => {
        match $value {
            $enum::Decoder($m) => $e,
            $enum::DeepseekV3($m) => $e,
        }
    };
    (cache_of $value:expr, $m:ident => $e:expr) => {
        match $value {
            Model::Decoder($m) => ModelCache::Decoder($e),
            Model::DeepseekV3($m) => ModelCache::DeepseekV3($e),
        }
    };
    (pair ($model:expr, $cache:expr), ($m:ident, $c:ident) => $e:expr, else $mismatch:expr) => {
        match ($model, $cache) {
            (Model::Decoder($m), ModelCache::Decoder($c)) => $e,
            (Model::DeepseekV3($m), ModelCache::DeepseekV3($c)) => $e,
            #[allow(unreachable_patterns)]
            _ => $mismatch,
        }
    };
}
pub(crate) use dispatch;

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

impl<B: Backend> KvCache for ModelCache<B> {
    fn slot_lengths(&self) -> &SlotLengths {
        dispatch!(each ModelCache, self, c => c.slot_lengths())
    }
    fn slot_lengths_mut(&mut self) -> &mut SlotLengths {
        dispatch!(each ModelCache, self, c => c.slot_lengths_mut())
    }
    fn bytes(&self) -> usize {
        dispatch!(each ModelCache, self, c => c.bytes())
    }
}

impl<B: Backend> CausalLm<B> for Model<B> {
    type Cache = ModelCache<B>;

    fn config(&self) -> &ModelConfig {
        dispatch!(each Model, self, m => m.config())
    }
    fn device(&self) -> B::Device {
        dispatch!(each Model, self, m => m.device())
    }
    fn dtype(&self) -> DType {
        dispatch!(each Model, self, m => m.dtype())
    }
    fn forward_hidden(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        dispatch!(each Model, self, m => m.forward_hidden(input))
    }
    fn forward_hidden_states(&self, input: ForwardInput<B>) -> HiddenStates<B> {
        dispatch!(each Model, self, m => m.forward_hidden_states(input))
    }
    fn output_projection(&self) -> OutputProjection<'_, B> {
        dispatch!(each Model, self, m => m.output_projection())
    }
    fn new_cache(&self, slots: usize, capacity: usize) -> ModelCache<B> {
        dispatch!(cache_of self, m => m.new_cache(slots, capacity))
    }
    fn forward_cached(&self, input: CachedInput<B>, cache: &mut ModelCache<B>) -> Result<Tensor<B, 3>, ModelError> {
        dispatch!(pair (self, cache), (m, c) => m.forward_cached(input, c),
            else Err(ModelError::InvalidInput("cache belongs to a different architecture".into())))
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
    fn output_projection(&self) -> OutputProjection<'_, B> {
        (**self).output_projection()
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
