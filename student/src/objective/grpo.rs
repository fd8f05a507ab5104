//! GRPO's clipped-ratio policy loss with the k3 KL penalty, per completion token, from the
//! policy's logprobs at the sampling temperature (TRL's conventions):
//!
//! `ratio = exp(logp − old)`,
//! `pt = −min(ratio·A, clamp(ratio, 1−ε_low, 1+ε_high)·A) + β·(exp(ref − logp) − (ref − logp) − 1)`,
//! aggregated with per-token weights that the rollout stage computed for the whole step (so the
//! loss does not depend on how the step is split into micro-batches).
//!
//! Every term depends on the policy only through `logp` of the sampled token, so the loss's
//! gradient is `Σ_t w_t·∂pt/∂logp_t · ∂logp_t/∂logits` with `∂logp/∂logits = (onehot − p)/T`.
//! The fused path computes that one logits chunk at a time without autodiff (as the fused
//! cross-entropy does) and hands autodiff the surrogate `Σ hidden ⊙ stopgrad(dL/dhidden)`
//! plus the projection's gradient; the reference path runs log-softmax under autodiff and
//! backpropagates `Σ_t stopgrad(w_t·∂pt/∂logp_t)·logp_t`, which has the same gradient.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, IndexingUpdateOp, Int, Tensor, TensorData};
use models::lm::ForwardInput;
use models::{CausalLm, Model};

use super::{LossSums, Objective, ObjectiveLoss};
use crate::batch::MicroBatch;
use crate::fused_ce::{chunk_targets, projection_weight, LmProjection};
use crate::loss::{loss_chunks, IGNORE_INDEX};

/// The clipping and KL knobs of the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoLossSpec {
    /// Softmax temperature of the logprobs (the sampling temperature).
    pub temperature: f64,
    /// Lower clip ε.
    pub epsilon_low: f64,
    /// Upper clip ε.
    pub epsilon_high: f64,
    /// KL coefficient.
    pub beta: f64,
}

/// One micro-batch of completions with everything the loss needs per target position
/// (`[B·T]`, aligned with `mb.targets`; zero where there is no loss).
#[derive(Debug, Clone)]
pub struct GrpoBatch {
    /// prompt + completion ids, labels on the completion.
    pub mb: MicroBatch,
    /// Logprob of the sampled token under the sampling policy; `None` when the batch is
    /// on-policy (`num_iterations` = 1 and no recorded logprobs): the current logprob, detached,
    /// stands in (TRL's `old_per_token_logps = per_token_logps.detach()`), so the ratio is 1
    /// and no extra forward pass is spent computing it.
    pub old_logprobs: Option<Vec<f64>>,
    /// Logprob under the reference policy (β > 0).
    pub ref_logprobs: Option<Vec<f64>>,
    /// The sequence's advantage, repeated on its tokens.
    pub advantages: Vec<f64>,
    /// Aggregation weight of the token in the step's loss (0 = masked).
    pub weights: Vec<f64>,
}

/// Value and derivative of one token's loss, and its statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenTerms {
    /// `pt` (unweighted).
    pub loss: f64,
    /// `∂pt/∂logp`.
    pub dlogp: f64,
    /// k3 KL estimate (0 without a reference).
    pub kl: f64,
    /// ratio < 1 − ε_low with A < 0 (the clipped term is active: no policy gradient).
    pub low_clipped: bool,
    /// ratio > 1 + ε_high with A > 0.
    pub high_clipped: bool,
}

