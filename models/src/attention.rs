//! Grouped-query self-attention of the Qwen2/Llama decoder, for full sequences and for
//! cached generation.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, FloatDType};

use crate::error::ModelError;
use crate::backend_ext::assign_in_place;
use crate::kv_cache::LayerKv;
use crate::layers::HfLinear;
use crate::plan::CachePlan;
use crate::rope::apply_rope_bthd;
use crate::weights::WeightSource;

/// Which keys a full-sequence forward may attend to, resolved to what the attention kernel
/// takes.
#[derive(Clone, Debug)]
pub enum FullMask<B: Backend> {
    /// Causal only: the kernel's `is_causal` fast path (flash kernels on GPU).
    Causal,
    /// Explicit mask `[B, 1, T, T]`, `true` = masked.
    Explicit(Tensor<B, 4, Bool>),
}

/// `self_attn` of one decoder layer.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection `[heads·head_dim, hidden]`.
    pub q_proj: HfLinear<B>,
    /// Key projection `[kv_heads·head_dim, hidden]`.
    pub k_proj: HfLinear<B>,
    /// Value projection `[kv_heads·head_dim, hidden]`.
    pub v_proj: HfLinear<B>,
    /// Output projection `[hidden, heads·head_dim]`.
    pub o_proj: HfLinear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Repeats each kv head `n` times: `[B, Hkv, T, D]` → `[B, Hkv·n, T, D]` (transformers'
/// `repeat_kv`, head `h` uses kv head `h / n`).
pub fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n: usize) -> Tensor<B, 4> {
    if n == 1 {
        return x;
    }
    let [b, h, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2).expand([b, h, n, t, d]).reshape([b, h * n, t, d])
}

impl<B: Backend> Attention<B> {
    /// Loads `{prefix}.{q,k,v,o}_proj`.
    pub fn load<W: WeightSource<B>>(
        w: &mut W,
        prefix: &str,
        hidden: usize,
        num_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        qkv_bias: bool,
    ) -> Result<Self, ModelError> {
        Ok(Attention {
            q_proj: HfLinear::<B>::load(w, &format!("{prefix}.q_proj"), hidden, num_heads * head_dim, qkv_bias)?,
            k_proj: HfLinear::<B>::load(w, &format!("{prefix}.k_proj"), hidden, num_kv_heads * head_dim, qkv_bias)?,
            v_proj: HfLinear::<B>::load(w, &format!("{prefix}.v_proj"), hidden, num_kv_heads * head_dim, qkv_bias)?,
            o_proj: HfLinear::<B>::load(w, &format!("{prefix}.o_proj"), num_heads * head_dim, hidden, false)?,
            num_heads,
            num_kv_heads,
            head_dim,
        })
    }

    /// Projects `x [B, T, H]` to rotated q `[B, Hq, T, D]`, k and v `[B, Hkv, T, D]`.
    pub(crate) fn qkv(&self, x: Tensor<B, 3>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t, _] = x.dims();
        let (hq, hk, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // Rope on the projections' own [B, T, H, d] layout, then heads to dim 1 (strided views).
        let q = apply_rope_bthd(self.q_proj.forward(x.clone()).reshape([b, t, hq, d]), cos, sin).swap_dims(1, 2);
        let k = apply_rope_bthd(self.k_proj.forward(x.clone()).reshape([b, t, hk, d]), cos, sin).swap_dims(1, 2);
        let v = self.v_proj.forward(x).reshape([b, t, hk, d]).swap_dims(1, 2);
        (q, k, v)
    }

