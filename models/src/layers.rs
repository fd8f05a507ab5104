//! Building blocks with Hugging Face parameter names and layouts.
//!
//! Burn's own `Linear` stores `[in, out]` and `RmsNorm` calls its weight `gamma`; ours keep
//! PyTorch's `[out, in]` `weight` and `weight` so module paths *are* HF tensor names and no
//! transpose happens at load or save time. `[out, in]` row-major is also the natural layout
//! for a decode GEMV (each output is a dot product with one contiguous row).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::error::ModelError;
use crate::weights::WeightSource;

/// `y = x Wᵀ + b` with `weight [out, in]` as in `torch.nn.Linear`.
#[derive(Module, Debug)]
pub struct HfLinear<B: Backend> {
    /// `[out_features, in_features]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out_features]`, when the layer has a bias.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> HfLinear<B> {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn load<W: WeightSource<B>>(
        w: &mut W,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self, ModelError> {
        let weight = Param::from_tensor(w.tensor(&format!("{prefix}.weight"), [out_features, in_features])?);
        let bias = if bias {
            Some(Param::from_tensor(w.tensor(&format!("{prefix}.bias"), [out_features])?))
        } else {
            None
        };
        Ok(HfLinear { weight, bias })
    }

    /// Applies the layer to `[..., in]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let w = self.weight.val();
        let [out, inp] = w.dims();
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let x2 = x.reshape([rows, inp]);
        let y = crate::backend_ext::linear(x2, w);
        let y = match &self.bias {
            Some(b) => y + b.val().unsqueeze::<2>(),
            None => y,
        };
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        y.reshape(out_dims)
    }
}

/// RMSNorm as transformers computes it: in f32, `x / sqrt(mean(x²) + eps)`, cast back to the
/// input dtype, then times `weight`.
#[derive(Module, Debug)]
pub struct HfRmsNorm<B: Backend> {
    /// `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> HfRmsNorm<B> {
    /// Loads `{prefix}.weight`.
    pub fn load<W: WeightSource<B>>(w: &mut W, prefix: &str, dim: usize, eps: f64) -> Result<Self, ModelError> {
        Ok(HfRmsNorm { weight: Param::from_tensor(w.tensor(&format!("{prefix}.weight"), [dim])?), eps })
    }

    /// Normalises the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let xf = x.cast(FloatDType::F32);
        let ms = xf.clone().square().mean_dim(D - 1);
        let normed = (xf * (ms + self.eps).sqrt().recip()).cast(dtype);
        normed * self.weight.val().unsqueeze::<D>()
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate branch (through SiLU).
    pub gate_proj: HfLinear<B>,
    /// Linear branch.
    pub up_proj: HfLinear<B>,
    /// Back to hidden size.
    pub down_proj: HfLinear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Loads `{prefix}.{gate,up,down}_proj`.
    pub fn load<W: WeightSource<B>>(
        w: &mut W,
        prefix: &str,
        hidden: usize,
        intermediate: usize,
        bias: bool,
    ) -> Result<Self, ModelError> {
        Ok(Mlp {
            gate_proj: HfLinear::<B>::load(w, &format!("{prefix}.gate_proj"), hidden, intermediate, bias)?,
            up_proj: HfLinear::<B>::load(w, &format!("{prefix}.up_proj"), hidden, intermediate, bias)?,
            down_proj: HfLinear::<B>::load(w, &format!("{prefix}.down_proj"), intermediate, hidden, bias)?,
        })
    }

    /// Applies the MLP to `[..., hidden]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let act = crate::backend_ext::swiglu(self.gate_proj.forward(x.clone()), self.up_proj.forward(x));
        self.down_proj.forward(act)
    }
}
