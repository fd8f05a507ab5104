//! Accuracy statistics over k samples per problem: pass@1 with its standard error and a
//! bootstrap confidence interval, the unbiased pass@k estimator, majority-vote cons@k, and
//! response-length statistics.
//!
//! Everything here is pure arithmetic on per-problem sample outcomes so it can be tested on
//! hand-computed examples and recomputed from stored records without a model.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Unbiased pass@k for one problem with `n` samples of which `c` are correct (Chen et al. 2021,
/// "Evaluating Large Language Models Trained on Code"): `1 - C(n-c, k) / C(n, k)`.
///
/// Computed as `1 - Π_{i=n-c+1}^{n} (1 - k/i)`, which never forms a binomial coefficient and so
/// stays exact-ish for n in the thousands (the naive ratio overflows f64 around n = 1030).
/// Returns `None` when `k > n` (the estimator is undefined) or `k == 0`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n {
        return None;
    }
    let c = c.min(n);
    if n - c < k {
        return Some(1.0);
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    Some(1.0 - prod)
}

/// Mean of a slice; 0 for an empty slice (an empty benchmark scores nothing, not NaN).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Standard error of the mean with the sample (n-1) variance; 0 with fewer than two values.
///
/// Applied to per-problem pass@1 values this is the "± SE" commonly reported next to averaged
/// pass@1 (the spread across problems, which dominates sampling noise for small benchmarks).
pub fn standard_error(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// Percentile bootstrap confidence interval of the mean: resample the values (problems) with
/// replacement `resamples` times using a ChaCha8 stream seeded by `seed`, and return the
/// `(1-level)/2` and `(1+level)/2` quantiles of the resampled means.
///
/// Deterministic for a given (values, resamples, seed, level), so reports are reproducible.
/// An empty input gives `(0, 0)`.
pub fn bootstrap_ci(xs: &[f64], resamples: usize, seed: u64, level: f64) -> (f64, f64) {
    let n = xs.len();
    if n == 0 || resamples == 0 {
        let m = mean(xs);
        return (m, m);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..n {
                s += xs[rng.random_range(0..n)];
            }
            s / n as f64
        })
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let alpha = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    (quantile_sorted(&means, alpha), quantile_sorted(&means, 1.0 - alpha))
}

/// Linear-interpolated quantile (numpy's default "linear" method) of an ascending slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Median (mean of the two middle values for even lengths); 0 for an empty input.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    quantile_sorted(&v, 0.5)
}

/// Majority vote over answer equivalence classes.
///
/// `classes[i]` is the class id of sample i's extracted answer (`None`: no answer, which does
/// not vote) as given by `grader::cluster_answers`; `correct[i]` is whether sample i was graded
/// correct. The winning class is the one with the most votes; ties go to the class whose first
/// member appears earliest (the behaviour of Python's `Counter.most_common` used by common
/// maj@k implementations), which keeps the result independent of class numbering. The vote is
/// correct when the winning class's first member was graded correct; with no votes at all it
/// is incorrect.
pub fn majority_vote(classes: &[Option<usize>], correct: &[bool]) -> bool {
    // (class id, votes, first index)
    let mut tally: Vec<(usize, usize, usize)> = Vec::new();
    for (i, c) in classes.iter().enumerate() {
        if let Some(c) = c {
            match tally.iter_mut().find(|t| t.0 == *c) {
                Some(t) => t.1 += 1,
                None => tally.push((*c, 1, i)),
            }
        }
    }
    let mut best: Option<(usize, usize, usize)> = None;
    for t in tally {
        best = match best {
            Some(b) if b.1 > t.1 || (b.1 == t.1 && b.2 < t.2) => Some(b),
            _ => Some(t),
        };
    }
    best.map(|(_, _, first)| correct.get(first).copied().unwrap_or(false)).unwrap_or(false)
}

