//! One `metrics.jsonl` line per GRPO optimizer step.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::advantage::mean_std;
use super::rollout::RolloutBatch;
use crate::error::{Result, StudentError};
use crate::objective::LossSums;

/// What a GRPO step reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrpoStepMetrics {
    /// Optimizer step (1-based).
    pub step: u64,
    /// The step's loss (as aggregated by `loss_type`).
    pub loss: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Mean reward of the batch.
    pub reward_mean: f64,
    /// Std of the rewards (Bessel).
    pub reward_std: f64,
    /// Mean accuracy reward (native sampling).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    /// Mean format reward (native sampling).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format_reward: Option<f64>,
    /// Share of groups whose rewards are all equal (zero advantage).
    pub zero_std_share: f64,
    /// Share of loss tokens with ratio < 1 − ε_low and A < 0.
    pub clip_low: f64,
    /// Share of loss tokens with ratio > 1 + ε_high and A > 0.
    pub clip_high: f64,
    /// `clip_low + clip_high`.
    pub clip_region: f64,
    /// Mean k3 KL to the reference over loss tokens (0 without one).
    pub kl: f64,
    /// Mean entropy of the policy at the sampling temperature over loss tokens.
    pub entropy: f64,
    /// Mean completion length in tokens.
    pub completion_length_mean: f64,
    /// Longest completion.
    pub completion_length_max: u64,
    /// Share of completions cut at `max_completion_length`.
    pub truncated_share: f64,
    /// Completion tokens that carried a loss.
    pub loss_tokens: u64,
    /// Which reuse of the rollout batch this step was (0-based, < num_iterations).
    pub iteration: u64,
    /// Seconds sampling and rewarding (0 when the batch was reused or read from a file).
    pub generate_s: f64,
    /// Seconds computing old/reference logprobs.
    pub score_s: f64,
    /// Seconds in forward, backward and the optimizer.
    pub train_s: f64,
    /// Held-out pass@1 after this step (`train.eval_every`; absent on other steps).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_pass1: Option<f64>,
    /// Seconds of the held-out evaluation (0 when none ran).
    #[serde(default)]
    pub eval_s: f64,
    /// Dynamic sampling: zero-variance groups sampled and dropped for this step's batch.
    #[serde(default)]
    pub dropped_groups: u64,
    /// Dynamic sampling: groups sampled in extra rounds to refill this step's batch.
    #[serde(default)]
    pub resampled_groups: u64,
    /// Groups the step trained on.
    #[serde(default)]
    pub groups: u64,
}

/// Statistics of a rollout batch, before training.
pub struct BatchStats {
    /// Rewards mean, std.
    pub reward: (f64, f64),
    /// Mean accuracy / format reward when every rollout has one.
    pub accuracy: Option<f64>,
    /// See [`GrpoStepMetrics::format_reward`].
    pub format_reward: Option<f64>,
    /// Completion length mean, max; truncated share.
    pub lengths: (f64, u64, f64),
}

impl BatchStats {
    /// Computes the statistics of `batch`.
    pub fn of(batch: &RolloutBatch) -> Self {
        let rs = &batch.rollouts;
        let n = rs.len().max(1) as f64;
        let mean_of = |f: &dyn Fn(&super::rollout::Rollout) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = rs.iter().map(f).collect();
            v.map(|v| v.iter().sum::<f64>() / n)
        };
        let lens: Vec<usize> = rs.iter().map(|r| r.completion_ids.len()).collect();
        Self {
            reward: mean_std(&batch.rewards()),
            accuracy: mean_of(&|r: &super::rollout::Rollout| r.accuracy),
            format_reward: mean_of(&|r: &super::rollout::Rollout| r.format),
            lengths: (
                lens.iter().sum::<usize>() as f64 / n,
                lens.iter().copied().max().unwrap_or(0) as u64,
                rs.iter().filter(|r| r.truncated).count() as f64 / n,
            ),
        }
    }
}

/// Per-token means of the objective's statistics: (kl, entropy, clip_low, clip_high, tokens).
pub fn token_means(sums: &LossSums) -> (f64, f64, f64, f64, u64) {
    let tokens = sums.part("tokens");
    let per = |k: &str| if tokens > 0.0 { sums.part(k) / tokens } else { 0.0 };
    (per("kl"), per("entropy"), per("clip_low"), per("clip_high"), tokens as u64)
}

/// Reads the GRPO step lines of a run's `metrics.jsonl`.
pub fn read_grpo_metrics(output_dir: &Path) -> Result<Vec<GrpoStepMetrics>> {
    let path = output_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| StudentError::io(&path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| StudentError::Json {
                path: path.clone(),
                msg: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