/// The per-token loss terms (see the module doc). `torch.min`'s gradient at a tie is split
/// evenly, which inside the clip range adds up to the unclipped gradient, so the policy term's
/// derivative is `−A·ratio` unless the clipped side is strictly active.
pub fn token_terms(logp: f64, old: f64, reference: Option<f64>, adv: f64, spec: &GrpoLossSpec) -> TokenTerms {
    let ratio = (logp - old).exp();
    let clipped = ratio.clamp(1.0 - spec.epsilon_low, 1.0 + spec.epsilon_high);
    let low_clipped = ratio < 1.0 - spec.epsilon_low && adv < 0.0;
    let high_clipped = ratio > 1.0 + spec.epsilon_high && adv > 0.0;
    let mut loss = -(ratio * adv).min(clipped * adv);
    let mut dlogp = if low_clipped || high_clipped { 0.0 } else { -adv * ratio };
    let mut kl = 0.0;
    if let (Some(r), true) = (reference, spec.beta > 0.0) {
        let d = r - logp;
        kl = d.exp() - d - 1.0;
        loss += spec.beta * kl;
        dlogp += spec.beta * (1.0 - d.exp());
    } else if let Some(r) = reference {
        let d = r - logp;
        kl = d.exp() - d - 1.0;
    }
    TokenTerms {
        loss,
        dlogp,
        kl,
        low_clipped,
        high_clipped,
    }
}

/// The GRPO objective.
#[derive(Debug, Clone)]
pub struct GrpoObjective {
    spec: GrpoLossSpec,
    loss_chunk: usize,
    fused: Option<LmProjection>,
}

impl GrpoObjective {
    /// `fused`: the probed output projection (`None` = autodiff reference path).
    pub fn new(spec: GrpoLossSpec, loss_chunk: usize, fused: Option<LmProjection>) -> Self {
        Self { spec, loss_chunk, fused }
    }

    /// Host side of one chunk: per-token terms from the chunk's logprobs and entropies
    /// (`[B·n]`, row-major), accumulated into `sums`; returns `w·∂pt/∂logp` per position.
    fn chunk_coefs(&self, batch: &GrpoBatch, a: usize, e: usize, logp: &[f32], entropy: &[f32], sums: &mut LossSums) -> Vec<f32> {
        let (bsz, seq, n) = (batch.mb.targets.batch, batch.mb.targets.seq, e - a);
        let mut coef = vec![0.0f32; bsz * n];
        for b in 0..bsz {
            for j in 0..n {
                let flat = b * seq + a + j;
                if batch.mb.targets.targets[flat] == IGNORE_INDEX || batch.weights[flat] == 0.0 {
                    continue;
                }
                let lp = logp[b * n + j] as f64;
                let reference = batch.ref_logprobs.as_ref().map(|r| r[flat]);
                let old = batch.old_logprobs.as_ref().map_or(lp, |o| o[flat]);
                let t = token_terms(lp, old, reference, batch.advantages[flat], &self.spec);
                let w = batch.weights[flat];
                coef[b * n + j] = (w * t.dlogp) as f32;
                sums.total += w * t.loss;
                sums.add_part("tokens", 1.0);
                sums.add_part("kl", t.kl);
                sums.add_part("entropy", entropy[b * n + j] as f64);
                sums.add_part("clip_low", t.low_clipped as u8 as f64);
                sums.add_part("clip_high", t.high_clipped as u8 as f64);
            }
        }
        coef
    }

