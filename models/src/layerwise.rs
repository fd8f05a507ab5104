//! Layer-by-layer access to a causal LM, for trainers that manage activations themselves
//! (gradient checkpointing: keep each layer's input, recompute the layer in backward).
//!
//! `forward_hidden` *is* the composition `final_norm ∘ layer_{L-1} ∘ … ∘ layer_0 ∘ embed` of
//! these pieces (both architectures' full forward is written with them), so a trainer that
//! composes them gets the same numbers. A layer can further be split at its attention kernel
//! ([`LayerwiseLm::layer_attention_inputs`] → attention → [`LayerwiseLm::layer_after_attention`])
//! so the attention itself can run outside autodiff ([`crate::flash_attention`]).

use burn::module::Param;
use burn::prelude::*;

use crate::attention::FullMask;
use crate::decoder::DecoderForCausalLM;
use crate::deepseek::attention::AttnCtx;
use crate::deepseek::{DeepseekV3ForCausalLM, RouterChoices};
use crate::flash_attention::{flash_forward, FlashPlan, KeyLayout};
use crate::lm::{AttentionLayout, ForwardInput};
use crate::model::{dispatch, Model};

/// How a layer's attention runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionImpl {
    /// Burn's `attention` with a dense mask for padded/packed rows (what `forward_hidden` uses).
    Materialise,
    /// [`crate::flash_attention`] with these block sizes: no dense mask is ever built.
    Blockwise {
        /// Query rows per block.
        block_q: usize,
        /// Keys per block.
        block_k: usize,
    },
}

/// Rotary tables (and, for the materialising path, the mask) in the architecture's form.
#[derive(Clone, Debug)]
enum CtxKind<B: Backend> {
    Decoder { cos: Tensor<B, 4>, sin: Tensor<B, 4>, mask: FullMask<B> },
    Deepseek(AttnCtx<B>),
}

/// What every layer of one forward shares, computed once: positions → rope tables, and the
/// attention pattern (dense mask or block plan).
#[derive(Clone, Debug)]
pub struct LayerCtx<B: Backend> {
    kind: CtxKind<B>,
    /// Block plan when the attention is [`AttentionImpl::Blockwise`].
    pub plan: Option<FlashPlan>,
}

/// The inputs of a layer's attention kernel: `softmax(scale · q kᵀ + mask) v`.
#[derive(Clone, Debug)]
pub struct AttentionInputs<B: Backend> {
    /// `[B, Hq, T, dk]`, rope applied.
    pub q: Tensor<B, 4>,
    /// `[B, Hkv, T, dk]` (`Hq` a multiple of `Hkv`).
    pub k: Tensor<B, 4>,
    /// `[B, Hkv, T, dv]`.
    pub v: Tensor<B, 4>,
    /// Softmax scale.
    pub scale: f64,
}

/// A layer's second half up to its gated MLP's activation (see
/// [`LayerwiseLm::layer_mlp_inputs`]).
#[derive(Clone, Debug)]
pub struct MlpInputs<B: Backend> {
    /// Residual stream after the attention, `x + o_proj(attn)`, `[B, T, H]`.
    pub h: Tensor<B, 3>,
    /// `gate_proj(norm(h))`, `[B, T, I]`.
    pub gate: Tensor<B, 3>,
    /// `up_proj(norm(h))`, `[B, T, I]`.
    pub up: Tensor<B, 3>,
}

/// The host-side key layout of a full-sequence input (one host read of the mask/segments).
pub fn key_layout<B: Backend>(layout: &AttentionLayout<B>) -> KeyLayout {
    match layout {
        AttentionLayout::Causal => KeyLayout::Causal,
        AttentionLayout::CausalPadded { key_mask } => KeyLayout::Padded(key_mask.clone().into_data().iter::<bool>().collect()),
        AttentionLayout::Packed { segment_ids } => KeyLayout::Packed(segment_ids.clone().into_data().iter::<i64>().collect()),
    }
}

fn plan_for<B: Backend>(input: &ForwardInput<B>, attn: AttentionImpl) -> Option<FlashPlan> {
    match attn {
        AttentionImpl::Materialise => None,
        AttentionImpl::Blockwise { block_q, block_k } => {
            let [b, t] = input.input_ids.dims();
            Some(FlashPlan::new(&key_layout(&input.layout), b, t, block_q, block_k))
        }
    }
}

