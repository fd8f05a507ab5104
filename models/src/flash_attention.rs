//! Block-wise (FlashAttention-2) attention forward and backward, written with plain tensor ops
//! so it runs on any backend *outside* autodiff.
//!
//! Why: Burn 0.21's autodiff `attention` always materialises `[B, H, S, S]` scores (and packed
//! rows need a dense `[B, 1, S, S]` mask on top). Training at 32k tokens cannot afford that.
//! Here the forward keeps only Q, K, V, the output and each query's log-sum-exp; the backward
//! recomputes the scores block by block. Peak extra memory is O(block_q · block_k) per head.
//! The trainer's gradient checkpointing calls these on the inner backend and stitches the
//! gradients into the autodiff graphs around the attention (see `student::checkpointed`).
//!
//! Layouts ([`KeyLayout`]) follow [`crate::AttentionLayout`]: causal, causal with a key
//! padding mask (a padded query still sees itself), and packed rows (same segment id only).
//! Blocks whose keys no query of the block may see are skipped entirely; only blocks that are
//! partially visible get a small `[block_q, block_k]` mask. GQA is handled by grouping the
//! query heads of one kv head, so K/V are never repeated.

use burn::prelude::*;
use burn::tensor::DType;

/// Which keys each query may see, host side, row-major `[B·T]`.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyLayout {
    /// Query `i` sees keys `j ≤ i`.
    Causal,
    /// `true` = real token. Query `i` sees `j ≤ i` with `mask[j]` (and always itself).
    Padded(Vec<bool>),
    /// Segment id of every token. Query `i` sees `j ≤ i` with the same id.
    Packed(Vec<i64>),
}

/// Mask value of hidden scores: finite so a fully hidden block row yields no NaN; its
/// contribution is wiped by the rescale once the row meets a visible key (each query sees
/// at least itself).
const HIDDEN: f32 = -1.0e30;

/// The key blocks of one query block as [`FlashPlan::row_blocks`] hands them out:
/// `(k0, k1, partial mask)`.
pub(crate) type BlockPairs<'a> = Vec<(usize, usize, Option<&'a [bool]>)>;

/// One (query block, key block) pair to compute.
#[derive(Clone, Debug)]
struct Pair {
    k0: usize,
    k1: usize,
    /// `Some(visible)` `[q_len · k_len]` when only part of the block is visible.
    mask: Option<Vec<bool>>,
}

/// The blocks of one row.
#[derive(Clone, Debug)]
struct RowPlan {
    /// Per query block `(q0, q1, pairs)`.
    blocks: Vec<(usize, usize, Vec<Pair>)>,
}

/// Which blocks to compute for every row, built once per forward and shared by every layer.
#[derive(Clone, Debug)]
pub struct FlashPlan {
    rows: Vec<RowPlan>,
    /// Sequence length.
    pub seq: usize,
    /// Query rows per block.
    pub block_q: usize,
    /// Keys per block.
    pub block_k: usize,
}

impl KeyLayout {
    fn visible(&self, row: usize, t: usize, i: usize, j: usize) -> bool {
        j <= i
            && match self {
                KeyLayout::Causal => true,
                KeyLayout::Padded(m) => i == j || m[row * t + j],
                KeyLayout::Packed(s) => s[row * t + i] == s[row * t + j],
            }
    }

    /// Whether every (i, j) of the block is visible, decided without scanning when possible.
    fn fully_visible(&self, row: usize, t: usize, q: (usize, usize), k: (usize, usize)) -> bool {
        if k.1 > q.0 + 1 {
            return false; // some key lies after some query
        }
        match self {
            KeyLayout::Causal => true,
            KeyLayout::Padded(m) => m[row * t + k.0..row * t + k.1].iter().all(|&x| x),
            KeyLayout::Packed(s) => {
                let id = s[row * t + k.0];
                s[row * t + k.0..row * t + k.1].iter().all(|&x| x == id) && s[row * t + q.0..row * t + q.1].iter().all(|&x| x == id)
            }
        }
    }

    /// Whether no (i, j) of the block is visible, decided without scanning when possible.
    fn fully_hidden(&self, row: usize, t: usize, q: (usize, usize), k: (usize, usize)) -> bool {
        if k.0 >= q.1 {
            return true;
        }
        match self {
            KeyLayout::Causal => false,
            KeyLayout::Padded(_) => false,
            KeyLayout::Packed(s) => {
                // Segment ids present among queries vs keys.
                let mut qs: Vec<i64> = s[row * t + q.0..row * t + q.1].to_vec();
                qs.dedup();
                let mut ks: Vec<i64> = s[row * t + k.0..row * t + k.1].to_vec();
                ks.dedup();
                !qs.iter().any(|x| ks.contains(x))
            }
        }
    }
}

