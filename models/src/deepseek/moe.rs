//! DeepSeek MoE: router (sigmoid scores, `e_score_correction_bias` for selection only,
//! group-limited top-k), token dispatch to the chosen experts, shared experts.
//!
//! Selection runs on the host: the scores of `tokens × experts` are tiny next to the expert
//! weights, the dispatch needs host index lists anyway, and host code reproduces torch's
//! `topk` choices exactly (including DeepSeek's quirk of masking dropped groups with 0.0 rather
//! than -inf). The routing *weights* are gathered on the device so the router stays
//! differentiable for training.

use burn::module::{Module, Param};
use burn::tensor::{
    activation::{sigmoid, softmax},
    backend::Backend,
    FloatDType, IndexingUpdateOp, Int, Tensor, TensorData,
};

use super::config::{DeepseekV3Config, ScoringFunc, TopkMethod};
use crate::layers::Mlp;

/// Router hyper-parameters copied from the config (a plain field of the module).
#[derive(Clone, Debug)]
pub struct RouterSpec {
    /// Routed experts.
    pub n_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Expert groups.
    pub n_group: usize,
    /// Groups kept per token.
    pub topk_group: usize,
    /// Normalise chosen weights.
    pub norm_topk_prob: bool,
    /// Multiplier on the weights.
    pub routed_scaling_factor: f64,
    /// Score function.
    pub scoring: ScoringFunc,
    /// Selection method.
    pub method: TopkMethod,
}

impl RouterSpec {
    /// The spec of `cfg`'s MoE layers.
    pub fn new(cfg: &DeepseekV3Config) -> Self {
        Self {
            n_experts: cfg.n_routed_experts,
            top_k: cfg.num_experts_per_tok,
            n_group: cfg.n_group.max(1),
            topk_group: cfg.topk_group.max(1),
            norm_topk_prob: cfg.norm_topk_prob,
            routed_scaling_factor: cfg.routed_scaling_factor,
            scoring: cfg.scoring_func,
            method: cfg.topk_method,
        }
    }

    /// Chosen experts of every token, in torch `topk` order (descending choice score).
    /// `scores` `[tokens, experts]` row-major; `bias` the correction bias (noaux_tc only).
    pub fn select(&self, scores: &[f32], bias: Option<&[f32]>) -> Vec<Vec<usize>> {
        let e = self.n_experts;
        let per_group = e / self.n_group;
        scores
            .chunks_exact(e)
            .map(|s| {
                let choice: Vec<f32> = match (self.method, bias) {
                    (TopkMethod::NoauxTc, Some(b)) => s.iter().zip(b).map(|(x, y)| x + y).collect(),
                    _ => s.to_vec(),
                };
                let masked = match self.method {
                    TopkMethod::Greedy => choice,
                    TopkMethod::NoauxTc | TopkMethod::GroupLimitedGreedy => {
                        let group_scores: Vec<f32> = choice
                            .chunks_exact(per_group)
                            .map(|g| {
                                let top = top_k_indices(g, if self.method == TopkMethod::NoauxTc { 2 } else { 1 });
                                top.iter().map(|&i| g[i]).sum()
                            })
                            .collect();
                        let kept = top_k_indices(&group_scores, self.topk_group);
                        let mut m = vec![0.0f32; e];
                        for g in kept {
                            m[g * per_group..(g + 1) * per_group]
                                .copy_from_slice(&choice[g * per_group..(g + 1) * per_group]);
                        }
                        m
                    }
                };
                top_k_indices(&masked, self.top_k)
            })
            .collect()
    }
}

/// Indices of the `k` largest values, largest first; ties go to the lower index (torch's CPU
/// `topk` order for equal keys).
pub fn top_k_indices(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Router choices of one MoE layer for a batch, as the fixtures store them: per token, the
/// experts sorted ascending and their final weights in the same order.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterChoices {
    /// `[tokens][top_k]` expert ids, ascending.
    pub indices: Vec<Vec<usize>>,
    /// `[tokens][top_k]` routing weights (normalised, scaled).
    pub weights: Vec<Vec<f32>>,
}

/// The router (`mlp.gate`): HF `weight` `[experts, hidden]` and the selection-only bias.
#[derive(Module, Debug)]
pub struct MoeGate<B: Backend> {
    /// Router matrix, HF layout `[n_routed_experts, hidden]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `e_score_correction_bias` (a buffer: not trained), f32.
    pub e_score_correction_bias: Option<Param<Tensor<B, 1>>>,
}

/// A DeepSeek MoE block (`mlp` of layers ≥ `first_k_dense_replace`).
#[derive(Module, Debug)]
pub struct DeepseekMoe<B: Backend> {
    /// The router.
    pub gate: MoeGate<B>,
    /// Routed experts, `mlp.experts.E`.
    pub experts: Vec<Mlp<B>>,
    /// Shared experts fused into one MLP (`mlp.shared_experts`), if any.
    pub shared_experts: Option<Mlp<B>>,
    /// Routing hyper-parameters.
    pub spec: RouterSpec,
}

