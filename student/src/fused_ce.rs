//! Cross-entropy with the gradient of the output projection computed by hand, chunk by chunk.
//!
//! Under autodiff, chunking the loss over the sequence does not bound memory: every chunk's
//! f32 log-softmax `[B, n, vocab]` stays alive until backward. Here each chunk's logits are
//! computed without autodiff, turned at once into `dL/dlogits = (softmax − onehot)·keep / N`,
//! and projected back to `dL/dhidden = dlogits · W` and `dL/dW = dlogitsᵀ · hidden`; the chunk
//! is then freed. Autodiff only sees the surrogate `Σ hidden ⊙ stopgrad(dL/dhidden)`, whose
//! gradient is exactly `dL/dhidden`, and `dL/dW` is added to the projection's gradient after
//! backward. Same math as the autodiff path (tested against it and against PyTorch), with
//! one chunk of logits alive at a time and no log-softmax backward graph.
//!
//! It applies when `model.logits(h) = h · Wᵀ` for the model's
//! [`CausalLm::output_projection`] `W [vocab, hidden]` (`lm_head.weight` or the tied
//! `model.embed_tokens.weight`); [`LmProjection::probe`] checks that numerically once and the
//! trainer falls back to the autodiff path otherwise.

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, IndexingUpdateOp, Tensor, TensorData};

use crate::loss::{loss_chunks, ShiftedTargets};
use models::{backend_ext, CausalLm};

/// The output projection of a model: its parameter id and HF name.
#[derive(Debug, Clone, PartialEq)]
pub struct LmProjection {
    /// Id of the `[vocab, hidden]` weight (same id in the master model and its views).
    pub id: ParamId,
    /// `lm_head.weight` or `model.embed_tokens.weight`.
    pub name: String,
}

/// The `[vocab, hidden]` projection weight of `model` ([`CausalLm::output_projection`]:
/// lm_head, else the tied embeddings).
pub fn projection_weight<B: Backend, M: CausalLm<B>>(model: &M) -> Option<(LmProjection, Tensor<B, 2>)> {
    let p = model.output_projection();
    Some((LmProjection { id: p.weight.id, name: p.name.to_string() }, p.weight.val()))
}

impl LmProjection {
    /// Finds the projection and checks on a few random hidden states that `model.logits` is
    /// exactly `h · Wᵀ` (relative error ≤ 1e-3), so the hand-written gradient is the true one.
    pub fn probe<B: Backend, M: CausalLm<B>>(model: &M) -> Option<Self> {
        let (proj, w) = projection_weight(model)?;
        let [v, h] = w.dims();
        if v != model.config().vocab_size && model.config().vocab_size != 0 {
            return None;
        }
        let dev = w.device();
        let vals: Vec<f32> = (0..2 * h).map(|i| ((i * 7919 % 101) as f32 / 50.0) - 1.0).collect();
        let x = Tensor::<B, 3>::from_data(TensorData::new(vals, [1, 2, h]), (&dev, w.dtype()));
        let want = model.logits(x.clone()).cast(DType::F32);
        let got = x.reshape([2, h]).matmul(w.transpose()).reshape([1, 2, v]).cast(DType::F32);
        let scale: f64 = want.clone().abs().max().into_scalar().elem_f64();
        let err: f64 = (want - got).abs().max().into_scalar().elem_f64();
        (err <= 1e-3 * scale.max(1.0)).then_some(proj)
    }
}

