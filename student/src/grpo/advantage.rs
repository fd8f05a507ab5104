//! Group-relative advantages: `(r − mean_group) / (std + 1e-4)` with Bessel's std of the group
//! (`scale_rewards = "group"`), of the whole batch (`"batch"`), or no division (`"none"`,
//! Dr. GRPO), as TRL computes them. A group whose rewards are all equal gives every member 0
//! advantage (it teaches nothing); the share of such groups is reported.

use super::config::ScaleRewards;

/// Added to the std before dividing (TRL's constant).
pub const STD_EPS: f64 = 1e-4;

/// Advantages of `rewards`, where `groups[i]` is the group index of completion `i`, and the
/// share of groups with zero reward variance.
pub fn advantages(rewards: &[f64], groups: &[usize], scale: ScaleRewards) -> (Vec<f64>, f64) {
    let n_groups = groups.iter().copied().max().map_or(0, |g| g + 1);
    let mut members: Vec<Vec<f64>> = vec![Vec::new(); n_groups];
    for (&r, &g) in rewards.iter().zip(groups) {
        members[g].push(r);
    }
    let stats: Vec<(f64, f64)> = members.iter().map(|m| mean_std(m)).collect();
    let zero = stats.iter().zip(&members).filter(|((_, s), m)| !m.is_empty() && *s < 1e-8).count();
    let batch_std = mean_std(rewards).1;
    let adv = rewards
        .iter()
        .zip(groups)
        .map(|(&r, &g)| {
            let (mean, std) = stats[g];
            let centred = r - mean;
            match scale {
                ScaleRewards::Group => centred / (std + STD_EPS),
                ScaleRewards::Batch => centred / (batch_std + STD_EPS),
                ScaleRewards::None => centred,
            }
        })
        .collect();
    (adv, zero as f64 / n_groups.max(1) as f64)
}

/// Mean and Bessel-corrected standard deviation (0 for fewer than two values).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_advantages_and_zero_variance() {
        let rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let groups = [0, 0, 0, 0, 1, 1, 1, 1];
        let (a, zero) = advantages(&rewards, &groups, ScaleRewards::Group);
        // std of [1,0,0,1] with Bessel = sqrt(1/3)
        let want = 0.5 / ((1.0f64 / 3.0).sqrt() + STD_EPS);
        assert!((a[0] - want).abs() < 1e-12 && (a[1] + want).abs() < 1e-12);
        assert!(a[4..].iter().all(|&x| x == 0.0), "a zero-variance group gives 0: {a:?}");
        assert_eq!(zero, 0.5);
        let (a, _) = advantages(&rewards, &groups, ScaleRewards::None);
        assert_eq!(a[0], 0.5);
        let (a, _) = advantages(&rewards, &groups, ScaleRewards::Batch);
        let bstd = mean_std(&rewards).1;
        assert!((a[0] - 0.5 / (bstd + STD_EPS)).abs() < 1e-12);
    }
}