impl FlashPlan {
    /// Plans `batch` rows of `seq` tokens with the given block sizes (any sizes ≥ 1; the last
    /// block of a row may be shorter).
    pub fn new(layout: &KeyLayout, batch: usize, seq: usize, block_q: usize, block_k: usize) -> Self {
        let (bq, bk) = (block_q.max(1), block_k.max(1));
        let rows = (0..batch)
            .map(|r| {
                let mut blocks = Vec::new();
                for q0 in (0..seq).step_by(bq) {
                    let q1 = (q0 + bq).min(seq);
                    let mut pairs = Vec::new();
                    for k0 in (0..seq).step_by(bk) {
                        let k1 = (k0 + bk).min(seq);
                        if layout.fully_hidden(r, seq, (q0, q1), (k0, k1)) {
                            continue;
                        }
                        if layout.fully_visible(r, seq, (q0, q1), (k0, k1)) {
                            pairs.push(Pair { k0, k1, mask: None });
                            continue;
                        }
                        let vis: Vec<bool> =
                            (q0..q1).flat_map(|i| (k0..k1).map(move |j| (i, j))).map(|(i, j)| layout.visible(r, seq, i, j)).collect();
                        if vis.iter().any(|&x| x) {
                            pairs.push(Pair { k0, k1, mask: Some(vis) });
                        }
                    }
                    blocks.push((q0, q1, pairs));
                }
                RowPlan { blocks }
            })
            .collect();
        FlashPlan { rows, seq, block_q: bq, block_k: bk }
    }

    /// The query blocks of batch row `r`: `(q0, q1, [(k0, k1, partial mask)])`, the mask
    /// row-major `[q1 − q0, k1 − k0]` (`true` = visible) where only part of the pair is.
    pub(crate) fn row_blocks(&self, r: usize) -> Vec<(usize, usize, BlockPairs<'_>)> {
        self.rows[r]
            .blocks
            .iter()
            .map(|(q0, q1, pairs)| (*q0, *q1, pairs.iter().map(|p| (p.k0, p.k1, p.mask.as_deref())).collect()))
            .collect()
    }

    /// Key blocks computed, over all rows and query blocks (for tests and reports).
    pub fn computed_blocks(&self) -> usize {
        self.rows.iter().flat_map(|r| &r.blocks).map(|b| b.2.len()).sum()
    }
}

/// What the forward keeps for the backward.
#[derive(Clone, Debug)]
pub struct FlashOutput<B: Backend> {
    /// Attention output `[B, Hq, T, dv]` in q's dtype.
    pub out: Tensor<B, 4>,
    /// Log-sum-exp of every query's scaled scores, `[B, Hq, T, 1]`, f32 (f64 for f64 inputs).
    pub lse: Tensor<B, 4>,
}

/// Gradients of q, k and v, each in its input's shape and dtype.
#[derive(Clone, Debug)]
pub struct FlashGrads<B: Backend> {
    /// `[B, Hq, T, dk]`.
    pub dq: Tensor<B, 4>,
    /// `[B, Hkv, T, dk]`.
    pub dk: Tensor<B, 4>,
    /// `[B, Hkv, T, dv]`.
    pub dv: Tensor<B, 4>,
}

/// Query rows `[q0, q1)` of batch row `r`, grouped per kv head: `[1, Hkv, rep·n, d]`.
fn q_block<B: Backend>(x: &Tensor<B, 4>, r: usize, q0: usize, q1: usize, hkv: usize) -> Tensor<B, 4> {
    let [_, hq, _, d] = x.dims();
    let n = q1 - q0;
    x.clone().narrow(0, r, 1).narrow(2, q0, n).reshape([1, hkv, (hq / hkv) * n, d])
}

/// Inverse of [`q_block`]: `[1, Hkv, rep·n, d]` → `[1, Hq, n, d]`.
fn ungroup<B: Backend>(x: Tensor<B, 4>, hq: usize, n: usize) -> Tensor<B, 4> {
    let d = x.dims()[3];
    x.reshape([1, hq, n, d])
}

/// Additive mask `[1, Hkv, rep·n, m]` (0 visible, [`HIDDEN`] hidden) in `dtype`.
fn bias<B: Backend>(vis: &[bool], n: usize, m: usize, hkv: usize, rep: usize, dev: &B::Device, dtype: DType) -> Tensor<B, 4> {
    let v: Vec<f32> = vis.iter().map(|&x| if x { 0.0 } else { HIDDEN }).collect();
    Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, n, m]), (dev, DType::F32))
        .cast(dtype)
        .unsqueeze_dim::<5>(1)
        .expand([1, hkv, rep, n, m])
        .reshape([1, hkv, rep * n, m])
}

/// The dtype scores are computed in: f64 inputs stay f64, everything else runs in f32.
fn compute_dtype(d: DType) -> DType {
    if d == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

fn to_dtype<B: Backend>(x: Tensor<B, 4>, dtype: DType) -> Tensor<B, 4> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(dtype)
    }
}

