//! Small building blocks with HF parameter names: RMSNorm (`weight`), SwiGLU MLP
//! (`gate_proj`/`up_proj`/`down_proj`), and constructors from checkpoint tensors.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{activation::silu, backend::Backend, DType, FloatDType, Tensor};

use crate::error::ModelError;
use crate::weights::WeightSource;

/// HF-style RMSNorm: the mean square and normalisation in f32 whatever the activation dtype
/// (as transformers does), then the weight multiply in the activation dtype.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel gain (`…norm.weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalises the last dim of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let xf = x.cast(FloatDType::F32);
        let inv = (xf.clone().square().mean_dim(D - 1) + self.eps).sqrt().recip();
        let normed = (xf * inv).cast(dtype);
        normed * self.weight.val().unsqueeze()
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) · up(x))`. Dense layers, routed and shared experts.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate branch (SiLU).
    pub gate_proj: Linear<B>,
    /// Linear branch.
    pub up_proj: Linear<B>,
    /// Output projection.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Applies the MLP to `[…, hidden]` rows.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let g = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(g * self.up_proj.forward(x))
    }

    /// Intermediate width.
    pub fn width(&self) -> usize {
        self.gate_proj.weight.val().dims()[1]
    }
}

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

    /// A Linear from HF `[out, in]` weights (stored as Burn's `[in, out]`).
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>, ModelError> {
        let w = self.weights.tensor(&format!("{prefix}.weight"), [d_out, d_in])?;
        let weight = Param::from_tensor(w.transpose());
        let bias = if bias {
            Some(Param::from_tensor(self.weights.tensor(&format!("{prefix}.bias"), [d_out])?))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// An RMSNorm from `prefix.weight`.
    pub fn norm(&mut self, prefix: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, ModelError> {
        Ok(RmsNorm { weight: Param::from_tensor(self.weights.tensor(&format!("{prefix}.weight"), [dim])?), eps })
    }

    /// A SwiGLU MLP under `prefix`.
    pub fn mlp(&mut self, prefix: &str, hidden: usize, inter: usize) -> Result<Mlp<B>, ModelError> {
        Ok(Mlp {
            gate_proj: self.linear(&format!("{prefix}.gate_proj"), hidden, inter, false)?,
            up_proj: self.linear(&format!("{prefix}.up_proj"), hidden, inter, false)?,
            down_proj: self.linear(&format!("{prefix}.down_proj"), inter, hidden, false)?,
        })
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
