//! Token losses: masked cross-entropy computed chunk by chunk over the sequence (so
//! `[B, T, vocab]` logits never exist at once in f32 for a 152k vocabulary) and the logit
//! distillation divergences (forward KL, reverse KL, generalised JSD as TRL's GKD defines it).
//!
//! Everything returns **sums** over loss tokens, not means: the trainer divides by the number
//! of loss tokens of the whole optimizer step, so the step loss is the mean over all its
//! tokens across micro-batches (not a mean of per-batch means).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::config::KdKind;

/// The label value that marks "no loss here" (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Next-token targets of one micro-batch, already shifted: `targets[b*T + t]` is the label
/// the logits at position `t` must predict (`labels[t+1]`), or [`IGNORE_INDEX`].
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftedTargets {
    /// Rows.
    pub batch: usize,
    /// Positions per row.
    pub seq: usize,
    /// `[batch * seq]`, row-major.
    pub targets: Vec<i64>,
}

impl ShiftedTargets {
    /// Shifts HF-style `labels` (aligned with `input_ids`, -100 = ignored) left by one. With
    /// `segment_ids`, a position whose next token starts another document predicts nothing,
    /// so packing can never train one sample to continue into the next.
    pub fn from_labels(labels: &[Vec<i64>], segment_ids: Option<&[Vec<i64>]>) -> Self {
        let batch = labels.len();
        let seq = labels.first().map(|r| r.len()).unwrap_or(0);
        let mut targets = vec![IGNORE_INDEX; batch * seq];
        for (b, row) in labels.iter().enumerate() {
            for t in 0..seq.saturating_sub(1) {
                let same_doc = segment_ids.is_none_or(|s| s[b][t] == s[b][t + 1]);
                if same_doc {
                    targets[b * seq + t] = row[t + 1];
                }
            }
        }
        Self { batch, seq, targets }
    }

    /// Number of positions that carry a loss.
    pub fn num_loss_tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE_INDEX).count()
    }

    /// Loss tokens among positions `t0..t1` of every row.
    fn count_in(&self, t0: usize, t1: usize) -> usize {
        (0..self.batch)
            .map(|b| {
                self.targets[b * self.seq + t0..b * self.seq + t1]
                    .iter()
                    .filter(|&&t| t != IGNORE_INDEX)
                    .count()
            })
            .sum()
    }

    /// Targets of positions `t0..t1` as (clamped ids `[B, n]`, keep mask `[B, n]` as 0/1 f32).
    fn chunk<B: Backend>(&self, t0: usize, t1: usize, vocab: usize, dev: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
        let n = t1 - t0;
        let mut ids = Vec::with_capacity(self.batch * n);
        let mut keep = Vec::with_capacity(self.batch * n);
        for b in 0..self.batch {
            for &t in &self.targets[b * self.seq + t0..b * self.seq + t1] {
                let ok = t != IGNORE_INDEX;
                ids.push(if ok { t.clamp(0, vocab as i64 - 1) } else { 0 });
                keep.push(if ok { 1.0f32 } else { 0.0 });
            }
        }
        (
            Tensor::from_data(TensorData::new(ids, [self.batch, n]), dev),
            Tensor::from_data(TensorData::new(keep, [self.batch, n]), (dev, DType::F32)),
        )
    }
}

/// Chunk boundaries over `0..seq` that contain at least one loss token (chunks of prompt-only
/// positions are skipped entirely: no logits are computed for them).
pub fn loss_chunks(targets: &ShiftedTargets, chunk: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut t0 = 0;
    while t0 < targets.seq {
        let t1 = (t0 + chunk).min(targets.seq);
        if targets.count_in(t0, t1) > 0 {
            out.push((t0, t1));
        }
        t0 = t1;
    }
    out
}

/// Sum of `-log softmax(logits)[target]` over the kept positions of one chunk.
/// `logits [B, n, V]` in any float dtype (upcast to f32 here).
pub fn ce_sum_chunk<B: Backend>(logits: Tensor<B, 3>, targets: &ShiftedTargets, t0: usize, t1: usize) -> Tensor<B, 1> {
    let [b, n, v] = logits.dims();
    debug_assert_eq!(n, t1 - t0);
    let (ids, keep) = targets.chunk::<B>(t0, t1, v, &logits.device());
    let lp = log_softmax(logits.cast(DType::F32), 2);
    let picked = lp.gather(2, ids.reshape([b, n, 1])).reshape([b, n]);
    (picked * keep).sum().neg()
}

/// Which divergence and how: the `[distill]` knobs the loss needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdSpec {
    /// Divergence.
    pub kind: KdKind,
    /// JSD mixture weight.
    pub beta: f64,
    /// Softmax temperature.
    pub temperature: f64,
}

