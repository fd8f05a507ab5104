//! Objectives: what turns one micro-batch into a loss.
//!
//! The trainer's step loop is the same for every kind of training (forward to the final-norm
//! hidden states, backward, accumulate, clip, AdamW); what differs is how the hidden states of
//! a micro-batch become a scalar. An [`Objective`] is that one piece: given the model view and
//! the hidden states `[B, T, H]` (an autodiff leaf or an activation), it returns a
//! differentiable scalar whose gradient is that of the step's loss, the host-side sums the
//! metrics report, and optionally a hand-computed gradient of the output projection (the fused
//! paths never let autodiff see `[B, T, vocab]` logits). Because the loss starts from hidden
//! states, a layer-by-layer checkpointed backward can call
//! [`Objective::loss_from_hidden`] as its "hidden → loss" closure.
//!
//! SFT cross-entropy ([`sft`]), logit distillation ([`kd`]) and GRPO ([`grpo`]) are one file
//! each; a new objective is one new file plus its config.

pub mod grpo;
pub mod kd;
pub mod sft;

use std::collections::BTreeMap;

use burn::module::ParamId;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use models::lm::ForwardInput;
use models::Model;

/// Host-side sums of one micro-batch's (or step's) losses, before any division the objective
/// does not do itself. `total` is the objective; `parts` are named components and statistics
/// (e.g. `ce`, `kd`, GRPO's clip counts), summed the same way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossSums {
    /// The objective's sum (SFT: Σ token NLL; GRPO: the already-normalised loss).
    pub total: f64,
    /// Named components, summed across micro-batches.
    pub parts: BTreeMap<&'static str, f64>,
}

impl LossSums {
    /// Adds another micro-batch's sums.
    pub fn add(&mut self, o: &LossSums) {
        self.total += o.total;
        for (k, v) in &o.parts {
            *self.parts.entry(k).or_insert(0.0) += v;
        }
    }

    /// Adds `v` to the part `name`.
    pub fn add_part(&mut self, name: &'static str, v: f64) {
        *self.parts.entry(name).or_insert(0.0) += v;
    }

    /// The part `name` (0 when never added).
    pub fn part(&self, name: &str) -> f64 {
        self.parts.get(name).copied().unwrap_or(0.0)
    }
}

/// What an objective returns for one micro-batch.
pub struct ObjectiveLoss<AB: AutodiffBackend> {
    /// A differentiable scalar whose gradient (w.r.t. the hidden states and everything before
    /// them) is that of the step's loss. For fused paths this is a surrogate whose *value* is
    /// not the loss; read the value from `sums`.
    pub loss: Tensor<AB, 1>,
    /// Host-side sums for the metrics.
    pub sums: LossSums,
    /// The output projection's gradient computed by hand (added to the accumulated gradients
    /// after backward), with the id of that parameter.
    pub projection_grad: Option<(ParamId, Tensor<AB::InnerBackend, 2>)>,
}

/// Turns micro-batches into losses. See the module doc.
pub trait Objective<AB: AutodiffBackend> {
    /// One micro-batch as this objective needs it.
    type Batch;

    /// True when the micro-batch carries no loss (it is skipped without a forward pass).
    fn is_empty(&self, batch: &Self::Batch) -> bool;

    /// The model input of a micro-batch.
    fn input(&self, batch: &Self::Batch, device: &AB::Device) -> ForwardInput<AB>;

    /// The loss of one micro-batch from its final-norm hidden states `[B, T, H]` computed by
    /// `view` (the model the forward ran on: LoRA and dtype cast applied). `step_tokens` is
    /// the step's loss-token count for objectives that normalise by it. `None` when there is
    /// nothing to train on.
    fn loss_from_hidden(
        &self,
        view: &Model<AB>,
        hidden: Tensor<AB, 3>,
        batch: &Self::Batch,
        step_tokens: usize,
    ) -> Option<ObjectiveLoss<AB>>;
}

/// A scalar tensor's value on the host.
pub(crate) fn scalar<B: burn::tensor::backend::Backend>(t: &Tensor<B, 1>) -> f64 {
    use burn::tensor::ElementConversion;
    t.clone().into_scalar().elem::<f64>()
}
