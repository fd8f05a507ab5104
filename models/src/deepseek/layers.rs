//! Constructors that build DeepSeek modules from a [`WeightSource`] by HF tensor name, using
//! the crate's HF-layout layers ([`HfLinear`] `[out, in]`, [`HfRmsNorm`], [`Mlp`]) so saving
//! writes the hub names and layouts unchanged.

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::{backend::Backend, DType, Tensor};

use crate::error::ModelError;
use crate::layers::{HfLinear, HfRmsNorm, Mlp};
use crate::weights::WeightSource;

/// Turns named tensors from a [`WeightSource`] into Burn modules with HF names.
pub struct ParamLoader<'a, B: Backend, W: WeightSource<B>> {
    /// Source of tensors (checkpoint or random init).
    pub weights: &'a mut W,
    /// Marker for the backend.
    pub _backend: std::marker::PhantomData<B>,
}

impl<'a, B: Backend, W: WeightSource<B>> ParamLoader<'a, B, W> {
    /// Wraps a weight source.
    pub fn new(weights: &'a mut W) -> Self {
        Self { weights, _backend: std::marker::PhantomData }
    }

    /// Whether the source has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(name)
    }

    /// A linear layer `prefix.weight` `[d_out, d_in]` (+ `prefix.bias`).
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<HfLinear<B>, ModelError> {
        HfLinear::load(self.weights, prefix, d_in, d_out, bias)
    }

    /// An RMSNorm from `prefix.weight`.
    pub fn norm(&mut self, prefix: &str, dim: usize, eps: f64) -> Result<HfRmsNorm<B>, ModelError> {
        HfRmsNorm::load(self.weights, prefix, dim, eps)
    }

    /// A bias-free SwiGLU MLP under `prefix`.
    pub fn mlp(&mut self, prefix: &str, hidden: usize, inter: usize) -> Result<Mlp<B>, ModelError> {
        Mlp::load(self.weights, prefix, hidden, inter, false)
    }

    /// The token embedding `[vocab, hidden]` (same layout in HF and Burn).
    pub fn embedding(&mut self, name: &str, vocab: usize, hidden: usize) -> Result<Embedding<B>, ModelError> {
        Ok(Embedding { weight: Param::from_tensor(self.weights.tensor(name, [vocab, hidden])?) })
    }

    /// A plain 2-D parameter in stored layout (the router weight `[experts, hidden]`).
    pub fn matrix(&mut self, name: &str, shape: [usize; 2]) -> Result<Param<Tensor<B, 2>>, ModelError> {
        Ok(Param::from_tensor(self.weights.tensor(name, shape)?))
    }

    /// A 1-D f32 buffer that is never trained (`e_score_correction_bias`): kept in f32 whatever
    /// the compute dtype, because routing decisions hinge on its small values.
    pub fn buffer_f32(&mut self, name: &str, len: usize) -> Result<Param<Tensor<B, 1>>, ModelError> {
        let t: Tensor<B, 1> = self.weights.tensor(name, [len])?;
        Ok(Param::from_tensor(t.cast(DType::F32)).set_require_grad(false))
    }
}
