//! Multi-head Latent Attention exactly as transformers' `DeepseekV3Attention`, plus the
//! weight-absorbed form used at decode time over the latent cache.
//!
//! Projections: `q = q_b_proj(q_a_layernorm(q_a_proj(x)))` (or `q_proj(x)`), split per head into
//! `q_nope` / `q_pe`; `kv_a_proj_with_mqa(x)` splits into the latent `c` (then
//! `kv_a_layernorm`) and one rope key `k_pe` shared by all heads; `kv_b_proj(c)` gives per-head
//! `k_nope` and `v`.
//!
//! Absorption: with `kv_b_proj = [W_uk; W_uv]` per head, `q_nope·k_nope = (W_ukᵀ q_nope)·c` and
//! `Σ p·v = W_uv (Σ p·c)`, so attention runs over the cached `[c, k_pe]` directly and the
//! up-projection is applied once to the query and once to the output.

use burn::module::Module;
use burn::tensor::{
    activation::softmax, backend::Backend, module::attention, ops::AttentionModuleOptions, Bool,
    FloatDType, Tensor,
};

use super::cache::{KvLayout, MlaCache};
use crate::layers::{HfLinear, HfRmsNorm};
use crate::plan::CachePlan;
use super::rope::apply_rope;

/// Per-forward inputs shared by every layer: rotary tables and the attention mask.
#[derive(Clone, Debug)]
pub struct AttnCtx<B: Backend> {
    /// cos `[R, 1, T, rope/2]` (R = 1 or batch) for the new tokens' positions.
    pub cos: Tensor<B, 4>,
    /// sin, same shape.
    pub sin: Tensor<B, 4>,
    /// `[b, 1, T, S]`, `true` = masked; `None` = plain causal (bottom-right aligned).
    pub mask: Option<Tensor<B, 4, Bool>>,
    /// Pairwise-interleaved rope layout.
    pub interleaved: bool,
}

/// `self_attn` of a DeepSeek-V3 layer. Field names are the HF ones.
#[derive(Module, Debug)]
pub struct MlaAttention<B: Backend> {
    /// Query down-projection (`q_lora_rank` set).
    pub q_a_proj: Option<HfLinear<B>>,
    /// Norm of the query latent.
    pub q_a_layernorm: Option<HfRmsNorm<B>>,
    /// Query up-projection to `heads × qk_head_dim`.
    pub q_b_proj: Option<HfLinear<B>>,
    /// Plain query projection (`q_lora_rank` null).
    pub q_proj: Option<HfLinear<B>>,
    /// Joint KV down-projection + rope key: `kv_lora_rank + qk_rope_head_dim` outputs.
    pub kv_a_proj_with_mqa: HfLinear<B>,
    /// Norm of the KV latent (what the cache stores).
    pub kv_a_layernorm: HfRmsNorm<B>,
    /// Latent → per-head `[k_nope, v]`.
    pub kv_b_proj: HfLinear<B>,
    /// Output projection from `heads × v_head_dim`.
    pub o_proj: HfLinear<B>,
    /// Attention heads.
    pub num_heads: usize,
    /// `qk_nope_head_dim`.
    pub nope_dim: usize,
    /// `qk_rope_head_dim`.
    pub rope_dim: usize,
    /// `v_head_dim`.
    pub v_dim: usize,
    /// `kv_lora_rank`.
    pub kv_lora_rank: usize,
    /// Softmax scale including the YaRN mscale² correction.
    pub softmax_scale: f64,
}

