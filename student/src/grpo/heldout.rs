//! Held-out pass@1 while GRPO trains (`[eval]`, every `train.eval_every` steps): the policy
//! samples `eval.samples` answers per held-out problem with the native engine and the grader
//! scores them. Seeds are fixed per (problem, sample), the same at every evaluation, so the
//! curve moves with the policy and not with sampling noise.

use burn::tensor::backend::Backend;
use datasets::TextTokenizer;
use models::{Model, SamplingParams};

use super::config::GrpoConfig;
use super::native::{complete, sample_seed, ProblemPrompts};
use super::reward;
use crate::error::Result;

/// Salt separating evaluation seeds from rollout seeds.
const EVAL_SALT: u64 = 0x5EED_E7A1_0000_0001;

/// The held-out set and how to sample it.
pub struct HeldOut {
    set: ProblemPrompts,
    tokenizer: TextTokenizer,
    stop_ids: Vec<u32>,
}

/// True when held-out pass@1 is due after optimizer step `step` (1-based) of `total`.
pub fn eval_due(step: u64, every: u64, total: u64) -> bool {
    every > 0 && (step.is_multiple_of(every) || step == total)
}

/// Mean of the per-problem means of `correct` (`samples` consecutive outcomes per problem).
pub fn pass_at_1(correct: &[f64], samples: usize) -> f64 {
    let per: Vec<f64> = correct.chunks(samples.max(1)).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    if per.is_empty() {
        0.0
    } else {
        per.iter().sum::<f64>() / per.len() as f64
    }
}

impl HeldOut {
    /// Loads `eval.problems` when `train.eval_every` > 0 (None otherwise).
    pub fn new(cfg: &GrpoConfig, tokenizer: TextTokenizer, stop_ids: Vec<u32>) -> Result<Option<Self>> {
        let Some(path) = cfg.eval.problems.as_ref().filter(|_| cfg.train.eval_every > 0) else {
            return Ok(None);
        };
        let set = ProblemPrompts::load(path, cfg.rollouts.r1_instruction, &tokenizer, cfg.eval.max_problems)?;
        Ok(Some(Self { set, tokenizer, stop_ids }))
    }

    /// Problems evaluated.
    pub fn len(&self) -> usize {
        self.set.problems.len()
    }

    /// Whether the set is empty (never: loading refuses an empty set).
    pub fn is_empty(&self) -> bool {
        self.set.problems.is_empty()
    }

    /// pass@1 of `model` on the held-out problems.
    pub fn evaluate<B: Backend>(&self, model: &Model<B>, cfg: &GrpoConfig) -> Result<f64> {
        let e = &cfg.eval;
        let max_new_tokens = if e.max_tokens == 0 { cfg.grpo.max_completion_length } else { e.max_tokens };
        let mut jobs = Vec::with_capacity(self.len() * e.samples);
        for (pi, prompt) in self.set.prompts.iter().enumerate() {
            for j in 0..e.samples {
                let params = SamplingParams {
                    max_new_tokens,
                    temperature: e.temperature as f32,
                    top_p: e.top_p as f32,
                    top_k: 0,
                    seed: sample_seed(cfg.train.seed ^ EVAL_SALT, pi as u64, j as u64),
                    stop_token_ids: self.stop_ids.clone(),
                    ..Default::default()
                };
                jobs.push((prompt.clone(), params));
            }
        }
        let outputs = complete(model, &self.tokenizer, jobs)?;
        let correct: Vec<f64> = outputs
            .iter()
            .enumerate()
            .map(|(i, (_, text))| reward::accuracy(&self.set.problems[i / e.samples].answer, text))
            .collect();
        Ok(pass_at_1(&correct, e.samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_every_n_steps_and_at_the_end() {
        let due: Vec<u64> = (1..=7).filter(|&s| eval_due(s, 3, 7)).collect();
        assert_eq!(due, vec![3, 6, 7]);
        assert!(!(1..=7).any(|s| eval_due(s, 0, 7)), "0 = never");
    }

    #[test]
    fn pass_at_1_averages_per_problem() {
        // problem 1: 2/2, problem 2: 0/2, problem 3: 1/2
        assert_eq!(pass_at_1(&[1.0, 1.0, 0.0, 0.0, 1.0, 0.0], 2), 0.5);
        assert_eq!(pass_at_1(&[1.0, 0.0, 1.0], 1), 2.0 / 3.0);
        assert_eq!(pass_at_1(&[], 1), 0.0);
    }
}
