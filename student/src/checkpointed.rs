//! Gradient checkpointing at the trainer level: one layer's activations alive at a time.
//!
//! Burn 0.21 has no per-layer checkpointing (its `BalancedCheckpointing` only recomputes
//! element-wise ops) and its autodiff attention materialises `[B, H, S, S]`. So the trainer
//! drives the layers itself, with the same "surrogate" trick as [`crate::fused_ce`]:
//!
//! 1. forward every layer on the inner backend (no graph), keeping the input of every k-th
//!    layer only;
//! 2. loss head: final norm + loss on a fresh graph whose input is the last hidden state as a
//!    leaf; backward gives the parameter gradients of the head and `g = dL/dh`;
//! 3. for layers L-1..0: rebuild the layer's graph from its saved input (a leaf), backward the
//!    surrogate `Σ out ⊙ g` (its gradient w.r.t. everything in the layer is exactly the true
//!    one), collect the parameter gradients and take `g ← dL/dinput` for the layer below;
//! 4. the embedding with the last `g`.
//!
//! With [`AttentionImpl::Blockwise`] each recomputed layer is further split at its attention:
//! graph A = input → norm → q, k, v (+rope); the attention forward and backward run block by
//! block on the inner backend ([`models::flash_attention`], FlashAttention-2); graph B =
//! attention output (a leaf) → o_proj → residual → norm → MLP. Backward: graph B's surrogate →
//! gradients + `dL/dattn`; flash backward → `dq, dk, dv`; graph A's surrogate
//! `Σ q⊙dq + k⊙dk + v⊙dv` → gradients + `dL/dinput`. No `[S, S]` scores or masks ever exist.
//!
//! Each graph is built from a fresh `view()` of the model, because backward consumes the graph
//! of non-leaf weights (LoRA's `W + s·B·A`, bf16 casts): rebuilding the view per graph lets
//! every graph reach the adapters.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use models::flash_attention::{flash_backward, flash_forward};
use models::{AttentionImpl, AttentionLayout, ForwardInput, LayerCtx, LayerwiseLm};

/// How [`checkpointed_backward`] trades memory for recompute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Keep the input of every k-th layer (1 = every layer).
    pub every: usize,
    /// Attention inside the recomputed layers.
    pub attention: AttentionImpl,
}

impl Default for CheckpointOptions {
    /// Every layer, blockwise attention with 256×256 blocks.
    fn default() -> Self {
        Self { every: 1, attention: AttentionImpl::Blockwise { block_q: 256, block_k: 256 } }
    }
}

/// The same input on the inner backend.
pub fn inner_input<AB: AutodiffBackend>(input: &ForwardInput<AB>) -> ForwardInput<AB::InnerBackend> {
    let layout = match &input.layout {
        AttentionLayout::Causal => AttentionLayout::Causal,
        AttentionLayout::CausalPadded { key_mask } => AttentionLayout::CausalPadded { key_mask: key_mask.clone().inner() },
        AttentionLayout::Packed { segment_ids } => AttentionLayout::Packed { segment_ids: segment_ids.clone().inner() },
    };
    ForwardInput {
        input_ids: input.input_ids.clone().inner(),
        position_ids: input.position_ids.clone().map(|p| p.inner()),
        layout,
    }
}

/// Runs forward and backward of `head(final_norm(model(input)))` with per-layer recompute and
/// hands every partial backward's gradients to `collect` (parameter gradients of one piece of
/// the model each time; summing them gives the plain backward's gradients).
///
/// `view` builds the model to differentiate (called once per graph); `head` maps final-norm
/// hidden states `[B, T, H]` to the scalar loss (SFT, KD, fused CE surrogate, ...).
pub fn checkpointed_backward<AB, M, V, H, C>(view: V, input: &ForwardInput<AB>, opts: &CheckpointOptions, head: H, mut collect: C)
where
    AB: AutodiffBackend,
    M: LayerwiseLm<AB> + AutodiffModule<AB>,
    M::InnerModule: LayerwiseLm<AB::InnerBackend>,
    V: Fn() -> M,
    H: FnOnce(Tensor<AB, 3>) -> Tensor<AB, 1>,
    C: FnMut(AB::Gradients),
{
    let every = opts.every.max(1);
    let inner_in = inner_input(input);
    let (inner, ctx_ab) = {
        let v = view();
        (v.valid(), v.layer_ctx(input, opts.attention))
    };
    let ctx_in = inner.layer_ctx(&inner_in, opts.attention);
    let n = inner.num_layers();

    // 1. forward without a graph, keeping segment inputs.
    let mut x = inner.embed_ids(inner_in.input_ids.clone());
    let mut saved = Vec::with_capacity(n.div_ceil(every));
    for i in 0..n {
        if i % every == 0 {
            saved.push(x.clone());
        }
        x = inner.layer_forward(i, x, &ctx_in);
    }

    // 2. loss head.
    let mut g = {
        let v = view();
        let h = Tensor::<AB, 3>::from_inner(x.clone()).require_grad();
        let mut grads = head(v.final_norm(h.clone())).backward();
        let g = h.grad_remove(&mut grads).unwrap_or_else(|| x.zeros_like());
        collect(grads);
        g
    };

    // 3. layers, last segment first.
    for seg in (0..saved.len()).rev() {
        let (start, end) = (seg * every, ((seg + 1) * every).min(n));
        let mut inputs = vec![saved.pop().expect("one input per segment")];
        for i in start..end - 1 {
            let next = inner.layer_forward(i, inputs[inputs.len() - 1].clone(), &ctx_in);
            inputs.push(next);
        }
        for i in (start..end).rev() {
            let xi = inputs.pop().expect("one input per layer");
            g = match ctx_in.plan {
                None => layer_backward(&view, i, xi, g, &ctx_ab, &mut collect),
                Some(_) => layer_backward_blockwise(&view, i, xi, g, &ctx_ab, &ctx_in, &mut collect),
            };
        }
    }

    // 4. embedding.
    let v = view();
    let e = v.embed_ids(input.input_ids.clone());
    collect((e * Tensor::from_inner(g)).sum().backward());
}

