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
//! 4. the embedding with the last `g`: handed to the [`GradSink`] as rows
//!    ([`EmbeddingRows`]) when it takes them, so the `[vocab, H]` gradient is built by adding
//!    rows into a table that already exists (the running sum, or with tied embeddings the
//!    fused loss's projection gradient) instead of Burn's embedding backward, which fills a
//!    fresh zero table and (on Flex) copies it once more in `select_add`; otherwise through
//!    autodiff.
//!
//! With [`AttentionImpl::Blockwise`] each recomputed layer is further split at its attention:
//! graph A = input → norm → q, k, v (+rope); the attention forward and backward run block by
//! block on the inner backend ([`models::flash_attention`], FlashAttention-2); graph B =
//! attention output (a leaf) → o_proj → residual → norm → MLP. Backward: graph B's surrogate →
//! gradients + `dL/dattn`; flash backward → `dq, dk, dv`; graph A's surrogate
//! `Σ q⊙dq + k⊙dk + v⊙dv` → gradients + `dL/dinput`. No `[S, S]` scores or masks ever exist.
//! Graph B is further split at a SwiGLU MLP's activation, which (with its backward) runs on
//! the inner backend too (`after_attention_backward`).
//!
//! Each graph is built from a fresh `view()` of the model, because backward consumes the graph
//! of non-leaf weights (LoRA's `W + s·B·A`, bf16 casts): rebuilding the view per graph lets
//! every graph reach the adapters.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, IndexingUpdateOp, Int, Tensor, TensorData};
use models::flash_attention::{flash_backward, flash_forward};
use models::{backend_ext, AttentionImpl, AttentionLayout, ForwardInput, LayerCtx, LayerwiseLm};

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

/// Where the gradients of [`checkpointed_backward_into`] go.
pub trait GradSink<AB: AutodiffBackend> {
    /// The parameter gradients of one partial backward (one piece of the model each time).
    fn grads(&mut self, grads: AB::Gradients);
    /// The embedding table's gradient as rows: `None` when the sink took them, or the rows
    /// given back to have the backward run Burn's autodiff embedding backward instead (the
    /// default). A sink may only take them when the view's table is the trained parameter
    /// itself or a dtype cast of it (not under LoRA, whose views are `W + s·B·A`).
    fn embedding_rows(&mut self, rows: EmbeddingRows<AB::InnerBackend>) -> Option<EmbeddingRows<AB::InnerBackend>> {
        Some(rows)
    }
}

/// A closure as a [`GradSink`] that takes only autodiff gradients.
struct AutodiffOnly<C>(C);

impl<AB: AutodiffBackend, C: FnMut(AB::Gradients)> GradSink<AB> for AutodiffOnly<C> {
    fn grads(&mut self, grads: AB::Gradients) {
        (self.0)(grads)
    }
}

/// The gradient of an embedding table `W [vocab, H]` as what reaches it:
/// `dL/dW[v] = Σ_{i: ids[i] = v} g[i]`.
pub struct EmbeddingRows<B: Backend> {
    /// The table's parameter.
    pub id: ParamId,
    /// `[vocab, H]`.
    pub table_dims: [usize; 2],
    /// Token ids `[B, T]` the table was looked up with.
    pub ids: Tensor<B, 2, Int>,
    /// `dL/d embed_ids` `[B, T, H]`, in the compute dtype.
    pub grad: Tensor<B, 3>,
}

impl<B: Backend> EmbeddingRows<B> {
    /// The distinct ids and `[distinct, H]` f32 sums of their rows, summed as Burn's
    /// embedding backward sums them (from zero, each row in order, in the rows' dtype), so
    /// `table[ids[k]] += sums[k]` gives the same bits as adding Burn's whole table.
    pub fn summed(self) -> (Vec<usize>, Tensor<B, 2>) {
        let [b, t, h] = self.grad.dims();
        let device = self.grad.device();
        let mut slot: HashMap<usize, usize> = HashMap::new();
        let mut distinct = Vec::new();
        let inverse: Vec<i64> = self
            .ids
            .into_data()
            .iter::<i64>()
            .map(|v| {
                let v = usize::try_from(v).unwrap_or(usize::MAX);
                *slot.entry(v).or_insert_with(|| {
                    distinct.push(v);
                    distinct.len() - 1
                }) as i64
            })
            .collect();
        let rows = self.grad.reshape([b * t, h]);
        let inverse = Tensor::<B, 1, Int>::from_data(TensorData::new(inverse, [b * t]), &device);
        let sums = Tensor::<B, 2>::zeros([distinct.len(), h], (&device, rows.dtype())).select_assign(0, inverse, rows, IndexingUpdateOp::Add);
        (distinct, sums.cast(FloatDType::F32))
    }

