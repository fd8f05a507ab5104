//! Held-out loss: mean cross-entropy of the policy's view over held-out rows, no autodiff.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use models::CausalLm;

use super::policy::Policy;
use crate::batch::{MicroBatch, TrainRow};
use crate::config::TrainSection;
use crate::loss::{ce_sum_chunk, loss_chunks};
use crate::objective::scalar;

/// Mean held-out cross-entropy and its token count (NaN without loss tokens).
pub fn eval_loss<AB: AutodiffBackend>(policy: &Policy<AB>, rows: &[TrainRow], pad_id: u32, train: &TrainSection, device: &AB::Device) -> (f64, u64) {
    let view = policy.view().valid();
    let (mut sum, mut n) = (0.0, 0u64);
    for (i, chunk) in rows.chunks(train.batch_size).enumerate() {
        if train.eval_max_batches > 0 && i >= train.eval_max_batches {
            break;
        }
        let refs: Vec<&TrainRow> = chunk.iter().collect();
        let mb = MicroBatch::new(&refs, pad_id);
        let chunks = loss_chunks(&mb.targets, train.loss_chunk);
        if chunks.is_empty() {
            continue;
        }
        let hidden = view.forward_hidden(mb.to_input::<AB::InnerBackend>(device));
        for (a, b) in chunks {
            let logits = view.logits(hidden.clone().narrow(1, a, b - a));
            sum += scalar(&ce_sum_chunk(logits, &mb.targets, a, b));
        }
        n += mb.targets.num_loss_tokens() as u64;
    }
    (if n > 0 { sum / n as f64 } else { f64::NAN }, n)
}