/// Scaled scores of one block pair, masked: `[1, Hkv, rep·n, m]`.
fn scores<B: Backend>(qs: &Tensor<B, 4>, kb: &Tensor<B, 4>, p: &Pair, n: usize, rep: usize) -> Tensor<B, 4> {
    let [_, hkv, m, _] = kb.dims();
    let s = qs.clone().matmul(kb.clone().swap_dims(2, 3));
    match &p.mask {
        Some(vis) => s + bias::<B>(vis, n, m, hkv, rep, &qs.device(), qs.dtype()),
        None => s,
    }
}

fn check_shapes<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, plan: &FlashPlan) {
    let [b, hq, t, dk] = q.dims();
    let [bk, hkv, tk, dk2] = k.dims();
    let [bv, hv, tv, _] = v.dims();
    assert!(
        b == bk && b == bv && t == tk && t == tv && dk == dk2 && hkv == hv && hkv > 0 && hq % hkv == 0,
        "flash attention: incompatible q {:?} k {:?} v {:?}",
        q.dims(),
        k.dims(),
        v.dims()
    );
    assert!(plan.rows.len() == b && plan.seq == t, "flash attention: plan is for {}×{}, q is {b}×{t}", plan.rows.len(), plan.seq);
}

/// Forward: `softmax(scale · q kᵀ + mask) v` for `q [B, Hq, T, dk]`, `k [B, Hkv, T, dk]`,
/// `v [B, Hkv, T, dv]` (`Hq` a multiple of `Hkv`; query head `h` uses kv head `h / (Hq/Hkv)`,
/// transformers' `repeat_kv`). Scores are computed in f32 (f64 for f64 inputs).
///
/// Runs the backend's own kernel where [`crate::backend_ext`] has one (Flex, f32), else
/// [`flash_forward_ops`]; the two agree to float rounding.
pub fn flash_forward<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, scale: f64, plan: &FlashPlan) -> FlashOutput<B> {
    check_shapes(&q, &k, &v, plan);
    match crate::backend_ext::flash_forward_fast(&q, &k, &v, scale, plan) {
        Some(fwd) => fwd,
        None => flash_forward_ops(q, k, v, scale, plan),
    }
}

/// [`flash_forward`] as Burn tensor ops, block pair by block pair: what backends without a
/// kernel of their own run (and the reference the kernels are tested against).
pub fn flash_forward_ops<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, scale: f64, plan: &FlashPlan) -> FlashOutput<B> {
    check_shapes(&q, &k, &v, plan);
    let dtype = q.dtype();
    let ct = compute_dtype(dtype);
    let [_, hq, _, _] = q.dims();
    let hkv = k.dims()[1];
    let rep = hq / hkv;
    let (q, k, v) = (to_dtype(q, ct), to_dtype(k, ct), to_dtype(v, ct));
    let mut rows_out = Vec::with_capacity(plan.rows.len());
    let mut rows_lse = Vec::with_capacity(plan.rows.len());
    for (r, row) in plan.rows.iter().enumerate() {
        let mut outs = Vec::with_capacity(row.blocks.len());
        let mut lses = Vec::with_capacity(row.blocks.len());
        for (q0, q1, pairs) in &row.blocks {
            let n = q1 - q0;
            let qs = q_block(&q, r, *q0, *q1, hkv) * scale;
            let mut state: Option<(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> = None; // (m, l, acc)
            for p in pairs {
                let kb = k.clone().narrow(0, r, 1).narrow(2, p.k0, p.k1 - p.k0);
                let vb = v.clone().narrow(0, r, 1).narrow(2, p.k0, p.k1 - p.k0);
                let s = scores(&qs, &kb, p, n, rep);
                let bm = s.clone().max_dim(3);
                state = Some(match state {
                    None => {
                        let e = (s - bm.clone()).exp();
                        (bm, e.clone().sum_dim(3), e.matmul(vb))
                    }
                    Some((m, l, acc)) => {
                        let m_new = m.clone().max_pair(bm);
                        let corr = (m - m_new.clone()).exp();
                        let e = (s - m_new.clone()).exp();
                        (m_new, l * corr.clone() + e.clone().sum_dim(3), acc * corr + e.matmul(vb))
                    }
                });
            }
            let (m, l, acc) = state.expect("every query sees at least itself");
            outs.push(ungroup(acc / l.clone(), hq, n));
            lses.push(ungroup(m + l.log(), hq, n));
        }
        rows_out.push(Tensor::cat(outs, 2));
        rows_lse.push(Tensor::cat(lses, 2));
    }
    let out = Tensor::cat(rows_out, 0);
    FlashOutput { out: to_dtype(out, dtype), lse: Tensor::cat(rows_lse, 0) }
}

fn add_opt<B: Backend>(slot: &mut Option<Tensor<B, 4>>, x: Tensor<B, 4>) {
    *slot = Some(match slot.take() {
        Some(a) => a + x,
        None => x,
    });
}

/// Backward of [`flash_forward`] given `d_out = dL/dout` (FlashAttention-2: probabilities are
/// recomputed block by block from the saved log-sum-exp). The backend's own kernel where
/// [`crate::backend_ext`] has one, else [`flash_backward_ops`].
pub fn flash_backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    fwd: &FlashOutput<B>,
    d_out: Tensor<B, 4>,
    scale: f64,
    plan: &FlashPlan,
) -> FlashGrads<B> {
    check_shapes(&q, &k, &v, plan);
    match crate::backend_ext::flash_backward_fast(&q, &k, &v, fwd, &d_out, scale, plan) {
        Some(grads) => grads,
        None => flash_backward_ops(q, k, v, fwd, d_out, scale, plan),
    }
}