/// A graph input that receives a gradient.
fn leaf<AB: AutodiffBackend, const D: usize>(x: Tensor<AB::InnerBackend, D>) -> Tensor<AB, D> {
    Tensor::from_inner(x).require_grad()
}

/// Layer `i` rebuilt as one graph (materialising attention).
fn layer_backward<AB, M, V, C>(view: &V, i: usize, x: Tensor<AB::InnerBackend, 3>, g: Tensor<AB::InnerBackend, 3>, ctx: &LayerCtx<AB>, collect: &mut C) -> Tensor<AB::InnerBackend, 3>
where
    AB: AutodiffBackend,
    M: LayerwiseLm<AB>,
    V: Fn() -> M,
    C: FnMut(AB::Gradients),
{
    let v = view();
    let xl = leaf::<AB, 3>(x.clone());
    let out = v.layer_forward(i, xl.clone(), ctx);
    let mut grads = (out * Tensor::from_inner(g)).sum().backward();
    let gx = xl.grad_remove(&mut grads).unwrap_or_else(|| x.zeros_like());
    collect(grads);
    gx
}

/// Layer `i` split at its attention, which runs block by block outside autodiff.
#[allow(clippy::too_many_arguments)]
fn layer_backward_blockwise<AB, M, V, C>(
    view: &V,
    i: usize,
    x: Tensor<AB::InnerBackend, 3>,
    g: Tensor<AB::InnerBackend, 3>,
    ctx_ab: &LayerCtx<AB>,
    ctx_in: &LayerCtx<AB::InnerBackend>,
    collect: &mut C,
) -> Tensor<AB::InnerBackend, 3>
where
    AB: AutodiffBackend,
    M: LayerwiseLm<AB>,
    V: Fn() -> M,
    C: FnMut(AB::Gradients),
{
    let plan = ctx_in.plan.as_ref().expect("blockwise context");
    // Graph A: x → q, k, v.
    let va = view();
    let xa = leaf::<AB, 3>(x.clone());
    let a = va.layer_attention_inputs(i, xa.clone(), ctx_ab);
    let (q, k, v) = (a.q.clone().inner(), a.k.clone().inner(), a.v.clone().inner());
    let fwd = flash_forward(q.clone(), k.clone(), v.clone(), a.scale, plan);
    // Graph B: attention output → layer output.
    let (g_attn, g_xb) = {
        let vb = view();
        let xb = leaf::<AB, 3>(x.clone());
        let ob = leaf::<AB, 4>(fwd.out.clone());
        let out = vb.layer_after_attention(i, xb.clone(), ob.clone());
        let mut grads = (out * Tensor::from_inner(g)).sum().backward();
        let go = ob.grad_remove(&mut grads).unwrap_or_else(|| fwd.out.zeros_like());
        let gx = xb.grad_remove(&mut grads).unwrap_or_else(|| x.zeros_like());
        collect(grads);
        (go, gx)
    };
    let fg = flash_backward(q, k, v, &fwd, g_attn, a.scale, plan);
    let s = (a.q * Tensor::from_inner(fg.dq)).sum() + (a.k * Tensor::from_inner(fg.dk)).sum() + (a.v * Tensor::from_inner(fg.dv)).sum();
    let mut grads = s.backward();
    let g_xa = xa.grad_remove(&mut grads).unwrap_or_else(|| x.zeros_like());
    collect(grads);
    g_xa + g_xb
}