/// Sum over kept positions of the chosen divergence between teacher and student
/// distributions at temperature `temperature`, multiplied by `temperature²` (Hinton's scaling,
/// so gradients keep their magnitude as T changes). Vocabularies are cut to the shorter one
/// (checkpoints of one family pad the embedding to different multiples).
///
/// * `Forward`: KL(p_teacher ‖ q_student).
/// * `Reverse`: KL(q_student ‖ p_teacher).
/// * `Jsd`: β·KL(p ‖ m) + (1−β)·KL(q ‖ m) with m = β·p + (1−β)·q (TRL `generalized_jsd_loss`).
pub fn kd_sum_chunk<B: Backend>(
    student_logits: Tensor<B, 3>,
    teacher_logits: Tensor<B, 3>,
    targets: &ShiftedTargets,
    t0: usize,
    t1: usize,
    spec: KdSpec,
) -> Tensor<B, 1> {
    let KdSpec { kind, beta, temperature } = spec;
    let [b, n, vs] = student_logits.dims();
    let vt = teacher_logits.dims()[2];
    let v = vs.min(vt);
    let s = student_logits.cast(DType::F32);
    let t = teacher_logits.cast(DType::F32).detach();
    let s = if v < vs { s.narrow(2, 0, v) } else { s };
    let t = if v < vt { t.narrow(2, 0, v) } else { t };
    let inv_t = 1.0 / temperature;
    let lq = log_softmax(s.mul_scalar(inv_t), 2);
    let lp = log_softmax(t.mul_scalar(inv_t), 2);
    let per_token = match kind {
        KdKind::Forward => (softmax_from_log(lp.clone()) * (lp - lq)).sum_dim(2),
        KdKind::Reverse => (softmax_from_log(lq.clone()) * (lq - lp)).sum_dim(2),
        KdKind::Jsd => {
            let p = softmax_from_log(lp.clone());
            let q = softmax_from_log(lq.clone());
            let m = p.clone().mul_scalar(beta) + q.clone().mul_scalar(1.0 - beta);
            let lm = m.clamp_min(1e-30).log();
            let kl_p = (p * (lp - lm.clone())).sum_dim(2);
            let kl_q = (q * (lq - lm)).sum_dim(2);
            kl_p.mul_scalar(beta) + kl_q.mul_scalar(1.0 - beta)
        }
    }
    .reshape([b, n]);
    let (_, keep) = targets.chunk::<B>(t0, t1, v, &per_token.device());
    (per_token * keep).sum().mul_scalar(temperature * temperature)
}

fn softmax_from_log<B: Backend>(log_probs: Tensor<B, 3>) -> Tensor<B, 3> {
    log_probs.exp()
}


#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::ElementConversion;

    type B = Flex;

    fn logits(dev: &burn::tensor::Device<B>) -> Tensor<B, 3> {
        let v: Vec<f32> = (0..2 * 4 * 5).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
        Tensor::from_data(TensorData::new(v, [2, 4, 5]), dev)
    }

    #[test]
    fn shift_masks_cross_document_targets() {
        let labels = vec![vec![-100, 1, 2, 3, 4, 5]];
        let segs = vec![vec![0, 0, 0, 1, 1, 1]];
        let t = ShiftedTargets::from_labels(&labels, Some(&segs));
        assert_eq!(t.targets, vec![1, 2, -100, 4, 5, -100]);
        let t = ShiftedTargets::from_labels(&labels, None);
        assert_eq!(t.targets, vec![1, 2, 3, 4, 5, -100]);
        assert_eq!(t.num_loss_tokens(), 5);
    }

    #[test]
    fn chunked_ce_equals_full_and_reference() {
        let dev = Default::default();
        let lg = logits(&dev);
        let labels = vec![vec![0, 3, -100, 4], vec![-100, -100, 1, 2]];
        let t = ShiftedTargets::from_labels(&labels, None);
        let full: f64 = ce_sum_chunk(lg.clone(), &t, 0, 4).into_scalar().elem();
        let mut chunked = 0.0;
        for (a, b) in loss_chunks(&t, 1) {
            chunked += ce_sum_chunk::<B>(lg.clone().narrow(1, a, b - a), &t, a, b).into_scalar().elem::<f64>();
        }
        assert!((full - chunked).abs() < 1e-5);
        // reference by hand
        let data: Vec<f32> = lg.into_data().iter::<f32>().collect();
        let mut want = 0.0f64;
        for (row, pos, tgt) in [(0usize, 0usize, 3usize), (0, 2, 4), (1, 1, 1), (1, 2, 2)] {
            let o = (row * 4 + pos) * 5;
            let xs = &data[o..o + 5];
            let lse = xs.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            want += lse - xs[tgt] as f64;
        }
        assert!((full - want).abs() < 1e-5, "{full} vs {want}");
        // the chunk with only ignored targets (position 3) is skipped
        assert_eq!(loss_chunks(&t, 1), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(loss_chunks(&t, 2), vec![(0, 2), (2, 4)]);
    }

    #[test]
    fn kd_divergences() {
        let dev = Default::default();
        let s = logits(&dev);
        let labels = vec![vec![0, 1, 1, 1], vec![0, 1, 1, 1]];
        let t = ShiftedTargets::from_labels(&labels, None);
        for kind in [KdKind::Forward, KdKind::Reverse, KdKind::Jsd] {
            let same: f64 = kd_sum_chunk(s.clone(), s.clone(), &t, 0, 4, KdSpec { kind, beta: 0.5, temperature: 1.0 }).into_scalar().elem();
            assert!(same.abs() < 1e-5, "{kind:?} of equal distributions = {same}");
            let other = s.clone().mul_scalar(-1.0);
            let d: f64 = kd_sum_chunk(s.clone(), other, &t, 0, 4, KdSpec { kind, beta: 0.5, temperature: 2.0 }).into_scalar().elem();
            assert!(d > 1e-3, "{kind:?} = {d}");
        }
        // forward KL by hand on one position
        let a: Tensor<B, 3> = Tensor::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 1, 2]), &dev);
        let b: Tensor<B, 3> = Tensor::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 1, 2]), &dev);
        let one = ShiftedTargets { batch: 1, seq: 1, targets: vec![0] };
        let kl: f64 = kd_sum_chunk(a, b, &one, 0, 1, KdSpec { kind: KdKind::Forward, beta: 0.5, temperature: 1.0 }).into_scalar().elem();
        let p1 = 1.0 / (1.0 + (-1.0f64).exp());
        let want = p1 * (p1 / (1.0 - p1)).ln() + (1.0 - p1) * ((1.0 - p1) / p1).ln();
        assert!((kl - want).abs() < 1e-6);
    }
}
