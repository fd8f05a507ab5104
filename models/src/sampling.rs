//! Token sampling: greedy, temperature, top-k, top-p, seeded per request.
//!
//! Sampling runs on the host over one row of f32 logits. Each request owns its own RNG seeded
//! from [`SamplingParams::seed`], so a request samples the same tokens whether it runs alone or
//! batched with others, and re-running with the same seed reproduces it exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to pick tokens and when to stop. Defaults: greedy, 256 new tokens, no stop ids.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Upper bound on generated tokens; reaching it finishes with `Length`.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0.0` means greedy (argmax), which ignores top-k/top-p.
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1]; `1.0` disables it.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens; `0` disables it.
    pub top_k: usize,
    /// RNG seed of this request.
    pub seed: u64,
    /// Generating any of these ids finishes with `Stop` (the id is kept in `new_ids`, as
    /// transformers does). Usually the EOS ids of generation_config.json.
    pub stop_token_ids: Vec<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop_token_ids: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of at most `max_new_tokens`, stopping on `stop_token_ids`.
    pub fn greedy(max_new_tokens: usize, stop_token_ids: Vec<u32>) -> Self {
        SamplingParams { max_new_tokens, stop_token_ids, ..Default::default() }
    }

    /// True when tokens are chosen by argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Rejects values that would make sampling meaningless (negative temperature, top_p
    /// outside (0, 1], NaN).
    pub fn validate(&self) -> Result<(), crate::ModelError> {
        let bad = |m: String| Err(crate::ModelError::InvalidInput(m));
        if self.temperature.is_nan() || self.temperature < 0.0 || !self.temperature.is_finite() {
            return bad(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

/// One request's sampler state: its parameters and its RNG.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    scratch: Vec<(f32, u32)>,
}

/// A chosen token and its log-probability under the unmodified model distribution
/// (temperature 1, no truncation), which is what OpenAI-style `logprobs` report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampledToken {
    /// The token id.
    pub id: u32,
    /// `log softmax(logits)[id]`.
    pub logprob: f32,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler { params, rng, scratch: Vec::new() }
    }

    /// The parameters this sampler follows.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> SampledToken {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
        let id = if self.params.is_greedy() { argmax(logits) } else { self.sample_stochastic(logits) };
        SampledToken { id, logprob: logits[id as usize] - lse }
    }

    fn sample_stochastic(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let inv_t = 1.0 / p.temperature;
        let cand = &mut self.scratch;
        cand.clear();
        cand.extend(logits.iter().enumerate().map(|(i, &l)| (l * inv_t, i as u32)));
        // Order by descending logit, ties by ascending id, so results never depend on the
        // sort algorithm.
        let by_desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_desc);
            cand.truncate(p.top_k);
        }
        cand.sort_unstable_by(by_desc);
        let max = cand[0].0;
        let mut probs: Vec<f64> = cand.iter().map(|&(l, _)| ((l - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, &pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.random::<f64>() * mass;
        for i in 0..keep {
            u -= probs[i];
            if u <= 0.0 {
                return cand[i].1;
            }
        }
        cand[keep - 1].1
    }
}

/// Index of the largest logit (lowest index on ties, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_and_logprob() {
        let mut s = Sampler::new(SamplingParams::greedy(1, vec![]));
        let t = s.sample(&[0.0, 2.0, 1.0]);
        assert_eq!(t.id, 1);
        let lse = (1.0f32 + 2.0f32.exp() + 1.0f32.exp()).ln();
        assert!((t.logprob - (2.0 - lse)).abs() < 1e-6);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_restricts() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 3, seed: 7, ..Default::default() };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..200).map(|_| s.sample(&logits).id).collect::<Vec<_>>()
        };
        let a = run(&params);
        assert_eq!(a, run(&params));
        let mut top: Vec<u32> = (0..50u32).collect();
        top.sort_by(|&x, &y| logits[y as usize].total_cmp(&logits[x as usize]));
        assert!(a.iter().all(|id| top[..3].contains(id)));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 3, "200 draws from 3 similar tokens should hit all");
        let other = run(&SamplingParams { seed: 8, ..params });
        assert_ne!(a, other);
    }

    #[test]
    fn top_p_keeps_smallest_nucleus() {
        // probabilities ~ 0.88, 0.12, ~0: top_p 0.5 keeps only the first token.
        let logits = [4.0f32, 2.0, -20.0];
        let mut s = Sampler::new(SamplingParams { temperature: 1.0, top_p: 0.5, seed: 1, ..Default::default() });
        assert!((0..100).all(|_| s.sample(&logits).id == 0));
        let mut s = Sampler::new(SamplingParams { temperature: 1.0, top_p: 0.95, seed: 1, ..Default::default() });
        let ids: Vec<u32> = (0..300).map(|_| s.sample(&logits).id).collect();
        assert!(ids.contains(&1) && !ids.contains(&2));
    }
}
