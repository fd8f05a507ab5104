//! Rotary position embeddings in transformers' rotate-half layout, with the frequency
//! scalings Llama 3.1 (`llama3`) and position interpolation (`linear`) use.
//!
//! Frequencies are computed in f32 exactly as transformers computes them, and angles are
//! computed from the actual position ids of every forward, so packed documents, left padding
//! and cache offsets all get the right rotation without precomputed tables.

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use crate::config::{ModelConfig, RopeScaling};
use crate::error::ModelError;

/// Inverse frequencies of one model, `[head_dim / 2]`, f32.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeFreqs {
    /// `1 / θ^(2i/d)` after scaling.
    pub inv_freq: Vec<f32>,
    /// Multiplier of cos/sin (1 for default, linear and llama3 RoPE).
    pub attention_scaling: f32,
}

impl RopeFreqs {
    /// Frequencies for a Qwen2/Llama config. YaRN belongs to DeepSeek and is rejected here.
    pub fn from_config(cfg: &ModelConfig) -> Result<Self, ModelError> {
        let dim = cfg.head_dim;
        let base = cfg.rope_theta as f32;
        let mut inv_freq: Vec<f32> =
            (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32)).collect();
        match &cfg.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => {
                inv_freq.iter_mut().for_each(|f| *f /= *factor as f32);
            }
            Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
                let (factor, low, high) = (*factor as f32, *low_freq_factor as f32, *high_freq_factor as f32);
                let old = *original_max_position_embeddings as f32;
                let low_wavelen = old / low;
                let high_wavelen = old / high;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if wavelen > low_wavelen { *f / factor } else { *f };
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let smooth = (old / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * scaled / factor + smooth * scaled;
                    } else {
                        *f = scaled;
                    }
                }
            }
            Some(RopeScaling::Yarn { .. }) => {
                return Err(ModelError::BadValue {
                    path: "config.json".into(),
                    key: "rope_scaling".into(),
                    message: format!("yarn RoPE is only supported for deepseek_v3, not {}", cfg.architecture.model_type()),
                })
            }
        }
        Ok(RopeFreqs { inv_freq, attention_scaling: 1.0 })
    }

    /// cos and sin for `positions [B, T]`, each `[B, 1, T, head_dim / 2]` in `dtype`, ready to
    /// broadcast over heads.
    pub fn cos_sin<B: Backend>(&self, positions: Tensor<B, 2, Int>, dtype: DType) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let device = positions.device();
        let [b, t] = positions.dims();
        let half = self.inv_freq.len();
        let inv = Tensor::<B, 1>::from_data(TensorData::new(self.inv_freq.clone(), [half]), (&device, DType::F32));
        let pos = positions.float().cast(FloatDType::F32).reshape([b, t, 1]);
        let angles = pos * inv.reshape([1, 1, half]);
        let (mut cos, mut sin) = (angles.clone().cos(), angles.sin());
        if self.attention_scaling != 1.0 {
            cos = cos * self.attention_scaling;
            sin = sin * self.attention_scaling;
        }
        let to = |x: Tensor<B, 3>| x.cast(dtype).reshape([b, 1, t, half]);
        (to(cos), to(sin))
    }
}

/// Rotates `x [B, H, T, D]` by the angles whose cos/sin are `[B, 1, T, D/2]`
/// (transformers' `q * cos + rotate_half(q) * sin`).
pub fn apply_rope<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let half = d / 2;
    let c = cos.clone().expand([b, h, t, half]);
    let s = sin.clone().expand([b, h, t, half]);
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    Tensor::cat(vec![x1.clone() * c.clone() - x2.clone() * s.clone(), x2 * c + x1 * s], 3)
}

/// [`apply_rope`] on the projection's own `[B, T, H, D]` layout (before the heads are swapped
/// to dim 1), bit for bit: `x ⊙ [c, c] + (x · R) ⊙ [s, s]`, where `R` is the `[D, D]`
/// rotate-half matrix (one ±1 per column, so `x · R = rotate_half(x)` exactly) and the tables
/// broadcast over rows and heads.
///
/// Why: [`apply_rope`] on the swapped (strided) view runs half a dozen element-wise ops over
/// strided halves plus a `cat`, each walking its input index by index on one thread; here
/// every op reads contiguous memory and the rotation is one small GEMM (also under autodiff,
/// where both forms are differentiated as they are written).
pub fn apply_rope_bthd<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, t, h, d] = x.dims();
    let half = d / 2;
    let full = |tab: &Tensor<B, 4>| {
        let tab = tab.clone().swap_dims(1, 2); // [B|1, T, 1, D/2]
        Tensor::cat(vec![tab.clone(), tab], 3).expand([b, t, h, d])
    };
    let mut r = vec![0f32; d * d];
    for j in 0..half {
        r[(j + half) * d + j] = -1.0; // out[j] = −x[j + D/2]
        r[j * d + j + half] = 1.0; // out[j + D/2] = x[j]
    }
    let r = Tensor::<B, 2>::from_data(TensorData::new(r, [d, d]), (&x.device(), DType::F32)).cast(x.dtype());
    let rotated = x.clone().reshape([b * t * h, d]).matmul(r).reshape([b, t, h, d]);
    x * full(cos) + rotated * full(sin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The `[B, T, H, D]` form gives exactly the bits of transformers' form on the swapped
    /// view, for one table shared by the rows and for one table per row.
    #[test]
    fn bthd_form_is_bit_identical() {
        let dev = Default::default();
        let (b, t, h, d) = (2, 7, 3, 8);
        let x = Tensor::<Flex, 4>::random([b, t, h, d], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let freqs = RopeFreqs { inv_freq: (0..d / 2).map(|i| 1.0 / 10_000f32.powf(2.0 * i as f32 / d as f32)).collect(), attention_scaling: 1.0 };
        for rows in [1, b] {
            let pos: Vec<i64> = (0..rows * t).map(|i| (i * 3 % 11) as i64).collect();
            let (cos, sin) = freqs.cos_sin(Tensor::<Flex, 2, Int>::from_data(TensorData::new(pos, [rows, t]), &dev), DType::F32);
            let want = apply_rope(x.clone().swap_dims(1, 2), &cos, &sin);
            let got = apply_rope_bthd(x.clone(), &cos, &sin).swap_dims(1, 2);
            assert_eq!(got.into_data().to_vec::<f32>().unwrap(), want.into_data().to_vec::<f32>().unwrap(), "{rows} table row(s)");
        }
    }
}
