//! From a rollout batch to the objective's micro-batches: each completion is one row
//! (prompt + completion from position 0, right-padded, causal), labels on the completion;
//! old/reference logprobs, advantages and the step's aggregation weights laid out per target
//! position; rows grouped into micro-batches by a padded-token budget. Also the no-autodiff
//! logprob pass that fills in old (on-policy) or reference logprobs a batch lacks.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::DType;
use models::{CausalLm, Model};

use super::config::LossType;
use super::rollout::{Rollout, RolloutBatch};
use crate::batch::{MicroBatch, TrainRow};
use crate::fused_ce::chunk_targets;
use crate::loss::{loss_chunks, IGNORE_INDEX};
use crate::objective::grpo::{chunk_logprobs, GrpoBatch};

/// How the step's loss is normalised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregation {
    /// TRL's loss type.
    pub loss_type: LossType,
    /// dr_grpo's constant length.
    pub max_completion_length: usize,
    /// Truncated completions get no loss.
    pub mask_truncated: bool,
}

/// The weight of each token of each completion in the step's loss (0 for masked ones):
/// grpo `1/(len_i·N)`, bnpo/dapo `1/Σ len`, dr_grpo `1/(N·max_completion_length)`, N = the
/// number of completions in the step.
pub fn sequence_weights(rollouts: &[Rollout], agg: &Aggregation) -> Vec<f64> {
    let masked = |r: &Rollout| agg.mask_truncated && r.truncated;
    let n = rollouts.len().max(1) as f64;
    let total: usize = rollouts.iter().filter(|r| !masked(r)).map(|r| r.completion_ids.len()).sum();
    rollouts
        .iter()
        .map(|r| {
            if masked(r) {
                return 0.0;
            }
            match agg.loss_type {
                LossType::Grpo => 1.0 / (r.completion_ids.len().max(1) as f64 * n),
                LossType::Bnpo | LossType::Dapo => 1.0 / total.max(1) as f64,
                LossType::DrGrpo => 1.0 / (n * agg.max_completion_length as f64),
            }
        })
        .collect()
}

/// Consecutive row ranges whose padded size (rows × longest) stays within `budget` tokens
/// (a single longer row gets its own range); `budget == 0` = one range.
pub fn split_by_tokens(lens: &[usize], budget: usize) -> Vec<Range<usize>> {
    if budget == 0 || lens.is_empty() {
        return std::iter::once(0..lens.len()).collect();
    }
    let mut out = Vec::new();
    let (mut start, mut longest) = (0, 0);
    for (i, &len) in lens.iter().enumerate() {
        let l = longest.max(len);
        if i > start && (i - start + 1) * l > budget {
            out.push(start..i);
            start = i;
            longest = len;
        } else {
            longest = l;
        }
    }
    out.push(start..lens.len());
    out
}

fn row(r: &Rollout, with_labels: bool) -> TrainRow {
    let mut ids = r.prompt_ids.clone();
    ids.extend_from_slice(&r.completion_ids);
    let mut labels = vec![IGNORE_INDEX; r.prompt_ids.len()];
    labels.extend(r.completion_ids.iter().map(|&t| if with_labels { t as i64 } else { IGNORE_INDEX }));
    TrainRow::single(ids, labels)
}

/// Flat target positions (in a micro-batch of sequence length `seq`) of row `b`'s completion.
fn positions(r: &Rollout, b: usize, seq: usize) -> Range<usize> {
    let start = b * seq + r.prompt_ids.len() - 1;
    start..start + r.completion_ids.len()
}

/// The objective's micro-batches for a batch whose old logprobs are all present or all absent
/// (absent = on-policy, see [`GrpoBatch::old_logprobs`]), and whose reference logprobs are
/// present when β > 0.
pub fn grpo_batches(batch: &RolloutBatch, advantages: &[f64], agg: &Aggregation, budget: usize, pad_id: u32) -> Vec<GrpoBatch> {
    let weights = sequence_weights(&batch.rollouts, agg);
    let lens: Vec<usize> = batch.rollouts.iter().map(|r| r.prompt_ids.len() + r.completion_ids.len()).collect();
    let with_ref = batch.rollouts.iter().all(|r| r.ref_logprobs.is_some());
    let with_old = batch.rollouts.iter().any(|r| r.old_logprobs.is_some());
    split_by_tokens(&lens, budget)
        .into_iter()
        .map(|range| {
            let rs = &batch.rollouts[range.clone()];
            let rows: Vec<TrainRow> = rs.iter().zip(&weights[range.clone()]).map(|(r, &w)| row(r, w > 0.0)).collect();
            let refs: Vec<&TrainRow> = rows.iter().collect();
            let mb = MicroBatch::new(&refs, pad_id);
            let size = mb.targets.batch * mb.targets.seq;
            let mut g = GrpoBatch {
                old_logprobs: with_old.then(|| vec![0.0; size]),
                ref_logprobs: with_ref.then(|| vec![0.0; size]),
                advantages: vec![0.0; size],
                weights: vec![0.0; size],
                mb,
            };
            for (b, (r, i)) in rs.iter().zip(range).enumerate() {
                let pos = positions(r, b, g.mb.targets.seq);
                if let Some(dst) = g.old_logprobs.as_mut() {
                    let old = r.old_logprobs.as_ref().expect("all or none filled before batching");
                    dst[pos.clone()].copy_from_slice(old);
                }
                if let (Some(dst), Some(src)) = (g.ref_logprobs.as_mut(), r.ref_logprobs.as_ref()) {
                    dst[pos.clone()].copy_from_slice(src);
                }
                g.advantages[pos.clone()].fill(advantages[i]);
                g.weights[pos].fill(weights[i]);
            }
            g
        })
        .collect()
}

