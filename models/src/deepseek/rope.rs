//! Rotary position embedding of DeepSeek-V3's rope sub-space, with DeepSeek's YaRN.
//!
//! Frequencies and cos/sin are computed on the host in f64 for exactly the positions of a
//! forward call (a 128K-position table would be wasted memory), then uploaded once per call and
//! shared by every layer.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::config::DeepseekV3Config;

/// `yarn_get_mscale`: the attention-magnitude correction for a context extension `scale`.
pub fn yarn_get_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// Host-side rotary parameters of one model: inverse frequencies of the `qk_rope_head_dim`/2
/// pairs and the cos/sin magnitude (≠ 1 only under YaRN with unequal mscales).
#[derive(Clone, Debug)]
pub struct RopeFrequencies {
    /// Angle per position of each rotated pair.
    pub inv_freq: Vec<f64>,
    /// Multiplier on cos and sin (transformers' `attention_factor`).
    pub magnitude: f64,
    /// Pairwise-interleaved layout (DeepSeek) vs rotate-half.
    pub interleaved: bool,
}

impl RopeFrequencies {
    /// Frequencies as transformers' `rope_init_fn` computes them for this config.
    pub fn new(cfg: &DeepseekV3Config) -> Self {
        let dim = cfg.qk_rope_head_dim;
        let base = cfg.rope_theta;
        let extra: Vec<f64> =
            (0..dim / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / dim as f64)).collect();
        let Some(y) = &cfg.rope_scaling else {
            return Self { inv_freq: extra, magnitude: 1.0, interleaved: cfg.rope_interleave };
        };
        let factor = y.rope_factor;
        let orig = y.original_max_position_embeddings as f64;
        // DeepSeek's yarn_find_correction_dim / range (floor/ceil, clamped to [0, dim-1]).
        let corr_dim = |rot: f64| {
            (dim as f64 * (orig / (rot * 2.0 * std::f64::consts::PI)).ln())
                / (2.0 * base.ln())
        };
        let low = corr_dim(y.beta_fast).floor().max(0.0);
        let mut high = corr_dim(y.beta_slow).ceil().min(dim as f64 - 1.0);
        if low == high {
            high += 0.001;
        }
        let inv_freq = extra
            .iter()
            .enumerate()
            .map(|(i, &fe)| {
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                let extrapolation = 1.0 - ramp;
                (fe / factor) * (1.0 - extrapolation) + fe * extrapolation
            })
            .collect();
        // transformers' attention_factor rule for yarn.
        let magnitude = match (y.mscale.filter(|m| *m != 0.0), y.mscale_all_dim.filter(|m| *m != 0.0))
        {
            (Some(m), Some(all)) => yarn_get_mscale(factor, m) / yarn_get_mscale(factor, all),
            _ => yarn_get_mscale(factor, 1.0),
        };
        Self { inv_freq, magnitude, interleaved: cfg.rope_interleave }
    }

    /// cos and sin `[rows·len, dim/2]` (already times `magnitude`) for the positions of each
    /// row (all rows the same length).
    pub fn tables<'a, B: Backend>(
        &self,
        rows: impl Iterator<Item = &'a [usize]>,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for row in rows {
            for &p in row {
                for &f in &self.inv_freq {
                    // The angle is rounded to f32 first, as torch computes
                    // `inv_freq.float() @ position.float()`, so long-context positions match.
                    let ang = (f as f32 * p as f32) as f64;
                    cos.push((ang.cos() * self.magnitude) as f32);
                    sin.push((ang.sin() * self.magnitude) as f32);
                }
            }
        }
        let n = cos.len() / half.max(1);
        (
            Tensor::from_data(TensorData::new(cos, [n, half]), device),
            Tensor::from_data(TensorData::new(sin, [n, half]), device),
        )
    }
}

/// Rotates `x` `[b, h, t, d]` by the tables `[R, 1, t, d/2]` (R = 1 or b, broadcast over heads).
///
/// Interleaved: pairs `(x[2i], x[2i+1])` rotate by angle `i` and stay interleaved (transformers
/// de-interleaves q and k alike, which yields the same dot products). Otherwise rotate-half.
pub fn apply_rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    interleaved: bool,
) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let half = d / 2;
    let r = cos.dims()[0];
    if interleaved {
        let x = x.reshape([b, h, t, half, 2]);
        let x0 = x.clone().narrow(4, 0, 1);
        let x1 = x.narrow(4, 1, 1);
        let c = cos.clone().reshape([r, 1, t, half, 1]);
        let s = sin.clone().reshape([r, 1, t, half, 1]);
        let r0 = x0.clone() * c.clone() - x1.clone() * s.clone();
        let r1 = x0 * s + x1 * c;
        Tensor::cat(vec![r0, r1], 4).reshape([b, h, t, d])
    } else {
        let a = x.clone().narrow(3, 0, half);
        let bb = x.narrow(3, half, half);
        let (c, s) = (cos.clone(), sin.clone());
        Tensor::cat(vec![a.clone() * c.clone() - bb.clone() * s.clone(), bb * c + a * s], 3)
    }
}