impl<B: Backend> DeepseekMoe<B> {
    /// Routes `x` `[b, t, hidden]`; returns the output and, if `record`, the router choices.
    pub fn forward(&self, x: Tensor<B, 3>, record: bool) -> (Tensor<B, 3>, Option<RouterChoices>) {
        let [b, t, h] = x.dims();
        let n = b * t;
        let k = self.spec.top_k;
        let dtype = x.dtype();
        let device = x.device();
        let flat = x.reshape([n, h]);
        // Router in f32 (transformers: F.linear(h.float(), W.float())).
        let logits = flat
            .clone()
            .cast(FloatDType::F32)
            .matmul(self.gate.weight.val().cast(FloatDType::F32).transpose());
        let scores = match self.spec.scoring {
            ScoringFunc::Sigmoid => sigmoid(logits),
            ScoringFunc::Softmax => softmax(logits, 1),
        };
        let host: Vec<f32> = scores.clone().into_data().iter::<f32>().collect();
        let bias: Option<Vec<f32>> = self
            .gate
            .e_score_correction_bias
            .as_ref()
            .map(|p| p.val().into_data().iter::<f32>().collect());
        let chosen = self.spec.select(&host, bias.as_deref());

        // Weights on the device: gather the unbiased scores of the chosen experts.
        let flat_idx: Vec<i64> = chosen.iter().flatten().map(|&e| e as i64).collect();
        let idx = Tensor::<B, 2, Int>::from_data(TensorData::new(flat_idx, [n, k]), &device);
        let mut w = scores.gather(1, idx);
        if self.spec.norm_topk_prob {
            w = w.clone() / (w.sum_dim(1) + 1e-20);
        }
        let w = w * self.spec.routed_scaling_factor;

        let choices = record.then(|| {
            let wh: Vec<f32> = w.clone().into_data().iter::<f32>().collect();
            let mut indices = Vec::with_capacity(n);
            let mut weights = Vec::with_capacity(n);
            for (tok, c) in chosen.iter().enumerate() {
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by_key(|&s| c[s]);
                indices.push(order.iter().map(|&s| c[s]).collect());
                weights.push(order.iter().map(|&s| wh[tok * k + s]).collect());
            }
            RouterChoices { indices, weights }
        });

        // Dispatch: per expert, the rows that chose it and the flat (row·k + slot) weight index.
        let mut rows: Vec<Vec<i64>> = vec![Vec::new(); self.spec.n_experts];
        let mut slots: Vec<Vec<i64>> = vec![Vec::new(); self.spec.n_experts];
        for (tok, c) in chosen.iter().enumerate() {
            for (s, &e) in c.iter().enumerate() {
                rows[e].push(tok as i64);
                slots[e].push((tok * k + s) as i64);
            }
        }
        let w_flat = w.reshape([n * k]).cast(dtype);
        let mut out = Tensor::<B, 2>::zeros([n, h], (&device, dtype));
        for (e, expert) in self.experts.iter().enumerate() {
            if rows[e].is_empty() {
                continue;
            }
            let m = rows[e].len();
            let r = Tensor::<B, 1, Int>::from_data(TensorData::new(std::mem::take(&mut rows[e]), [m]), &device);
            let s = Tensor::<B, 1, Int>::from_data(TensorData::new(std::mem::take(&mut slots[e]), [m]), &device);
            let y = expert.forward(flat.clone().select(0, r.clone()));
            let y = y * w_flat.clone().select(0, s).unsqueeze_dim(1);
            out = out.select_assign(0, r, y, IndexingUpdateOp::Add);
        }
        if let Some(shared) = &self.shared_experts {
            out = out + shared.forward(flat);
        }
        (out.reshape([b, t, h]), choices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: TopkMethod, n_group: usize, topk_group: usize, top_k: usize) -> RouterSpec {
        RouterSpec {
            n_experts: 8,
            top_k,
            n_group,
            topk_group,
            norm_topk_prob: true,
            routed_scaling_factor: 1.0,
            scoring: ScoringFunc::Sigmoid,
            method,
        }
    }

    #[test]
    fn group_limit_excludes_experts_outside_the_kept_groups() {
        // Group 0 = experts 0..4 sums its top-2 to 0.9+0.1; group 1 = 4..8 to 0.6+0.6.
        let s = [0.9, 0.1, 0.05, 0.05, 0.6, 0.6, 0.5, 0.0];
        let got = spec(TopkMethod::NoauxTc, 2, 1, 2).select(&s, None);
        assert_eq!(got, vec![vec![4, 5]]);
        // Without group limiting the best expert (0) wins.
        let got = spec(TopkMethod::Greedy, 2, 1, 2).select(&s, None);
        assert_eq!(got, vec![vec![0, 4]]);
    }

    #[test]
    fn bias_changes_selection_only() {
        let s = [0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1];
        let bias = [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0];
        let got = spec(TopkMethod::NoauxTc, 1, 1, 2).select(&s, Some(&bias));
        assert_eq!(got, vec![vec![3, 0]]);
    }

    #[test]
    fn dropped_groups_are_masked_with_zero_like_deepseek() {
        // Kept group 1 has negative choice scores (bias), so masked experts (0.0) of group 0 win
        // the top-k, exactly as the official `masked_fill(…, 0.0)` does.
        let s = [0.01, 0.01, 0.01, 0.01, 0.2, 0.2, 0.2, 0.2];
        let bias = [-0.5, -0.5, -0.5, -0.5, -0.3, -0.3, -0.25, -0.3];
        let got = spec(TopkMethod::NoauxTc, 2, 1, 2).select(&s, Some(&bias));
        assert_eq!(got, vec![vec![0, 1]]);
    }
}