/// [`flash_backward`] as Burn tensor ops (see [`flash_forward_ops`]).
pub fn flash_backward_ops<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    fwd: &FlashOutput<B>,
    d_out: Tensor<B, 4>,
    scale: f64,
    plan: &FlashPlan,
) -> FlashGrads<B> {
    check_shapes(&q, &k, &v, plan);
    let (qt, kt, vt) = (q.dtype(), k.dtype(), v.dtype());
    let [_, hq, _, dk] = q.dims();
    let [_, hkv, _, dv] = v.dims();
    let rep = hq / hkv;
    let dev = q.device();
    let ct = compute_dtype(qt);
    let (q, k, v, d_out) = (to_dtype(q, ct), to_dtype(k, ct), to_dtype(v, ct), to_dtype(d_out, ct));
    // D_i = Σ_d dO·O
    let delta = (d_out.clone() * to_dtype(fwd.out.clone(), ct)).sum_dim(3);
    let (mut dqs, mut dks, mut dvs) = (Vec::new(), Vec::new(), Vec::new());
    for (r, row) in plan.rows.iter().enumerate() {
        let nk = plan.seq.div_ceil(plan.block_k);
        let mut dk_b: Vec<Option<Tensor<B, 4>>> = vec![None; nk];
        let mut dv_b: Vec<Option<Tensor<B, 4>>> = vec![None; nk];
        let mut dq_row = Vec::with_capacity(row.blocks.len());
        for (q0, q1, pairs) in &row.blocks {
            let n = q1 - q0;
            let qs = q_block(&q, r, *q0, *q1, hkv) * scale;
            let dob = q_block(&d_out, r, *q0, *q1, hkv);
            let lse = q_block(&fwd.lse, r, *q0, *q1, hkv);
            let dlt = q_block(&delta, r, *q0, *q1, hkv);
            let mut dq: Option<Tensor<B, 4>> = None;
            for p in pairs {
                let j = p.k0 / plan.block_k;
                let kb = k.clone().narrow(0, r, 1).narrow(2, p.k0, p.k1 - p.k0);
                let vb = v.clone().narrow(0, r, 1).narrow(2, p.k0, p.k1 - p.k0);
                let prob = (scores(&qs, &kb, p, n, rep) - lse.clone()).exp(); // [1,Hkv,R,m]
                add_opt(&mut dv_b[j], prob.clone().swap_dims(2, 3).matmul(dob.clone()));
                let dp = dob.clone().matmul(vb.swap_dims(2, 3));
                let ds = prob * (dp - dlt.clone());
                add_opt(&mut dk_b[j], ds.clone().swap_dims(2, 3).matmul(qs.clone()));
                add_opt(&mut dq, ds.matmul(kb));
            }
            let dq = dq.unwrap_or_else(|| Tensor::zeros([1, hkv, rep * n, dk], (&dev, ct)));
            dq_row.push(ungroup(dq * scale, hq, n));
        }
        let fill = |blocks: Vec<Option<Tensor<B, 4>>>, d: usize| -> Tensor<B, 4> {
            let parts = blocks
                .into_iter()
                .enumerate()
                .map(|(j, b)| {
                    let m = (plan.seq - j * plan.block_k).min(plan.block_k);
                    b.unwrap_or_else(|| Tensor::zeros([1, hkv, m, d], (&dev, ct)))
                })
                .collect();
            Tensor::cat(parts, 2)
        };
        dqs.push(Tensor::cat(dq_row, 2));
        dks.push(fill(dk_b, dk));
        dvs.push(fill(dv_b, dv));
    }
    FlashGrads {
        dq: to_dtype(Tensor::cat(dqs, 0), qt),
        dk: to_dtype(Tensor::cat(dks, 0), kt),
        dv: to_dtype(Tensor::cat(dvs, 0), vt),
    }
}