/// The k values reported for pass@k: powers of two up to `n`, plus `n` itself.
pub fn pass_k_grid(n: usize) -> Vec<usize> {
    let mut ks = Vec::new();
    let mut k = 1;
    while k <= n {
        ks.push(k);
        k *= 2;
    }
    if n > 0 && ks.last() != Some(&n) {
        ks.push(n);
    }
    ks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binom(n: u64, k: u64) -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn pass_at_k_hand_computed() {
        // n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
        assert!((pass_at_k(4, 1, 2).unwrap() - 0.5).abs() < 1e-12);
        // n=5, c=2, k=1: c/n
        assert!((pass_at_k(5, 2, 1).unwrap() - 0.4).abs() < 1e-12);
        // n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252
        assert!((pass_at_k(10, 3, 5).unwrap() - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
        // Too few wrong samples to fill k: certain success.
        assert_eq!(pass_at_k(4, 3, 2), Some(1.0));
        assert_eq!(pass_at_k(4, 0, 4), Some(0.0));
        assert_eq!(pass_at_k(3, 1, 4), None);
        assert_eq!(pass_at_k(3, 1, 0), None);
    }

    #[test]
    fn pass_at_k_matches_binomials_and_is_stable_for_large_n() {
        for (n, c, k) in [(20u64, 7u64, 3u64), (64, 10, 8), (64, 1, 64), (30, 29, 2)] {
            let want = 1.0 - binom(n - c, k) / binom(n, k);
            let got = pass_at_k(n as usize, c as usize, k as usize).unwrap();
            assert!((got - want).abs() < 1e-9, "n={n} c={c} k={k}: {got} vs {want}");
        }
        // C(2000, 1000) overflows f64; the product form stays finite and in [0, 1].
        let p = pass_at_k(2000, 3, 1000).unwrap();
        assert!(p.is_finite() && (0.0..=1.0).contains(&p));
        assert!((p - (1.0 - 0.5f64.powi(3))).abs() < 1e-3);
    }

    #[test]
    fn mean_se_median() {
        let xs = [1.0, 0.0, 0.5, 0.5];
        assert_eq!(mean(&xs), 0.5);
        // sample var = (0.25+0.25+0+0)/3 = 1/6; se = sqrt(1/6/4)
        assert!((standard_error(&xs) - (1.0f64 / 24.0).sqrt()).abs() < 1e-12);
        assert_eq!(standard_error(&[0.3]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(mean(&[]), 0.0);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let xs: Vec<f64> = (0..30).map(|i| if i % 3 == 0 { 1.0 } else { 0.25 }).collect();
        let a = bootstrap_ci(&xs, 1000, 7, 0.95);
        let b = bootstrap_ci(&xs, 1000, 7, 0.95);
        assert_eq!(a, b);
        let c = bootstrap_ci(&xs, 1000, 8, 0.95);
        assert_ne!(a, c, "a different seed should move the interval slightly");
        let m = mean(&xs);
        assert!(a.0 < m && m < a.1, "{a:?} around {m}");
        // Constant data has a degenerate interval.
        assert_eq!(bootstrap_ci(&[0.5; 10], 200, 1, 0.95), (0.5, 0.5));
    }

    #[test]
    fn majority_vote_ties_go_to_the_earliest_class() {
        // classes: 0 (wrong), 1 (right), 1, 0 → tie 2-2, class 0 appears first → wrong.
        let classes = [Some(0), Some(1), Some(1), Some(0)];
        let correct = [false, true, true, false];
        assert!(!majority_vote(&classes, &correct));
        // Same samples, right answer first → right.
        assert!(majority_vote(&[Some(1), Some(0), Some(0), Some(1)], &[true, false, false, true]));
        // Clear majority beats order.
        assert!(majority_vote(&[Some(0), Some(1), Some(1)], &[false, true, true]));
        // Missing answers do not vote; none at all is wrong.
        assert!(majority_vote(&[None, None, Some(2)], &[false, false, true]));
        assert!(!majority_vote(&[None, None], &[false, false]));
    }

    #[test]
    fn grid_of_k() {
        assert_eq!(pass_k_grid(64), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(pass_k_grid(6), vec![1, 2, 4, 6]);
        assert!(pass_k_grid(0).is_empty());
    }
}
