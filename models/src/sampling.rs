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
    /// HF/vLLM repetition penalty over the prompt and the generated ids: a seen token's
    /// positive logit is divided by it, a negative one multiplied. `1.0` disables it.
    pub repetition_penalty: f32,
    /// `stop_token_ids` cannot be sampled before this many tokens are generated (vLLM's
    /// `min_tokens`). `0` disables it.
    pub min_new_tokens: usize,
    /// Also report this many most likely tokens of the raw distribution per step
    /// ([`SampledToken::top`]); `0` reports none.
    pub top_logprobs: usize,
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
            repetition_penalty: 1.0,
            min_new_tokens: 0,
            top_logprobs: 0,
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
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
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
    /// Ids seen in the prompt and the output (repetition penalty), sorted.
    seen: Vec<u32>,
    /// Tokens sampled so far (min_new_tokens).
    generated: usize,
}

/// A chosen token and its log-probability under the unmodified model distribution
/// (temperature 1, no penalty, no truncation), which is what vLLM's default `logprobs`
/// (`raw_logprobs`) and this crate's logprob consumers report.
#[derive(Clone, Debug, PartialEq)]
pub struct SampledToken {
    /// The token id.
    pub id: u32,
    /// `log softmax(logits)[id]`.
    pub logprob: f32,
    /// The `top_logprobs` most likely ids of the same raw distribution with their logprobs,
    /// most likely first (ties by ascending id).
    pub top: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler { params, rng, scratch: Vec::new(), seen: Vec::new(), generated: 0 }
    }

    /// Records the prompt, whose ids the repetition penalty also covers (as in HF and vLLM).
    pub fn observe_prompt(&mut self, prompt: &[u32]) {
        if self.params.repetition_penalty != 1.0 {
            for &id in prompt {
                self.mark_seen(id);
            }
        }
    }

    fn mark_seen(&mut self, id: u32) {
        if let Err(pos) = self.seen.binary_search(&id) {
            self.seen.insert(pos, id);
        }
    }

    /// The logits sampling sees: raw, or with the repetition penalty and min_new_tokens
    /// applied (a copy only when one of them is active).
    fn processed<'a>(&self, logits: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        let p = &self.params;
        let penalize = p.repetition_penalty != 1.0 && !self.seen.is_empty();
        let suppress = self.generated < p.min_new_tokens && !p.stop_token_ids.is_empty();
        if !penalize && !suppress {
            return std::borrow::Cow::Borrowed(logits);
        }
        let mut out = logits.to_vec();
        if penalize {
            for &id in &self.seen {
                if let Some(l) = out.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        if suppress {
            for &id in &p.stop_token_ids {
                if let Some(l) = out.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// The parameters this sampler follows.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> SampledToken {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
        let processed = self.processed(logits);
        let id = if self.params.is_greedy() { argmax(&processed) } else { self.sample_stochastic(&processed) };
        drop(processed);
        self.generated += 1;
        if self.params.repetition_penalty != 1.0 {
            self.mark_seen(id);
        }
        let top = top_logprobs(logits, lse, self.params.top_logprobs);
        SampledToken { id, logprob: logits[id as usize] - lse, top }
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

/// The `k` largest entries of `logits` as (id, logit − lse), most likely first, ties by
/// ascending id.
fn top_logprobs(logits: &[f32], lse: f32, k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let by_desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let mut cand: Vec<(f32, u32)> = logits.iter().enumerate().map(|(i, &l)| (l, i as u32)).collect();
    if k < cand.len() {
        cand.select_nth_unstable_by(k - 1, by_desc);
        cand.truncate(k);
    }
    cand.sort_unstable_by(by_desc);
    cand.into_iter().map(|(l, i)| (i, l - lse)).collect()
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
    fn repetition_penalty_min_tokens_and_top_logprobs() {
        // HF semantics: seen positive logits are divided, negative multiplied.
        let logits = [2.0f32, 1.9, -1.0, 0.5];
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy(4, vec![]) });
        s.observe_prompt(&[0]);
        assert_eq!(s.processed(&logits).to_vec(), vec![1.0, 1.9, -1.0, 0.5]);
        let t = s.sample(&logits);
        assert_eq!(t.id, 1, "the prompt's token 0 is penalised below token 1");
        // The raw distribution's logprob is reported, not the penalised one.
        let lse = logits.iter().map(|l| l.exp()).sum::<f32>().ln();
        assert!((t.logprob - (1.9 - lse)).abs() < 1e-6);
        // Token 1 is now seen too: 1.9 / 2 < 1.0.
        assert_eq!(s.sample(&logits).id, 0);
        // min_new_tokens: the stop id cannot be chosen for the first two tokens.
        let mut s = Sampler::new(SamplingParams { min_new_tokens: 2, top_logprobs: 2, ..SamplingParams::greedy(4, vec![0]) });
        let a = s.sample(&logits);
        assert_eq!((a.id, s.sample(&logits).id, s.sample(&logits).id), (1, 1, 0));
        assert_eq!(a.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 1], "top from the raw logits");
        assert!((a.top[0].1 - (2.0 - lse)).abs() < 1e-6);
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