    pub(crate) fn output(&self, ctx: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, h, t, d] = ctx.dims();
        self.o_proj.forward(ctx.swap_dims(1, 2).reshape([b, t, h * d]))
    }

    /// Full-sequence attention (training / scoring).
    pub fn forward(&self, x: Tensor<B, 3>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>, mask: &FullMask<B>) -> Tensor<B, 3> {
        let (q, k, v) = self.qkv(x, cos, sin);
        let rep = self.num_heads / self.num_kv_heads;
        let (k, v) = (repeat_kv(k, rep), repeat_kv(v, rep));
        let ctx = match mask {
            FullMask::Causal => {
                attention(q, k, v, None, None, AttentionModuleOptions { is_causal: true, ..Default::default() })
            }
            FullMask::Explicit(m) => {
                let [b, h, t, _] = q.dims();
                let m = m.clone().expand([b, h, t, t]);
                attention(q, k, v, Some(m), None, AttentionModuleOptions::default())
            }
        };
        self.output(ctx)
    }

    /// Cached attention: writes this call's keys/values into `kv` per `plan`, then attends
    /// over each row's cached prefix plus its new tokens.
    pub fn forward_cached(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        kv: &mut LayerKv<B>,
        plan: &CachePlan,
    ) -> Tensor<B, 3> {
        let (q, k_new, v_new) = self.qkv(x, cos, sin);
        let n = plan.slots.len();
        let [_, hk, _, d] = k_new.dims();
        let capacity = kv.k.dims()[2];
        if plan.contiguous && plan.offsets.iter().all(|&o| o == plan.offsets[0]) && plan.lengths.iter().all(|&l| l == plan.t) && plan.offsets[0] + plan.t <= capacity {
            let o = plan.offsets[0];
            assign_in_place(&mut kv.k, [0..n, 0..hk, o..o + plan.t, 0..d], k_new);
            assign_in_place(&mut kv.v, [0..n, 0..hk, o..o + plan.t, 0..d], v_new);
        } else {
            for r in 0..n {
                let (s, o, l) = (plan.slots[r], plan.offsets[r], plan.lengths[r]);
                if l == 0 {
                    continue;
                }
                let kr = k_new.clone().slice([r..r + 1, 0..hk, 0..l, 0..d]);
                let vr = v_new.clone().slice([r..r + 1, 0..hk, 0..l, 0..d]);
                assign_in_place(&mut kv.k, [s..s + 1, 0..hk, o..o + l, 0..d], kr);
                assign_in_place(&mut kv.v, [s..s + 1, 0..hk, o..o + l, 0..d], vr);
            }
        }
        let lk = plan.key_len;
        let read = |c: &Tensor<B, 4>| -> Tensor<B, 4> {
            if plan.contiguous {
                c.clone().slice([0..n, 0..hk, 0..lk, 0..d])
            } else {
                let idx: Vec<i64> = plan.slots.iter().map(|&s| s as i64).collect();
                let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n]), &c.device());
                c.clone().slice([0..c.dims()[0], 0..hk, 0..lk, 0..d]).select(0, idx)
            }
        };
        let (k, v) = (read(&kv.k), read(&kv.v));
        let ctx = if plan.t == 1 {
            self.grouped_decode(q, k, v, plan)
        } else {
            let rep = self.num_heads / self.num_kv_heads;
            let (k, v) = (repeat_kv(k, rep), repeat_kv(v, rep));
            match plan.mask::<B>(&q.device()) {
                None => attention(q, k, v, None, None, AttentionModuleOptions { is_causal: true, ..Default::default() }),
                Some(mask) => {
                    let mask = mask.expand([n, self.num_heads, plan.t, lk]);
                    attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
                }
            }
        };
        self.output(ctx)
    }

    /// One new token per row: query heads of a group share their kv head without copying it.
    fn grouped_decode(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, plan: &CachePlan) -> Tensor<B, 4> {
        let [n, hk, lk, d] = k.dims();
        let rep = self.num_heads / hk;
        let dtype = q.dtype();
        let q = q.reshape([n, hk, rep, d]);
        let scores = q.matmul(k.swap_dims(2, 3)).cast(FloatDType::F32) * (1.0 / (d as f64).sqrt());
        let mask = plan.key_mask::<B>(&scores.device()).expand([n, hk, rep, lk]);
        let probs = softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
        let probs = if dtype == DType::F32 { probs } else { probs.cast(dtype) };
        probs.matmul(v).reshape([n, self.num_heads, 1, d])
    }
}