impl<B: Backend> MlaAttention<B> {
    /// `q_nope [b,h,t,nope]` and rotated `q_pe [b,h,t,rope]`.
    fn queries(&self, x: Tensor<B, 3>, ctx: &AttnCtx<B>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t, _] = x.dims();
        let q = match (&self.q_a_proj, &self.q_a_layernorm, &self.q_b_proj, &self.q_proj) {
            (Some(a), Some(n), Some(bp), _) => bp.forward(n.forward(a.forward(x))),
            (_, _, _, Some(q)) => q.forward(x),
            _ => unreachable!("MlaAttention built without a query projection"),
        };
        let qk = self.nope_dim + self.rope_dim;
        let q = q.reshape([b, t, self.num_heads, qk]).swap_dims(1, 2);
        let q_nope = q.clone().narrow(3, 0, self.nope_dim);
        let q_pe = q.narrow(3, self.nope_dim, self.rope_dim);
        let q_pe = apply_rope(q_pe, &ctx.cos, &ctx.sin, ctx.interleaved);
        (q_nope, q_pe)
    }

    /// The cacheable part of the new tokens: `[b, t, kv_lora_rank + rope]` = normed latent ‖
    /// rotated rope key.
    fn latent(&self, x: Tensor<B, 3>, ctx: &AttnCtx<B>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let ckv = self.kv_a_proj_with_mqa.forward(x);
        let c = self.kv_a_layernorm.forward(ckv.clone().narrow(2, 0, self.kv_lora_rank));
        let k_pe = ckv.narrow(2, self.kv_lora_rank, self.rope_dim).reshape([b, 1, t, self.rope_dim]);
        let k_pe = apply_rope(k_pe, &ctx.cos, &ctx.sin, ctx.interleaved).reshape([b, t, self.rope_dim]);
        Tensor::cat(vec![c, k_pe], 2)
    }

    /// Per-head keys `[b,h,s,qk]` and values `[b,h,s,v]` from latents `[b, s, r + rope]`.
    fn expand(&self, lat: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, s, _] = lat.dims();
        let h = self.num_heads;
        let c = lat.clone().narrow(2, 0, self.kv_lora_rank);
        let k_pe = lat.narrow(2, self.kv_lora_rank, self.rope_dim);
        let kv = self
            .kv_b_proj
            .forward(c)
            .reshape([b, s, h, self.nope_dim + self.v_dim])
            .swap_dims(1, 2);
        let k_nope = kv.clone().narrow(3, 0, self.nope_dim);
        let v = kv.narrow(3, self.nope_dim, self.v_dim);
        let k_pe = k_pe.unsqueeze_dim::<4>(1).expand([b, h, s, self.rope_dim]);
        (Tensor::cat(vec![k_nope, k_pe], 3), v)
    }

    /// Standard attention over explicit per-head K/V; `q` `[b,h,t,qk]`.
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 4> {
        let [b, h, t, dk] = q.dims();
        let s = k.dims()[2];
        // Pre-scale q so the kernel's default 1/√dk yields our scale (a custom scale would
        // force CubeCL off its flash kernels).
        let q = q * (self.softmax_scale * (dk as f64).sqrt());
        let is_causal = mask.is_none();
        let mask = mask.map(|m| m.expand([b, h, t, s]));
        attention(q, k, v, mask, None, AttentionModuleOptions { is_causal, ..Default::default() })
    }

    /// Output projection of per-head outputs `[b,h,t,v]`.
    pub(crate) fn output(&self, o: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, h, t, v] = o.dims();
        self.o_proj.forward(o.swap_dims(1, 2).reshape([b, t, h * v]))
    }

    /// Per-head queries `[b,h,t,qk]`, keys `[b,h,t,qk]` and values `[b,h,t,v]` of the new
    /// tokens (rope applied), before the softmax of `softmax_scale · q kᵀ`.
    pub(crate) fn qkv(&self, x: Tensor<B, 3>, ctx: &AttnCtx<B>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let (q_nope, q_pe) = self.queries(x.clone(), ctx);
        let (k, v) = self.expand(self.latent(x, ctx));
        (Tensor::cat(vec![q_nope, q_pe], 3), k, v)
    }

    /// Full-sequence attention (training, scoring): no cache, transformers' exact computation.
    pub fn forward(&self, x: Tensor<B, 3>, ctx: &AttnCtx<B>) -> Tensor<B, 3> {
        let (q, k, v) = self.qkv(x, ctx);
        self.output(self.attend(q, k, v, ctx.mask.clone()))
    }

    /// Cached attention: stores the new tokens in `cache` (layer `layer`) and attends over
    /// everything cached for each row. `ctx.mask` must be `[b,1,t,plan.key_len]`; `absorb` picks
    /// the weight-absorbed latent attention (decode) over up-projecting the cache.
    pub fn forward_cached(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttnCtx<B>,
        cache: &mut MlaCache<B>,
        layer: usize,
        plan: &CachePlan,
        absorb: bool,
    ) -> Tensor<B, 3> {
        let (q_nope, q_pe) = self.queries(x.clone(), ctx);
        let lat = self.latent(x, ctx);
        match cache.layout() {
            KvLayout::Latent => {
                for (r, (&slot, (&start, &valid))) in
                    plan.slots.iter().zip(plan.offsets.iter().zip(&plan.lengths)).enumerate()
                {
                    if valid > 0 {
                        let row = lat.clone().narrow(0, r, 1).narrow(1, 0, valid);
                        cache.write_latent(layer, slot, start, row);
                    }
                }
                let all = cache.read_latent(layer, &plan.slots, plan.key_len);
                if absorb {
                    self.output(self.attend_absorbed(q_nope, q_pe, all, ctx.mask.clone()))
                } else {
                    let (k, v) = self.expand(all);
                    let q = Tensor::cat(vec![q_nope, q_pe], 3);
                    self.output(self.attend(q, k, v, ctx.mask.clone()))
                }
            }
            KvLayout::Expanded => {
                let (k_new, v_new) = self.expand(lat);
                for (r, (&slot, (&start, &valid))) in
                    plan.slots.iter().zip(plan.offsets.iter().zip(&plan.lengths)).enumerate()
                {
                    if valid > 0 {
                        let k = k_new.clone().narrow(0, r, 1).narrow(2, 0, valid);
                        let v = v_new.clone().narrow(0, r, 1).narrow(2, 0, valid);
                        cache.write_expanded(layer, slot, start, k, v);
                    }
                }
                let (k, v) = cache.read_expanded(layer, &plan.slots, plan.key_len);
                let q = Tensor::cat(vec![q_nope, q_pe], 3);
                self.output(self.attend(q, k, v, ctx.mask.clone()))
            }
        }
    }

    /// Latent-space attention with `kv_b_proj` absorbed. `lat` `[b, s, r + rope]`; returns
    /// per-head outputs `[b, h, t, v]`.
    fn attend_absorbed(
        &self,
        q_nope: Tensor<B, 4>,
        q_pe: Tensor<B, 4>,
        lat: Tensor<B, 3>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 4> {
        let [b, h, t, _] = q_nope.dims();
        let s = lat.dims()[1];
        let r = self.kv_lora_rank;
        let dtype = q_nope.dtype();
        // HF layout [out = h·(nope+v), in = r].
        let w = self.kv_b_proj.weight.val().reshape([h, self.nope_dim + self.v_dim, r]);
        let w_uk = w.clone().narrow(1, 0, self.nope_dim); // [h, nope, r]
        let w_uv = w.narrow(1, self.nope_dim, self.v_dim).swap_dims(1, 2); // [h, r, v]
        // q_lat[b,h,t,:] = q_nope[b,h,t,:] · W_uk[h]  → [b,h,t,r]
        let q_lat = q_nope
            .swap_dims(0, 1)
            .reshape([h, b * t, self.nope_dim])
            .matmul(w_uk)
            .reshape([h, b, t, r])
            .swap_dims(0, 1);
        let q_cat = Tensor::cat(vec![q_lat, q_pe], 3).reshape([b, h * t, r + self.rope_dim]);
        let scores = q_cat.matmul(lat.clone().swap_dims(1, 2)) * self.softmax_scale; // [b, h·t, s]
        let mut scores = scores.reshape([b, h, t, s]).cast(FloatDType::F32);
        match mask {
            Some(m) => scores = scores.mask_fill(m.expand([b, h, t, s]), f32::NEG_INFINITY),
            None if t > 1 => {
                let causal = Tensor::<B, 2, Bool>::tril_mask([t, s], (s - t) as i64, &scores.device());
                scores = scores.mask_fill(causal.unsqueeze::<4>().expand([b, h, t, s]), f32::NEG_INFINITY);
            }
            None => {}
        }
        let p = softmax(scores, 3).cast(dtype).reshape([b, h * t, s]);
        let o_lat = p.matmul(lat.narrow(2, 0, r)); // [b, h·t, r]
        o_lat
            .reshape([b, h, t, r])
            .swap_dims(0, 1)
            .reshape([h, b * t, r])
            .matmul(w_uv)
            .reshape([h, b, t, self.v_dim])
            .swap_dims(0, 1)
    }
}