trait ElemF64 {
    fn elem_f64(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> ElemF64 for E {
    fn elem_f64(self) -> f64 {
        self.elem::<f64>()
    }
}

/// Result of [`fused_ce`] for one micro-batch.
pub struct FusedCe<B: Backend> {
    /// Sum of token NLL over the micro-batch's loss tokens (host value).
    pub nll_sum: f64,
    /// `dL/dhidden` `[B, T, H]` (L = the step's mean loss), in the hidden dtype.
    pub grad_hidden: Tensor<B, 3>,
    /// `dL/dW` `[vocab, hidden]` in f32, when requested.
    pub grad_weight: Option<Tensor<B, 2>>,
}

/// Cross-entropy of `hidden` (`[B, T, H]`, no autodiff) against `targets` with projection
/// `w [V, H]`, normalised by the step's loss-token count `step_tokens`.
pub fn fused_ce<B: Backend>(
    hidden: Tensor<B, 3>,
    w: Tensor<B, 2>,
    targets: &ShiftedTargets,
    chunk: usize,
    step_tokens: usize,
    want_weight_grad: bool,
) -> FusedCe<B> {
    let [b, t, h] = hidden.dims();
    let v = w.dims()[0];
    let dev = hidden.device();
    let dtype = hidden.dtype();
    let inv_n = 1.0 / step_tokens as f64;
    let mut nll_sum = 0.0;
    let mut grad_hidden = Tensor::<B, 3>::zeros([b, t, h], (&dev, dtype));
    let mut grad_weight: Option<Tensor<B, 2>> = None;
    // The last chunk's `[bn, V]` buffer, reused for the next chunk's logits where it can be.
    let mut scratch: Option<Tensor<B, 2>> = None;
    for (a, e) in loss_chunks(targets, chunk) {
        let n = e - a;
        let hc = hidden.clone().narrow(1, a, n).reshape([b * n, h]);
        let logits = backend_ext::matmul_nt_into(scratch.take(), &hc, &w).cast(DType::F32); // [bn, V]
        let (ids, keep) = host_targets(targets, a, e, v);
        let (d, chunk_nll) = match backend_ext::xent_grad_in_place(logits, &ids, &keep, inv_n as f32) {
            Ok(done) => done,
            Err(logits) => {
                tracing::trace!(rows = ids.len(), "fused_ce: chunk cross-entropy as tensor ops (no in-place kernel here)");
                xent_grad_tensor_ops(logits, &ids, &keep, inv_n)
            }
        };
        nll_sum += chunk_nll;
        let dc = d.cast(w.dtype());
        let gh = dc.clone().matmul(w.clone()).reshape([b, n, h]).cast(dtype);
        backend_ext::assign_in_place(&mut grad_hidden, [0..b, a..e, 0..h], gh);
        if want_weight_grad {
            match grad_weight.as_mut() {
                // in place where the backend allows, else `gw + dcᵀ·hc` (cast to gw's f32)
                Some(gw) => backend_ext::add_matmul_tn(gw, &dc, &hc),
                None => grad_weight = Some(dc.clone().transpose().matmul(hc).cast(DType::F32)), // [V, H]
            }
        }
        scratch = Some(dc);
    }
    FusedCe {
        nll_sum,
        grad_hidden,
        grad_weight,
    }
}

/// Targets of positions `[t0, t1)` of every row, host side: the (clamped) target id of every
/// position and whether it counts (ignored positions get id 0 and keep 0).
fn host_targets(targets: &ShiftedTargets, t0: usize, t1: usize, vocab: usize) -> (Vec<usize>, Vec<f32>) {
    let n = t1 - t0;
    let mut ids = Vec::with_capacity(targets.batch * n);
    let mut keep = Vec::with_capacity(targets.batch * n);
    for b in 0..targets.batch {
        for &t in &targets.targets[b * targets.seq + t0..b * targets.seq + t1] {
            let ok = t != crate::loss::IGNORE_INDEX;
            ids.push(if ok { t.clamp(0, vocab as i64 - 1) as usize } else { 0 });
            keep.push(if ok { 1.0f32 } else { 0.0 });
        }
    }
    (ids, keep)
}

/// [`backend_ext::xent_grad_in_place`] as tensor ops (backends without the fast path):
/// `(dL/dlogits, Σ nll)` for f32 `logits [rows, V]`.
fn xent_grad_tensor_ops<B: Backend>(logits: Tensor<B, 2>, ids: &[usize], keep: &[f32], inv_n: f64) -> (Tensor<B, 2>, f64) {
    let dev = logits.device();
    let rows = ids.len();
    let ids = Tensor::<B, 2, burn::tensor::Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [rows, 1]), &dev);
    let keep = Tensor::<B, 2>::from_data(TensorData::new(keep.to_vec(), [rows, 1]), (&dev, DType::F32));
    let m = logits.clone().max_dim(1); // [bn, 1]
    let shifted = logits - m;
    let exp = shifted.clone().exp();
    let sum = exp.clone().sum_dim(1); // [bn, 1]
    let lse = sum.clone().log(); // of shifted
    let picked = shifted.gather(1, ids.clone()); // [bn, 1]
    let nll = (lse - picked) * keep.clone();
    let nll_sum = nll.sum().into_scalar().elem_f64();
    // dL/dlogits = (softmax − onehot) · keep / N
    let coef = keep.mul_scalar(inv_n); // [bn, 1]
    let d = (exp / sum) * coef.clone();
    (d.scatter(1, ids, coef.neg(), IndexingUpdateOp::Add), nll_sum)
}

pub(crate) fn chunk_targets<B: Backend>(targets: &ShiftedTargets, t0: usize, t1: usize, vocab: usize, dev: &B::Device) -> (Tensor<B, 2, burn::tensor::Int>, Tensor<B, 2>) {
    let (ids, keep) = host_targets(targets, t0, t1, vocab);
    let rows = ids.len();
    let ids: Vec<i64> = ids.into_iter().map(|i| i as i64).collect();
    (
        Tensor::from_data(TensorData::new(ids, [rows, 1]), dev),
        Tensor::from_data(TensorData::new(keep, [rows, 1]), (dev, DType::F32)),
    )
}
