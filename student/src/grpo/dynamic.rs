//! DAPO dynamic sampling: a group whose completions all got the same reward has zero
//! advantage and teaches nothing, so it is dropped and further prompts are sampled until the
//! batch holds the configured number of informative groups, or a bounded number of extra
//! rounds ran (then the batch trains short). Each round asks for the missing groups divided by
//! the share of informative groups seen so far (at least a quarter), so a mostly-solved
//! problem set is refilled in few rounds.

use super::rollout::Rollout;
use crate::error::Result;

/// What dynamic sampling did for one batch (all 0 when it is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynamicCounts {
    /// Zero-variance groups sampled and dropped.
    pub dropped: usize,
    /// Groups sampled beyond the first `groups_per_step` (resampling rounds).
    pub resampled: usize,
    /// Extra rounds that ran.
    pub rounds: usize,
}

/// True when the group's rewards are not all equal (it has a nonzero advantage somewhere).
pub fn informative(group: &[Rollout]) -> bool {
    group.iter().any(|r| r.reward != group[0].reward)
}

/// Fills up to `target` informative groups: `sample(round, prompts)` returns one group per
/// prompt it sampled (round 0 asks for `target`). At most `max_rounds` extra rounds run. When
/// no group at all was informative, the first `target` sampled groups are returned (their
/// loss is zero, as without dynamic sampling) so that the step still has a batch.
pub fn fill_informative<F>(target: usize, max_rounds: usize, mut sample: F) -> Result<(Vec<Vec<Rollout>>, DynamicCounts)>
where
    F: FnMut(usize, usize) -> Result<Vec<Vec<Rollout>>>,
{
    let mut kept: Vec<Vec<Rollout>> = Vec::with_capacity(target);
    let mut fallback: Vec<Vec<Rollout>> = Vec::new();
    let mut counts = DynamicCounts::default();
    let (mut round, mut ask, mut sampled) = (0usize, target, 0usize);
    loop {
        let groups = sample(round, ask)?;
        sampled += groups.len();
        if round > 0 {
            counts.resampled += groups.len();
        }
        for g in groups {
            if informative(&g) {
                if kept.len() < target {
                    kept.push(g);
                }
            } else {
                counts.dropped += 1;
                if fallback.len() < target {
                    fallback.push(g);
                }
            }
        }
        if kept.len() >= target || round >= max_rounds || sampled == 0 {
            break;
        }
        round += 1;
        let rate = (kept.len() as f64 / sampled as f64).clamp(0.25, 1.0);
        ask = ((target - kept.len()) as f64 / rate).ceil() as usize;
    }
    counts.rounds = round;
    if kept.is_empty() {
        kept = fallback;
    }
    Ok((kept, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(rewards: &[f64], id: usize) -> Vec<Rollout> {
        rewards
            .iter()
            .map(|&reward| Rollout {
                group: serde_json::json!(id),
                prompt_ids: vec![1],
                completion_ids: vec![2],
                reward,
                old_logprobs: None,
                ref_logprobs: None,
                truncated: false,
                accuracy: Some(reward),
                format: None,
            })
            .collect()
    }

    #[test]
    fn zero_variance_groups_are_dropped_and_refilled() {
        // Every third prompt is informative.
        let mut next = 0usize;
        let mut asks = Vec::new();
        let (groups, counts) = fill_informative(4, 10, |round, n| {
            asks.push((round, n));
            let out = (next..next + n).map(|i| if i % 3 == 0 { group(&[1.0, 0.0], i) } else { group(&[1.0, 1.0], i) }).collect();
            next += n;
            Ok(out)
        })
        .unwrap();
        assert_eq!(groups.len(), 4);
        assert!(groups.iter().all(|g| informative(g)));
        assert_eq!(asks[0], (0, 4));
        // round 0: ids 0..4 → 0 and 3 informative (2 of 4); round 1 asks 2 / 0.5 = 4 more
        assert_eq!(asks[1], (1, 4));
        assert_eq!(counts.rounds, asks.len() - 1);
        assert_eq!(counts.resampled, asks[1..].iter().map(|a| a.1).sum::<usize>());
        assert_eq!(counts.dropped, next - next.div_ceil(3));
    }

    #[test]
    fn rounds_are_bounded_and_an_all_solved_batch_still_trains() {
        let mut calls = 0;
        let (groups, counts) = fill_informative(3, 2, |_, n| {
            calls += 1;
            Ok((0..n).map(|i| group(&[0.0, 0.0, 0.0], i)).collect())
        })
        .unwrap();
        assert_eq!(calls, 3, "the first round and 2 extra ones");
        assert_eq!(counts.rounds, 2);
        assert_eq!(groups.len(), 3, "zero-advantage groups rather than an empty batch");
        // a rate floor of 1/4: each extra round asks 3 / 0.25 = 12 prompts
        assert_eq!(counts.resampled, 24);
        assert_eq!(counts.dropped, 27);
    }

    #[test]
    fn no_extra_round_when_the_first_one_is_informative() {
        let (groups, counts) = fill_informative(2, 3, |_, n| Ok((0..n).map(|i| group(&[1.0, 0.0], i)).collect())).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(counts, DynamicCounts::default());
    }
}