/// A causal LM exposed layer by layer.
pub trait LayerwiseLm<B: Backend> {
    /// Decoder layers.
    fn num_layers(&self) -> usize;
    /// Token embeddings `[B, T, H]` of `ids [B, T]`.
    fn embed_ids(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3>;
    /// The `[vocab, H]` table [`LayerwiseLm::embed_ids`] looks rows up in (`embed_ids(ids)`
    /// is `embedding(table, ids)`, nothing more), so a trainer can add the rows of
    /// `dL/d embed_ids` into the table's gradient itself instead of running the autodiff
    /// embedding backward, which builds a whole zero table per call.
    fn embedding_table(&self) -> &Param<Tensor<B, 2>>;
    /// Positions, rope tables and attention pattern of `input`, shared by all layers.
    fn layer_ctx(&self, input: &ForwardInput<B>, attn: AttentionImpl) -> LayerCtx<B>;
    /// Residual stream after layer `i` given its input `x [B, T, H]`.
    fn layer_forward(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> Tensor<B, 3> {
        let a = self.layer_attention_inputs(i, x.clone(), ctx);
        let plan = ctx.plan.as_ref().expect("a layer context without a dense mask carries a block plan");
        let o = flash_forward(a.q, a.k, a.v, a.scale, plan).out;
        self.layer_after_attention(i, x, o)
    }
    /// First half of layer `i`: pre-attention norm, projections, rope.
    fn layer_attention_inputs(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> AttentionInputs<B>;
    /// Second half of layer `i`: `h = x + o_proj(attn)`, then `h + mlp(norm(h))`;
    /// `attn [B, Hq, T, dv]` is the attention output per head.
    fn layer_after_attention(&self, i: usize, x: Tensor<B, 3>, attn: Tensor<B, 4>) -> Tensor<B, 3>;
    /// [`LayerwiseLm::layer_after_attention`] up to its MLP's activation, where layer `i` has a
    /// SwiGLU MLP: then `layer_after_attention(i, x, attn)` is
    /// `layer_mlp_output(i, m.h, swiglu(m.gate, m.up))` for `m = layer_mlp_inputs(i, x, attn)`,
    /// so a trainer can run the activation outside autodiff
    /// ([`crate::backend_ext::swiglu_backward`]). `None` (the default) where the layer has no
    /// such split (mixture-of-experts layers).
    fn layer_mlp_inputs(&self, _i: usize, _x: Tensor<B, 3>, _attn: Tensor<B, 4>) -> Option<MlpInputs<B>> {
        None
    }
    /// The rest of layer `i` after [`LayerwiseLm::layer_mlp_inputs`]: `h + down_proj(act)`.
    /// Only called where `layer_mlp_inputs` returned `Some`.
    fn layer_mlp_output(&self, i: usize, h: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3> {
        let _ = (h, act);
        panic!("layer {i} has no split MLP (layer_mlp_inputs returned None)")
    }
    /// The final norm (the lm_head input).
    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;
}

impl<B: Backend> LayerwiseLm<B> for DecoderForCausalLM<B> {
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }
    fn embed_ids(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.embed(ids)
    }
    fn embedding_table(&self) -> &Param<Tensor<B, 2>> {
        &self.model.embed_tokens.weight
    }
    fn layer_ctx(&self, input: &ForwardInput<B>, attn: AttentionImpl) -> LayerCtx<B> {
        let dtype = self.model.embed_tokens.weight.val().dtype();
        let (cos, sin) = self.rope.cos_sin(crate::plan::positions(input), dtype);
        let plan = plan_for(input, attn);
        let mask = match plan.is_none().then(|| crate::plan::dense_mask(input)).flatten() {
            Some(m) => FullMask::Explicit(m),
            None => FullMask::Causal,
        };
        LayerCtx { kind: CtxKind::Decoder { cos, sin, mask }, plan }
    }
    fn layer_forward(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> Tensor<B, 3> {
        match (&ctx.kind, &ctx.plan) {
            (CtxKind::Decoder { cos, sin, mask }, None) => self.model.layers[i].forward(x, cos, sin, mask),
            _ => {
                let a = self.layer_attention_inputs(i, x.clone(), ctx);
                let o = flash_forward(a.q, a.k, a.v, a.scale, ctx.plan.as_ref().expect("plan")).out;
                self.layer_after_attention(i, x, o)
            }
        }
    }
    fn layer_attention_inputs(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> AttentionInputs<B> {
        let CtxKind::Decoder { cos, sin, .. } = &ctx.kind else {
            panic!("layer context of another architecture")
        };
        let layer = &self.model.layers[i];
        let (q, k, v) = layer.self_attn.qkv(layer.input_layernorm.forward(x), cos, sin);
        AttentionInputs { q, k, v, scale: 1.0 / (layer.self_attn.head_dim as f64).sqrt() }
    }
    fn layer_after_attention(&self, i: usize, x: Tensor<B, 3>, attn: Tensor<B, 4>) -> Tensor<B, 3> {
        let layer = &self.model.layers[i];
        let h = x + layer.self_attn.output(attn);
        h.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(h))
    }
    fn layer_mlp_inputs(&self, i: usize, x: Tensor<B, 3>, attn: Tensor<B, 4>) -> Option<MlpInputs<B>> {
        let layer = &self.model.layers[i];
        let h = x + layer.self_attn.output(attn);
        let n = layer.post_attention_layernorm.forward(h.clone());
        Some(MlpInputs { gate: layer.mlp.gate_proj.forward(n.clone()), up: layer.mlp.up_proj.forward(n), h })
    }
    fn layer_mlp_output(&self, i: usize, h: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3> {
        h + self.model.layers[i].mlp.down_proj.forward(act)
    }
    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.model.norm.forward(x)
    }
}

impl<B: Backend> DeepseekV3ForCausalLM<B> {
    /// Layer `i` with the router choices of its MoE when `record`.
    pub(crate) fn layer_forward_record(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>, record: bool) -> (Tensor<B, 3>, Option<RouterChoices>) {
        let layer = &self.model.layers[i];
        let h = match (&ctx.kind, &ctx.plan) {
            (CtxKind::Deepseek(a), None) => x.clone() + layer.self_attn.forward(layer.input_layernorm.forward(x), a),
            _ => {
                let a = self.layer_attention_inputs(i, x.clone(), ctx);
                let o = flash_forward(a.q, a.k, a.v, a.scale, ctx.plan.as_ref().expect("plan")).out;
                x + layer.self_attn.output(o)
            }
        };
        let (m, choices) = layer.ffn(layer.post_attention_layernorm.forward(h.clone()), record);
        (h + m, choices)
    }
}

impl<B: Backend> LayerwiseLm<B> for DeepseekV3ForCausalLM<B> {
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }
    fn embed_ids(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.model.embed_tokens.forward(ids)
    }
    fn embedding_table(&self) -> &Param<Tensor<B, 2>> {
        &self.model.embed_tokens.weight
    }
    fn layer_ctx(&self, input: &ForwardInput<B>, attn: AttentionImpl) -> LayerCtx<B> {
        let plan = plan_for(input, attn);
        let positions = crate::plan::position_rows(input);
        let mask = plan.is_none().then(|| crate::plan::dense_mask(input)).flatten();
        LayerCtx { kind: CtxKind::Deepseek(self.rope_ctx(&positions, mask)), plan }
    }
    fn layer_forward(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> Tensor<B, 3> {
        self.layer_forward_record(i, x, ctx, false).0
    }
    fn layer_attention_inputs(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> AttentionInputs<B> {
        let CtxKind::Deepseek(a) = &ctx.kind else {
            panic!("layer context of another architecture")
        };
        let layer = &self.model.layers[i];
        let (q, k, v) = layer.self_attn.qkv(layer.input_layernorm.forward(x), a);
        AttentionInputs { q, k, v, scale: layer.self_attn.softmax_scale }
    }
    fn layer_after_attention(&self, i: usize, x: Tensor<B, 3>, attn: Tensor<B, 4>) -> Tensor<B, 3> {
        let layer = &self.model.layers[i];
        let h = x + layer.self_attn.output(attn);
        h.clone() + layer.ffn(layer.post_attention_layernorm.forward(h), false).0
    }
    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.model.norm.forward(x)
    }
}

impl<B: Backend> LayerwiseLm<B> for Model<B> {
    fn num_layers(&self) -> usize {
        dispatch!(each Model, self, m => m.num_layers())
    }
    fn embed_ids(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        dispatch!(each Model, self, m => m.embed_ids(ids))
    }
    fn embedding_table(&self) -> &Param<Tensor<B, 2>> {
        dispatch!(each Model, self, m => m.embedding_table())
    }
    fn layer_ctx(&self, input: &ForwardInput<B>, attn: AttentionImpl) -> LayerCtx<B> {
        dispatch!(each Model, self, m => m.layer_ctx(input, attn))
    }
    fn layer_forward(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> Tensor<B, 3> {
        dispatch!(each Model, self, m => m.layer_forward(i, x, ctx))
    }
    fn layer_attention_inputs(&self, i: usize, x: Tensor<B, 3>, ctx: &LayerCtx<B>) -> AttentionInputs<B> {
        dispatch!(each Model, self, m => m.layer_attention_inputs(i, x, ctx))
    }
    fn layer_after_attention(&self, i: usize, x: Tensor<B, 3>, attn: Tensor<B, 4>) -> Tensor<B, 3> {
        dispatch!(each Model, self, m => m.layer_after_attention(i, x, attn))
    }
    fn layer_mlp_inputs(&self, i: usize, x: Tensor<B, 3>, attn: Tensor<B, 4>) -> Option<MlpInputs<B>> {
        dispatch!(each Model, self, m => m.layer_mlp_inputs(i, x, attn))
    }
    fn layer_mlp_output(&self, i: usize, h: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3> {
        dispatch!(each Model, self, m => m.layer_mlp_output(i, h, act))
    }
    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        dispatch!(each Model, self, m => m.final_norm(x))
    }
}
