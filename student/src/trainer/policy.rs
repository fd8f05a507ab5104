//! The trained policy: master weights, optional LoRA adapters, the optimizer and the compute
//! dtype, with the one step every objective shares: forward each micro-batch to its hidden
//! states, let the objective turn them into a loss, backward, accumulate; then global-norm,
//! divergence check, clip and AdamW.

use std::cell::RefCell;
use std::time::Instant;

use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Tensor};
use models::{CausalLm, Model};

use crate::checkpointed::{checkpointed_backward_into, CheckpointOptions, EmbeddingRows, GradSink};
use crate::error::{Result, StudentError};
use crate::lora::{cast_view, Lora};
use crate::objective::{LossSums, Objective};
use crate::optim::{clip_coefficient, global_grad_norm, AdamW, GradAccumulator};

/// Weights being trained and their optimizer.
pub struct Policy<AB: AutodiffBackend> {
    /// f32 master weights (frozen under LoRA).
    pub model: Model<AB>,
    /// Low-rank adapters, when `[lora]` is set.
    pub lora: Option<Lora<AB>>,
    /// PyTorch-exact AdamW over the trainable parameters.
    pub opt: AdamW<AB::InnerBackend>,
    /// bf16 compute (cast views of the f32 master weights), or `None` for f32.
    pub compute_dtype: Option<DType>,
    /// Per-layer recompute with block-wise attention (`train.gradient_checkpointing`), or
    /// `None` for the plain autodiff backward.
    pub checkpointing: Option<CheckpointOptions>,
}

/// Gradients and sums of one optimizer step's micro-batches.
pub struct Accumulated {
    /// Accumulated gradients (inner backend).
    pub grads: GradientsParams,
    /// Host-side loss sums over the micro-batches.
    pub sums: LossSums,
    /// Seconds in forward + objective.
    pub forward_s: f64,
    /// Seconds in backward + accumulation.
    pub backward_s: f64,
}

impl<AB: AutodiffBackend> Policy<AB> {
    /// The model the forward runs on: LoRA deltas and the compute-dtype cast applied.
    pub fn view(&self) -> Model<AB> {
        match (&self.lora, self.compute_dtype) {
            (Some(l), dt) => l.apply(self.model.clone(), dt),
            (None, Some(dt)) => cast_view(self.model.clone(), dt),
            (None, None) => self.model.clone(),
        }
    }

    /// Runs every micro-batch through `objective` and accumulates the gradients.
    pub fn accumulate<'b, O: Objective<AB> + ?Sized + 'b>(
        &self,
        objective: &O,
        batches: impl IntoIterator<Item = &'b O::Batch>,
        step_tokens: usize,
        device: &AB::Device,
    ) -> Accumulated {
        let mut acc = GradAccumulator::new();
        let mut sums = LossSums::default();
        let (mut forward_s, mut backward_s) = (0.0, 0.0);
        for batch in batches {
            if objective.is_empty(batch) {
                continue;
            }
            if let Some(ck) = &self.checkpointing {
                let tb = Instant::now();
                sums.add(&self.checkpointed_micro(objective, batch, step_tokens, ck, &mut acc, device));
                backward_s += tb.elapsed().as_secs_f64();
                continue;
            }
            let tf = Instant::now();
            let view = self.view();
            let hidden = view.forward_hidden(objective.input(batch, device));
            let Some(out) = objective.loss_from_hidden(&view, hidden, batch, step_tokens) else {
                continue;
            };
            sums.add(&out.sums);
            forward_s += tf.elapsed().as_secs_f64();
            let tb = Instant::now();
            let grads = out.loss.backward();
            match &self.lora {
                Some(l) => acc.add(&l.adapters, grads),
                None => acc.add(&self.model, grads),
            }
            if let Some((id, g)) = out.projection_grad {
                acc.add_tensor::<AB::InnerBackend, 2>(id, g);
            }
            backward_s += tb.elapsed().as_secs_f64();
        }
        Accumulated {
            grads: acc.take(),
            sums,
            forward_s,
            backward_s,
        }
    }