    fn fused_loss<AB: AutodiffBackend>(&self, proj: &LmProjection, view: &Model<AB>, hidden: Tensor<AB, 3>, batch: &GrpoBatch) -> Option<ObjectiveLoss<AB>> {
        let (found, w) = projection_weight(view)?;
        debug_assert_eq!(found.id, proj.id);
        let (w, h_in) = (w.inner(), hidden.clone().inner());
        let [bsz, t, h] = h_in.dims();
        let v = w.dims()[0];
        let dev = h_in.device();
        let inv_t = 1.0 / self.spec.temperature;
        let mut sums = LossSums::default();
        let mut grad_hidden = Tensor::<AB::InnerBackend, 3>::zeros([bsz, t, h], (&dev, h_in.dtype()));
        let mut grad_weight: Option<Tensor<AB::InnerBackend, 2>> = None;
        for (a, e) in loss_chunks(&batch.mb.targets, self.loss_chunk) {
            let n = e - a;
            let hc = h_in.clone().narrow(1, a, n).reshape([bsz * n, h]);
            let z = hc.clone().matmul(w.clone().transpose()).cast(DType::F32).mul_scalar(inv_t);
            let (ids, _) = chunk_targets::<AB::InnerBackend>(&batch.mb.targets, a, e, v, &dev);
            let (logp, probs, entropy) = chunk_logprobs(z, ids.clone());
            let coef = self.chunk_coefs(batch, a, e, &to_vec(logp), &to_vec(entropy), &mut sums);
            let coef = Tensor::<AB::InnerBackend, 2>::from_data(TensorData::new(coef, [bsz * n, 1]), (&dev, DType::F32));
            // dL/dz = coef·(onehot − p); dL/dlogits = dL/dz / T
            let dz = (probs * coef.clone().neg()).scatter(1, ids, coef, IndexingUpdateOp::Add);
            let dl = dz.mul_scalar(inv_t).cast(w.dtype());
            let gh = dl.clone().matmul(w.clone()).reshape([bsz, n, h]).cast(h_in.dtype());
            grad_hidden = grad_hidden.slice_assign([0..bsz, a..e, 0..h], gh);
            let gw = dl.transpose().matmul(hc).cast(DType::F32);
            grad_weight = Some(match grad_weight {
                Some(g) => g + gw,
                None => gw,
            });
        }
        let surrogate = (hidden * Tensor::<AB, 3>::from_inner(grad_hidden)).sum();
        Some(ObjectiveLoss {
            loss: surrogate,
            sums,
            projection_grad: grad_weight.map(|g| (proj.id, g)),
        })
    }

    fn autodiff_loss<AB: AutodiffBackend>(&self, view: &Model<AB>, hidden: Tensor<AB, 3>, batch: &GrpoBatch) -> Option<ObjectiveLoss<AB>> {
        let mut sums = LossSums::default();
        let mut total: Option<Tensor<AB, 1>> = None;
        let bsz = batch.mb.targets.batch;
        for (a, e) in loss_chunks(&batch.mb.targets, self.loss_chunk) {
            let n = e - a;
            let logits = view.logits(hidden.clone().narrow(1, a, n));
            let v = logits.dims()[2];
            let lp = log_softmax(logits.cast(DType::F32).mul_scalar(1.0 / self.spec.temperature), 2);
            let (ids, _) = chunk_targets::<AB>(&batch.mb.targets, a, e, v, &hidden.device());
            let picked = lp.clone().gather(2, ids.reshape([bsz, n, 1])).reshape([bsz, n]);
            let lp_in = lp.inner();
            let entropy = (lp_in.clone().exp() * lp_in).sum_dim(2).neg().reshape([bsz * n]);
            let logp = to_vec(picked.clone().inner().reshape([bsz * n]));
            let coef = self.chunk_coefs(batch, a, e, &logp, &to_vec(entropy), &mut sums);
            let coef = Tensor::<AB, 2>::from_data(TensorData::new(coef, [bsz, n]), (&hidden.device(), DType::F32));
            let part = (picked * coef).sum();
            total = Some(match total {
                Some(t) => t + part,
                None => part,
            });
        }
        Some(ObjectiveLoss {
            loss: total?,
            sums,
            projection_grad: None,
        })
    }
}

/// Logprob of `ids` under `softmax(z)` (`[R]`), the probabilities `[R, V]` and the entropy `[R]`
/// of rows of scaled logits `z [R, V]` (f32).
pub fn chunk_logprobs<B: Backend>(z: Tensor<B, 2>, ids: Tensor<B, 2, Int>) -> (Tensor<B, 1>, Tensor<B, 2>, Tensor<B, 1>) {
    let r = z.dims()[0];
    let m = z.clone().max_dim(1);
    let shifted = z - m;
    let exp = shifted.clone().exp();
    let sum = exp.clone().sum_dim(1);
    let lse = sum.clone().log();
    let probs = exp / sum;
    let logp = (shifted.clone().gather(1, ids) - lse.clone()).reshape([r]);
    let entropy = (lse - (probs.clone() * shifted).sum_dim(1)).reshape([r]);
    (logp, probs, entropy)
}

