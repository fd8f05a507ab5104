//! The fused-projection trick of [`crate::fused_ce`] for any loss of the logits.
//!
//! Cross-entropy has a closed-form gradient, so [`crate::fused_ce`] writes it by hand. Logit
//! distillation (forward/reverse KL, JSD at a temperature) is a loss of the logits whose
//! gradient is tedious to write and easy to get wrong; here autodiff computes it instead, but
//! on a graph that holds ONE chunk: each chunk's logits `h·Wᵀ` are computed on the inner
//! backend, wrapped as a fresh autodiff leaf, the caller's chunk loss is built on that leaf and
//! back-propagated at once, and `dL/dlogits` is projected to `dL/dhidden = dlogits·W` and
//! `dL/dW = dlogitsᵀ·h` before the next chunk. Under the plain autodiff path every chunk's
//! `[B, n, vocab]` logits (and the teacher's) stay alive until the step's backward — with
//! gradient checkpointing on, they were the one thing that still grew with `S × vocab`.
//! Here peak head memory is one chunk, whatever the sequence length.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor};

/// Gradients of the head for one micro-batch.
pub struct FusedHead<B: Backend> {
    /// `dL/dhidden` `[B, T, H]`, in the hidden dtype (zero outside the chunks).
    pub grad_hidden: Tensor<B, 3>,
    /// `dL/dW` `[vocab, hidden]` in f32, when requested.
    pub grad_weight: Option<Tensor<B, 2>>,
}

/// Runs `chunk_loss(logits, t0, t1)` on each chunk `(t0, t1)` of `hidden [B, T, H]` projected
/// by `w [V, H]`, where `logits` is an f32 autodiff leaf `[B, t1 − t0, V]` and the returned
/// scalar is the chunk's share of the step's loss (already normalised). Returns the gradients
/// of the summed loss w.r.t. `hidden` and, with `want_weight_grad`, `w`.
pub fn fused_head<AB: AutodiffBackend>(
    hidden: Tensor<AB::InnerBackend, 3>,
    w: Tensor<AB::InnerBackend, 2>,
    chunks: &[(usize, usize)],
    want_weight_grad: bool,
    mut chunk_loss: impl FnMut(Tensor<AB, 3>, usize, usize) -> Tensor<AB, 1>,
) -> FusedHead<AB::InnerBackend> {
    let [b, t, h] = hidden.dims();
    let v = w.dims()[0];
    let dev = hidden.device();
    let dtype = hidden.dtype();
    let mut grad_hidden = Tensor::<AB::InnerBackend, 3>::zeros([b, t, h], (&dev, dtype));
    let mut grad_weight: Option<Tensor<AB::InnerBackend, 2>> = None;
    for &(a, e) in chunks {
        let n = e - a;
        let hc = hidden.clone().narrow(1, a, n).reshape([b * n, h]);
        let logits = hc.clone().matmul(w.clone().transpose()).cast(DType::F32).reshape([b, n, v]);
        let leaf = Tensor::<AB, 3>::from_inner(logits).require_grad();
        let grads = chunk_loss(leaf.clone(), a, e).backward();
        let Some(d) = leaf.grad(&grads) else {
            continue; // the chunk's loss does not depend on its logits
        };
        let dc = d.reshape([b * n, v]).cast(w.dtype());
        let gh = dc.clone().matmul(w.clone()).reshape([b, n, h]).cast(dtype);
        grad_hidden = grad_hidden.slice_assign([0..b, a..e, 0..h], gh);
        if want_weight_grad {
            let gw = dc.transpose().matmul(hc).cast(DType::F32);
            grad_weight = Some(match grad_weight {
                Some(g) => g + gw,
                None => gw,
            });
        }
    }
    FusedHead {
        grad_hidden,
        grad_weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{ce_sum_chunk, kd_sum_chunk, loss_chunks, KdSpec, ShiftedTargets};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, ElementConversion};
    use crate::config::KdKind;

    type B = Flex;
    type AB = Autodiff<Flex>;

    fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f64 {
        (a - b).abs().max().into_scalar().elem::<f64>()
    }

    /// KD + CE through one-chunk graphs gives the same gradients as autodiff through all
    /// chunks at once, for hidden states and the projection.
    #[test]
    fn fused_head_matches_full_autodiff() {
        let dev = Default::default();
        let (bsz, t, h, v) = (2, 7, 5, 11);
        let hidden = Tensor::<B, 3>::random([bsz, t, h], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<B, 2>::random([v, h], Distribution::Normal(0.0, 0.5), &dev);
        let teacher = Tensor::<B, 3>::random([bsz, t, v], Distribution::Normal(0.0, 2.0), &dev);
        let labels: Vec<Vec<i64>> = vec![vec![-100, 3, 4, 1, 9, 2, 0], vec![5, 5, -100, 7, 10, 1, 3]];
        let targets = ShiftedTargets::from_labels(&labels, None);
        let chunks = loss_chunks(&targets, 3);
        let spec = KdSpec {
            kind: KdKind::Jsd,
            beta: 0.3,
            temperature: 1.7,
        };
        let mix = 0.6;
        let loss_of = |logits: Tensor<AB, 3>, a: usize, e: usize| {
            let tl = Tensor::<AB, 3>::from_inner(teacher.clone().narrow(1, a, e - a));
            let ce = ce_sum_chunk(logits.clone(), &targets, a, e);
            let kd = kd_sum_chunk(logits, tl, &targets, a, e, spec);
            (ce.mul_scalar(1.0 - mix) + kd.mul_scalar(mix)).div_scalar(9.0)
        };
        let fused = fused_head::<AB>(hidden.clone(), w.clone(), &chunks, true, loss_of);

        let hd = Tensor::<AB, 3>::from_inner(hidden.clone()).require_grad();
        let wd = Tensor::<AB, 2>::from_inner(w.clone()).require_grad();
        let mut total: Option<Tensor<AB, 1>> = None;
        for &(a, e) in &chunks {
            let logits = hd.clone().narrow(1, a, e - a).reshape([bsz * (e - a), h]).matmul(wd.clone().transpose()).reshape([bsz, e - a, v]);
            let l = loss_of(logits, a, e);
            total = Some(match total {
                Some(x) => x + l,
                None => l,
            });
        }
        let grads = total.unwrap().backward();
        let gh = hd.grad(&grads).unwrap();
        let gw = wd.grad(&grads).unwrap();
        assert!(max_abs_diff(fused.grad_hidden, gh.clone()) < 1e-6, "hidden grads differ");
        assert!(max_abs_diff(fused.grad_weight.unwrap(), gw.clone()) < 1e-6, "weight grads differ");
        assert!(gh.abs().max().into_scalar().elem::<f64>() > 1e-4, "the check must see a gradient");
    }
}
