//! Supervised fine-tuning: mean token cross-entropy over the step's loss tokens.
//!
//! Two paths with the same math: the fused path (default) computes the output projection's
//! gradient by hand one chunk of logits at a time (see [`crate::fused_ce`]); the autodiff path
//! (reference, or when `model.logits` is not a plain projection) runs log-softmax under
//! autodiff chunk by chunk.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use models::lm::ForwardInput;
use models::{CausalLm, Model};

use super::{scalar, LossSums, Objective, ObjectiveLoss};
use crate::batch::MicroBatch;
use crate::fused_ce::{fused_ce, projection_weight, LmProjection};
use crate::loss::{ce_sum_chunk, loss_chunks};

/// Cross-entropy objective.
#[derive(Debug, Clone)]
pub struct SftObjective {
    loss_chunk: usize,
    fused: Option<LmProjection>,
    weight_grad: bool,
}

impl SftObjective {
    /// `fused`: the probed output projection for the fused path (`None` = autodiff path).
    /// `weight_grad`: whether the projection itself is trained (false under LoRA).
    pub fn new(loss_chunk: usize, fused: Option<LmProjection>, weight_grad: bool) -> Self {
        Self {
            loss_chunk,
            fused,
            weight_grad,
        }
    }

    /// Whether the fused (hand-written projection gradient) path is used.
    pub fn is_fused(&self) -> bool {
        self.fused.is_some()
    }

    fn fused_loss<AB: AutodiffBackend>(
        &self,
        proj: &LmProjection,
        view: &Model<AB>,
        hidden: Tensor<AB, 3>,
        mb: &MicroBatch,
        step_tokens: usize,
    ) -> Option<ObjectiveLoss<AB>> {
        let (found, w) = projection_weight(view)?;
        debug_assert_eq!(found.id, proj.id);
        let f = fused_ce(hidden.clone().inner(), w.inner(), &mb.targets, self.loss_chunk, step_tokens, self.weight_grad);
        let surrogate = (hidden * Tensor::<AB, 3>::from_inner(f.grad_hidden)).sum();
        let mut sums = LossSums {
            total: f.nll_sum,
            ..Default::default()
        };
        sums.add_part("ce", f.nll_sum);
        Some(ObjectiveLoss {
            loss: surrogate,
            sums,
            projection_grad: f.grad_weight.map(|g| (proj.id, g)),
        })
    }

    fn autodiff_loss<AB: AutodiffBackend>(
        &self,
        view: &Model<AB>,
        hidden: Tensor<AB, 3>,
        mb: &MicroBatch,
        step_tokens: usize,
    ) -> Option<ObjectiveLoss<AB>> {
        let mut total: Option<Tensor<AB, 1>> = None;
        let mut sums = LossSums::default();
        for (a, b) in loss_chunks(&mb.targets, self.loss_chunk) {
            let logits = view.logits(hidden.clone().narrow(1, a, b - a));
            let ce = ce_sum_chunk(logits, &mb.targets, a, b);
            let c = scalar(&ce);
            sums.add_part("ce", c);
            sums.total += c;
            total = Some(match total {
                Some(t) => t + ce,
                None => ce,
            });
        }
        Some(ObjectiveLoss {
            loss: total?.div_scalar(step_tokens as f64),
            sums,
            projection_grad: None,
        })
    }
}

impl<AB: AutodiffBackend> Objective<AB> for SftObjective {
    type Batch = MicroBatch;

    fn is_empty(&self, mb: &MicroBatch) -> bool {
        mb.targets.num_loss_tokens() == 0
    }

    fn input(&self, mb: &MicroBatch, device: &AB::Device) -> ForwardInput<AB> {
        mb.to_input::<AB>(device)
    }

    fn loss_from_hidden(&self, view: &Model<AB>, hidden: Tensor<AB, 3>, mb: &MicroBatch, step_tokens: usize) -> Option<ObjectiveLoss<AB>> {
        if mb.targets.num_loss_tokens() == 0 {
            return None;
        }
        match &self.fused {
            Some(proj) => self.fused_loss(proj, view, hidden, mb, step_tokens),
            None => self.autodiff_loss(view, hidden, mb, step_tokens),
        }
    }
}