    /// Burn's embedding backward of these rows (the whole `[vocab, H]` table, f32): the
    /// reference [`EmbeddingRows::summed`] is tested against.
    pub fn table(self) -> Tensor<B, 2> {
        let [b, t, h] = self.grad.dims();
        let ids = self.ids.reshape([b * t]);
        let rows = self.grad.reshape([b * t, h]);
        Tensor::<B, 2>::zeros(self.table_dims, (&rows.device(), rows.dtype())).select_assign(0, ids, rows, IndexingUpdateOp::Add).cast(FloatDType::F32)
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
pub fn checkpointed_backward<AB, M, V, H, C>(view: V, input: &ForwardInput<AB>, opts: &CheckpointOptions, head: H, collect: C)
where
    AB: AutodiffBackend,
    M: LayerwiseLm<AB> + AutodiffModule<AB>,
    M::InnerModule: LayerwiseLm<AB::InnerBackend>,
    V: Fn() -> M,
    H: FnOnce(Tensor<AB, 3>) -> Tensor<AB, 1>,
    C: FnMut(AB::Gradients),
{
    checkpointed_backward_into(view, input, opts, head, &mut AutodiffOnly(collect))
}

/// [`checkpointed_backward`] handing its gradients to `sink`, which may take the
/// embedding's gradient as rows ([`GradSink::embedding_rows`]).
pub fn checkpointed_backward_into<AB, M, V, H, S>(view: V, input: &ForwardInput<AB>, opts: &CheckpointOptions, head: H, sink: &mut S)
where
    AB: AutodiffBackend,
    M: LayerwiseLm<AB> + AutodiffModule<AB>,
    M::InnerModule: LayerwiseLm<AB::InnerBackend>,
    V: Fn() -> M,
    H: FnOnce(Tensor<AB, 3>) -> Tensor<AB, 1>,
    S: GradSink<AB>,
{
    let mut collect = |g: AB::Gradients| sink.grads(g);
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
    let table = v.embedding_table();
    let rows = EmbeddingRows { id: table.id, table_dims: table.val().dims(), ids: inner_in.input_ids, grad: g };
    if let Some(rows) = sink.embedding_rows(rows) {
        let e = v.embed_ids(input.input_ids.clone());
        sink.grads((e * Tensor::from_inner(rows.grad)).sum().backward());
    }
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
    // Graph B: attention output → layer output (split at the MLP activation where it can be).
    let (g_attn, g_xb) = after_attention_backward(view, i, &x, &fwd.out, g, collect);
    let fg = flash_backward(q, k, v, &fwd, g_attn, a.scale, plan);
    let s = (a.q * Tensor::from_inner(fg.dq)).sum() + (a.k * Tensor::from_inner(fg.dk)).sum() + (a.v * Tensor::from_inner(fg.dv)).sum();
    let mut grads = s.backward();
    let g_xa = xa.grad_remove(&mut grads).unwrap_or_else(|| x.zeros_like());
    collect(grads);
    g_xa + g_xb
}

/// Backward of layer `i`'s second half given `g = dL/d out`: `(dL/d attn, dL/d x)`, the
/// parameter gradients handed to `collect`.
///
/// Where the layer's MLP is SwiGLU ([`LayerwiseLm::layer_mlp_inputs`]) the half is split at
/// the activation: graph B1 = (x, attn) → h, gate, up; the activation and its backward run on
/// the inner backend ([`models::backend_ext::swiglu`], one parallel pass each on the CPU
/// instead of a chain of autodiff ops); graph B2 = (h, act) → h + down(act). Otherwise one
/// graph, as [`LayerwiseLm::layer_after_attention`].
fn after_attention_backward<AB, M, V, C>(
    view: &V,
    i: usize,
    x: &Tensor<AB::InnerBackend, 3>,
    attn: &Tensor<AB::InnerBackend, 4>,
    g: Tensor<AB::InnerBackend, 3>,
    collect: &mut C,
) -> (Tensor<AB::InnerBackend, 4>, Tensor<AB::InnerBackend, 3>)
where
    AB: AutodiffBackend,
    M: LayerwiseLm<AB>,
    V: Fn() -> M,
    C: FnMut(AB::Gradients),
{
    let vb = view();
    let xb = leaf::<AB, 3>(x.clone());
    let ob = leaf::<AB, 4>(attn.clone());
    let surrogate = match vb.layer_mlp_inputs(i, xb.clone(), ob.clone()) {
        None => (vb.layer_after_attention(i, xb.clone(), ob.clone()) * Tensor::from_inner(g)).sum(),
        Some(m) => {
            let (gate, up) = (m.gate.clone().inner(), m.up.clone().inner());
            let act = backend_ext::swiglu(gate.clone(), up.clone());
            // Graph B2: (h, act) → layer output.
            let (d_h, d_act) = {
                let vc = view();
                let (hl, al) = (leaf::<AB, 3>(m.h.clone().inner()), leaf::<AB, 3>(act));
                let mut grads = (vc.layer_mlp_output(i, hl.clone(), al.clone()) * Tensor::from_inner(g.clone())).sum().backward();
                let d_h = hl.grad_remove(&mut grads).unwrap_or_else(|| g.zeros_like());
                let d_act = al.grad_remove(&mut grads).unwrap_or_else(|| gate.zeros_like());
                collect(grads);
                (d_h, d_act)
            };
            let (d_gate, d_up) = backend_ext::swiglu_backward(gate, up, d_act);
            (m.h * Tensor::from_inner(d_h)).sum() + (m.gate * Tensor::from_inner(d_gate)).sum() + (m.up * Tensor::from_inner(d_up)).sum()
        }
    };
    let mut grads = surrogate.backward();
    let go = ob.grad_remove(&mut grads).unwrap_or_else(|| attn.zeros_like());
    let gx = xb.grad_remove(&mut grads).unwrap_or_else(|| x.zeros_like());
    collect(grads);
    (go, gx)
}