fn to_vec<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.cast(DType::F32).into_data().iter::<f32>().collect()
}

impl<AB: AutodiffBackend> Objective<AB> for GrpoObjective {
    type Batch = GrpoBatch;

    fn is_empty(&self, batch: &GrpoBatch) -> bool {
        batch.mb.targets.num_loss_tokens() == 0
    }

    fn input(&self, batch: &GrpoBatch, device: &AB::Device) -> ForwardInput<AB> {
        batch.mb.to_input::<AB>(device)
    }

    fn loss_from_hidden(&self, view: &Model<AB>, hidden: Tensor<AB, 3>, batch: &GrpoBatch, _step_tokens: usize) -> Option<ObjectiveLoss<AB>> {
        if batch.mb.targets.num_loss_tokens() == 0 {
            return None;
        }
        match &self.fused {
            Some(proj) => self.fused_loss(proj, view, hidden, batch),
            None => self.autodiff_loss(view, hidden, batch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: GrpoLossSpec = GrpoLossSpec {
        temperature: 1.0,
        epsilon_low: 0.2,
        epsilon_high: 0.28,
        beta: 0.0,
    };

    #[test]
    fn clipping_on_both_sides() {
        let old = -2.0f64;
        // ratio 0.5 < 0.8: clipped for A < 0 (no gradient, loss = −0.8·A), not for A > 0
        let lp = old + 0.5f64.ln();
        let t = token_terms(lp, old, None, -1.0, &SPEC);
        assert!(t.low_clipped && !t.high_clipped && t.dlogp == 0.0);
        assert!((t.loss - 0.8).abs() < 1e-12, "{t:?}");
        let t = token_terms(lp, old, None, 1.0, &SPEC);
        assert!(!t.low_clipped && (t.dlogp + 0.5).abs() < 1e-12 && (t.loss + 0.5).abs() < 1e-12);
        // ratio 1.5 > 1.28: clipped for A > 0 (loss = −1.28·A), not for A < 0
        let lp = old + 1.5f64.ln();
        let t = token_terms(lp, old, None, 2.0, &SPEC);
        assert!(t.high_clipped && t.dlogp == 0.0 && (t.loss + 2.56).abs() < 1e-12, "{t:?}");
        let t = token_terms(lp, old, None, -2.0, &SPEC);
        assert!(!t.high_clipped && (t.dlogp - 3.0).abs() < 1e-12 && (t.loss - 3.0).abs() < 1e-12);
        // inside the range: plain ratio·A
        let t = token_terms(old + 1.1f64.ln(), old, None, 1.0, &SPEC);
        assert!((t.dlogp + 1.1).abs() < 1e-12 && !t.low_clipped && !t.high_clipped);
    }

    #[test]
    fn k3_kl_value_and_gradient() {
        let spec = GrpoLossSpec { beta: 0.5, ..SPEC };
        let (lp, r) = (-1.0f64, -1.3f64);
        let t = token_terms(lp, lp, Some(r), 0.0, &spec);
        let d = r - lp;
        assert!((t.kl - (d.exp() - d - 1.0)).abs() < 1e-12);
        let h = 1e-6;
        let num = (token_terms(lp + h, lp, Some(r), 0.0, &spec).loss - token_terms(lp - h, lp, Some(r), 0.0, &spec).loss) / (2.0 * h);
        // the old logprob is fixed, so only the KL term moves with logp when A = 0
        assert!((num - t.dlogp).abs() < 1e-6, "{num} vs {}", t.dlogp);
    }
}
