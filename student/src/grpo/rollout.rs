//! Rollouts: one completion of one prompt with its reward and the logprobs the sampler
//! recorded. Recorded rollouts are a JSON Lines file (one completion per line), which is also
//! how an external engine's samples are trained on; native sampling produces the same records.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};

/// One completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rollout {
    /// Group key: completions of the same prompt share it (any JSON scalar).
    pub group: serde_json::Value,
    /// Prompt token ids (non-empty).
    pub prompt_ids: Vec<u32>,
    /// Completion token ids (with the stop token when one ended it).
    pub completion_ids: Vec<u32>,
    /// Scalar reward.
    pub reward: f64,
    /// Per-token logprobs of the completion under the sampling policy at the sampling
    /// temperature; absent = on-policy (the current policy's, recomputed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_logprobs: Option<Vec<f64>>,
    /// Per-token logprobs under the reference policy (β > 0); absent = computed from the
    /// reference model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_logprobs: Option<Vec<f64>>,
    /// True when the completion hit `max_completion_length` without a stop token.
    #[serde(default)]
    pub truncated: bool,
    /// Accuracy part of the reward (native sampling; for metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Format part of the reward (native sampling; for metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<f64>,
}

/// The completions of one optimizer step (or of `num_iterations` steps), grouped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutBatch {
    /// Completions, group by group.
    pub rollouts: Vec<Rollout>,
    /// Group index (0-based, in order of first appearance) of each completion.
    pub groups: Vec<usize>,
}

impl RolloutBatch {
    /// Groups `rollouts` by their `group` key, keeping the order of first appearance.
    pub fn from_rollouts(rollouts: Vec<Rollout>) -> Self {
        let mut index: HashMap<String, usize> = HashMap::new();
        let groups = rollouts
            .iter()
            .map(|r| {
                let n = index.len();
                *index.entry(r.group.to_string()).or_insert(n)
            })
            .collect();
        Self { rollouts, groups }
    }

    /// Number of groups.
    pub fn num_groups(&self) -> usize {
        self.groups.iter().copied().max().map_or(0, |g| g + 1)
    }

    /// Rewards in order.
    pub fn rewards(&self) -> Vec<f64> {
        self.rollouts.iter().map(|r| r.reward).collect()
    }

    /// Writes the batch as rollouts JSONL (checkpoints keep the batch being reused).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut s = String::new();
        for r in &self.rollouts {
            s.push_str(&serde_json::to_string(r).map_err(|e| StudentError::Json {
                path: path.into(),
                msg: e.to_string(),
            })?);
            s.push('\n');
        }
        crate::fsutil::write_atomic(path, s.as_bytes())
    }
}

/// Reads and checks a rollouts file: every line a [`Rollout`] with a non-empty prompt and
/// logprob lists as long as the completion. Errors name the file and line.
pub fn read_rollouts(path: &Path) -> Result<Vec<Rollout>> {
    let text = std::fs::read_to_string(path).map_err(|e| StudentError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| StudentError::Data(format!("{}:{}: {msg}", path.display(), i + 1));
        let r: Rollout = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if r.prompt_ids.is_empty() {
            return Err(bad("prompt_ids is empty".into()));
        }
        if !r.reward.is_finite() {
            return Err(bad(format!("reward {} is not finite", r.reward)));
        }
        for (key, lp) in [("old_logprobs", &r.old_logprobs), ("ref_logprobs", &r.ref_logprobs)] {
            if let Some(lp) = lp {
                if lp.len() != r.completion_ids.len() {
                    return Err(bad(format!("{key} has {} values for {} completion tokens", lp.len(), r.completion_ids.len())));
                }
            }
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(StudentError::Data(format!("{}: no rollouts", path.display())));
    }
    Ok(out)
}

/// Splits a file's rollouts into batches of `groups_per_batch` groups (0 = one batch).
pub fn batches_of(rollouts: Vec<Rollout>, groups_per_batch: usize) -> Vec<RolloutBatch> {
    let all = RolloutBatch::from_rollouts(rollouts);
    if groups_per_batch == 0 {
        return vec![all];
    }
    let n = all.num_groups().div_ceil(groups_per_batch);
    let mut parts: Vec<Vec<Rollout>> = vec![Vec::new(); n];
    for (r, g) in all.rollouts.into_iter().zip(all.groups) {
        parts[g / groups_per_batch].push(r);
    }
    parts.into_iter().map(RolloutBatch::from_rollouts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(group: i64, n: usize) -> Rollout {
        Rollout {
            group: group.into(),
            prompt_ids: vec![1, 2],
            completion_ids: vec![3; n],
            reward: group as f64,
            old_logprobs: None,
            ref_logprobs: None,
            truncated: false,
            accuracy: None,
            format: None,
        }
    }

    #[test]
    fn grouping_and_batches() {
        let b = RolloutBatch::from_rollouts(vec![r(7, 1), r(3, 1), r(7, 2)]);
        assert_eq!(b.groups, vec![0, 1, 0]);
        let parts = batches_of(vec![r(0, 1), r(0, 1), r(1, 1), r(1, 1), r(2, 1)], 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].rollouts.len(), 1);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.jsonl");
        std::fs::write(&p, "{\"group\":0,\"prompt_ids\":[1],\"completion_ids\":[2,3],\"reward\":1,\"old_logprobs\":[-1]}\n").unwrap();
        let e = read_rollouts(&p).unwrap_err().to_string();
        assert!(e.contains("r.jsonl:1") && e.contains("old_logprobs"), "{e}");
    }
}