    /// Forward + backward of one micro-batch with gradient checkpointing (see
    /// [`crate::checkpointed`]): the same loss and gradients as the plain path, accumulated
    /// into `acc`; returns the host-side loss sums.
    fn checkpointed_micro<O: Objective<AB> + ?Sized>(
        &self,
        objective: &O,
        batch: &O::Batch,
        step_tokens: usize,
        ck: &CheckpointOptions,
        acc: &mut GradAccumulator,
        device: &AB::Device,
    ) -> LossSums {
        let mut sums = LossSums::default();
        let projection = RefCell::new(None);
        let head = |hidden| {
            let view = self.view();
            let out = objective
                .loss_from_hidden(&view, hidden, batch, step_tokens)
                .expect("a non-empty micro-batch has a loss");
            sums = out.sums;
            *projection.borrow_mut() = out.projection_grad;
            out.loss
        };
        let input = objective.input(batch, device);
        let mut sink = MicroSink { policy: self, acc: &mut *acc, projection: &projection };
        checkpointed_backward_into(|| self.view(), &input, ck, head, &mut sink);
        if let Some((id, g)) = projection.into_inner() {
            acc.add_tensor::<AB::InnerBackend, 2>(id, g);
        }
        sums
    }

    /// Global L2 norm of the trainable parameters' gradients (before clipping).
    pub fn grad_norm(&self, grads: &GradientsParams) -> f64 {
        match &self.lora {
            Some(l) => global_grad_norm::<AB, _>(&l.adapters, grads),
            None => global_grad_norm::<AB, _>(&self.model, grads),
        }
    }

    /// Checks `loss` and the gradient norm, clips to `max_grad_norm` (0 = off) and takes one
    /// AdamW step at `lr`. Returns the updated policy (by value, so the old weights are not
    /// kept alive next to the new ones) and the norm before clipping.
    pub fn update(self, grads: &mut GradientsParams, loss: f64, step: u64, lr: f64, max_grad_norm: f64) -> Result<(Self, f64)> {
        let grad_norm = self.grad_norm(grads);
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(StudentError::Diverged {
                step,
                msg: format!("loss {loss}, grad_norm {grad_norm}"),
            });
        }
        let coef = clip_coefficient(grad_norm, max_grad_norm);
        let Policy {
            mut model,
            mut lora,
            mut opt,
            compute_dtype,
            checkpointing,
        } = self;
        match &mut lora {
            Some(l) => l.adapters = opt.step::<AB, _>(l.adapters.clone(), grads, lr, coef),
            None => model = opt.step::<AB, _>(model, grads, lr, coef),
        }
        let policy = Policy {
            model,
            lora,
            opt,
            compute_dtype,
            checkpointing,
        };
        Ok((policy, grad_norm))
    }
}

/// Where a checkpointed micro-batch's gradients go: the accumulator, and with full
/// fine-tuning the embedding's rows straight into a table that already exists (the running
/// sum, or the fused loss's projection gradient of a tied table, which the head left in
/// `projection`), so no second `[vocab, H]` table is built.
struct MicroSink<'a, AB: AutodiffBackend> {
    policy: &'a Policy<AB>,
    acc: &'a mut GradAccumulator,
    projection: &'a Pending<AB::InnerBackend>,
}

/// A projection gradient the fused loss left, not yet added to the accumulator.
type Pending<B> = RefCell<Option<(ParamId, Tensor<B, 2>)>>;

impl<AB: AutodiffBackend> GradSink<AB> for MicroSink<'_, AB> {
    fn grads(&mut self, grads: AB::Gradients) {
        match &self.policy.lora {
            Some(l) => self.acc.add(&l.adapters, grads),
            None => self.acc.add(&self.policy.model, grads),
        }
    }

    fn embedding_rows(&mut self, rows: EmbeddingRows<AB::InnerBackend>) -> Option<EmbeddingRows<AB::InnerBackend>> {
        // Under LoRA the table is frozen (views are W + s·B·A elsewhere): autodiff decides.
        if self.policy.lora.is_some() {
            return Some(rows);
        }
        self.acc.add_embedding_rows(rows, &mut self.projection.borrow_mut());
        None
    }
}