/// Which recorded logprobs to fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogprobField {
    /// `old_logprobs` (on-policy: the model is the current policy).
    Old,
    /// `ref_logprobs` (the model is the reference).
    Reference,
}

/// Computes `field` with `model` (no autodiff) for every rollout that lacks it.
pub fn fill_logprobs<B: Backend>(batch: &mut RolloutBatch, model: &Model<B>, field: LogprobField, temperature: f64, chunk: usize, budget: usize, pad_id: u32) {
    let missing: Vec<usize> = (0..batch.rollouts.len())
        .filter(|&i| match field {
            LogprobField::Old => batch.rollouts[i].old_logprobs.is_none(),
            LogprobField::Reference => batch.rollouts[i].ref_logprobs.is_none(),
        })
        .collect();
    let lens: Vec<usize> = missing.iter().map(|&i| batch.rollouts[i].prompt_ids.len() + batch.rollouts[i].completion_ids.len()).collect();
    for range in split_by_tokens(&lens, budget) {
        let idx = &missing[range];
        let rows: Vec<TrainRow> = idx.iter().map(|&i| row(&batch.rollouts[i], true)).collect();
        let refs: Vec<&TrainRow> = rows.iter().collect();
        let mb = MicroBatch::new(&refs, pad_id);
        let lp = target_logprobs(model, &mb, temperature, chunk);
        for (b, &i) in idx.iter().enumerate() {
            let r = &mut batch.rollouts[i];
            let vals = lp[positions(r, b, mb.targets.seq)].to_vec();
            match field {
                LogprobField::Old => r.old_logprobs = Some(vals),
                LogprobField::Reference => r.ref_logprobs = Some(vals),
            }
        }
    }
}

/// Logprobs `[B·T]` of each target token under `softmax(logits / temperature)` (0 where there
/// is no target), one logits chunk at a time, without autodiff.
pub fn target_logprobs<B: Backend>(model: &Model<B>, mb: &MicroBatch, temperature: f64, chunk: usize) -> Vec<f64> {
    let dev = model.device();
    let (bsz, seq) = (mb.targets.batch, mb.targets.seq);
    let mut out = vec![0.0; bsz * seq];
    let chunks = loss_chunks(&mb.targets, chunk);
    if chunks.is_empty() {
        return out;
    }
    let hidden = model.forward_hidden(mb.to_input::<B>(&dev));
    for (a, e) in chunks {
        let n = e - a;
        let logits = model.logits(hidden.clone().narrow(1, a, n));
        let v = logits.dims()[2];
        let z = logits.cast(DType::F32).reshape([bsz * n, v]).mul_scalar(1.0 / temperature);
        let (ids, _) = chunk_targets::<B>(&mb.targets, a, e, v, &dev);
        let (logp, _, _) = chunk_logprobs(z, ids);
        let vals: Vec<f32> = logp.into_data().iter::<f32>().collect();
        for b in 0..bsz {
            for j in 0..n {
                out[b * seq + a + j] = vals[b * n + j] as f64;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_budget_split() {
        assert_eq!(split_by_tokens(&[3, 3, 3, 10, 2], 9), vec![0..3, 3..4, 4..5]);
        assert_eq!(split_by_tokens(&[3, 3], 0), vec![0..2]);
    }

    #[test]
    fn weights_follow_the_loss_type() {
        let mk = |n: usize, truncated: bool| Rollout {
            group: 0.into(),
            prompt_ids: vec![1],
            completion_ids: vec![2; n],
            reward: 0.0,
            old_logprobs: None,
            ref_logprobs: None,
            truncated,
            accuracy: None,
            format: None,
        };
        let rs = vec![mk(2, false), mk(4, true)];
        let agg = |loss_type, mask_truncated| Aggregation { loss_type, max_completion_length: 10, mask_truncated };
        assert_eq!(sequence_weights(&rs, &agg(LossType::Grpo, false)), vec![0.25, 0.125]);
        assert_eq!(sequence_weights(&rs, &agg(LossType::Dapo, false)), vec![1.0 / 6.0; 2]);
        assert_eq!(sequence_weights(&rs, &agg(LossType::DrGrpo, false)), vec![0.05; 2]);
        assert_eq!(sequence_weights(&rs, &agg(LossType::Bnpo, true)), vec![0.5, 0.0]);
    }
}
