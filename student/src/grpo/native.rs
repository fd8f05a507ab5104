//! Native rollouts: G completions per problem sampled in-process from the current policy with
//! the batched engine (`models::generate_requests`), rewarded by the grader. Problem order is
//! a pure function of (seed, epoch) and each completion's sampling seed of (seed, batch, i), so
//! a resumed run samples what the uninterrupted run would have. Under DAPO dynamic sampling the
//! extra prompts of resampling round r are a pure function of (seed, batch, r) too.

use std::collections::HashSet;
use std::path::Path;

use burn::tensor::backend::Backend;
use datasets::problems::{load_problems, Problem, ProblemColumns};
use datasets::TextTokenizer;
use models::{FinishReason, GenerationOutput, GenerationRequest, Model, SamplingParams};

use super::config::GrpoConfig;
use super::dynamic::{fill_informative, DynamicCounts};
use super::reward;
use super::rollout::{Rollout, RolloutBatch};
use crate::batch::RowStream;
use crate::error::{Result, StudentError};

/// Problems rendered to prompt ids with the chat template and the generation prompt.
pub struct ProblemPrompts {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
    /// Prompt ids of each problem.
    pub prompts: Vec<Vec<u32>>,
}

impl ProblemPrompts {
    /// Loads `path` (the first `max` problems; 0 = all) and renders each as a user turn (the
    /// problem, plus the R1 instruction when `r1_instruction`) followed by the generation prompt.
    pub fn load(path: &Path, r1_instruction: bool, tokenizer: &TextTokenizer, max: usize) -> Result<Self> {
        let mut problems = load_problems(path, &ProblemColumns::default())
            .map_err(|e| StudentError::dataset(format!("loading problems {}", path.display()), e))?;
        if max > 0 {
            problems.truncate(max);
        }
        if problems.is_empty() {
            return Err(StudentError::Data(format!("{}: no problems", path.display())));
        }
        let mut prompts = Vec::with_capacity(problems.len());
        for p in &problems {
            let text = if r1_instruction { datasets::chat::r1_math_prompt(&p.problem) } else { p.problem.clone() };
            let ids = tokenizer
                .encode_chat(&[datasets::chat::ChatMessage::user(text)], true)
                .map_err(|e| StudentError::dataset(format!("rendering problem {}", p.id), e))?;
            prompts.push(ids);
        }
        Ok(Self { problems, prompts })
    }
}

/// Samples one completion per `(prompt, seed)` job with `model` and decodes it.
pub fn complete<B: Backend>(
    model: &Model<B>,
    tokenizer: &TextTokenizer,
    jobs: Vec<(Vec<u32>, SamplingParams)>,
) -> Result<Vec<(GenerationOutput, String)>> {
    let requests = jobs.into_iter().map(|(prompt, params)| GenerationRequest::new(prompt, params)).collect();
    let outputs = models::generate_requests(model, requests, usize::MAX).map_err(|e| StudentError::model("sampling completions", e))?;
    outputs
        .into_iter()
        .map(|out| {
            let text = tokenizer.decode(&out.new_ids, true).map_err(|e| StudentError::dataset("decoding a completion", e))?;
            Ok((out, text))
        })
        .collect()
}

/// Problems rendered to prompt ids, and how to sample and reward them.
pub struct NativeSampler {
    set: ProblemPrompts,
    tokenizer: TextTokenizer,
    stop_ids: Vec<u32>,
    groups_per_batch: usize,
}

/// Groups per batch when `rollouts.groups_per_step` is 0 for native sampling.
pub const DEFAULT_GROUPS: usize = 8;

impl NativeSampler {
    /// Loads `rollouts.problems` and renders each with the chat template (user turn = the
    /// problem, plus the R1 instruction when configured) and the generation prompt.
    pub fn new(cfg: &GrpoConfig, tokenizer: TextTokenizer, stop_ids: Vec<u32>) -> Result<Self> {
        let path = cfg.rollouts.problems.as_ref().expect("validated");
        let set = ProblemPrompts::load(path, cfg.rollouts.r1_instruction, &tokenizer, 0)?;
        let groups_per_batch = if cfg.rollouts.groups_per_step == 0 { DEFAULT_GROUPS } else { cfg.rollouts.groups_per_step };
        Ok(Self { set, tokenizer, stop_ids, groups_per_batch })
    }

    /// Batches in one pass over the problems.
    pub fn batches_per_epoch(&self) -> u64 {
        self.set.problems.len().div_ceil(self.groups_per_batch) as u64
    }

    /// The problems of rollout batch `index`: the next `groups_per_step` of the seeded stream.
    pub fn pick(&self, index: u64, cfg: &GrpoConfig) -> Vec<usize> {
        let p = self.groups_per_batch;
        let mut stream = RowStream::new(self.set.problems.len(), cfg.rollouts.shuffle, cfg.train.seed, index * p as u64);
        (0..p).map(|_| stream.next_index().0).collect()
    }

    /// Problem `i`.
    pub fn problem(&self, i: usize) -> &Problem {
        &self.set.problems[i]
    }

    /// The rendered prompt ids of problem `i`.
    pub fn prompt(&self, i: usize) -> &[u32] {
        &self.set.prompts[i]
    }

    /// Reward of a completion `text` of problem `i` with `n_tokens` tokens: accuracy, the
    /// weighted format reward and the overlong penalty; returns (reward, accuracy, format).
    pub fn reward(&self, i: usize, text: &str, n_tokens: usize, cfg: &GrpoConfig) -> (f64, f64, f64) {
        let g = &cfg.grpo;
        let acc = reward::accuracy(&self.set.problems[i].answer, text);
        let fmt = reward::format(text);
        let over = reward::overlong_penalty(n_tokens, g.max_completion_length, g.overlong_buffer, g.overlong_penalty);
        (acc + cfg.rollouts.format_reward * fmt + over, acc, fmt)
    }

    /// Samples rollout batch `index` (0-based) with `model`: the next `groups_per_step`
    /// problems of the seeded stream, `num_generations` completions each, rewarded. Under
    /// `grpo.dynamic_sampling`, zero-variance groups are replaced by groups of further prompts
    /// (see [`fill_informative`]); the counts say how many.
    pub fn sample<B: Backend>(&self, model: &Model<B>, index: u64, cfg: &GrpoConfig) -> Result<(RolloutBatch, DynamicCounts)> {
        let p = self.groups_per_batch;
        let n = self.set.problems.len();
        let mut stream = RowStream::new(n, cfg.rollouts.shuffle, cfg.train.seed, index * p as u64);
        let first: Vec<usize> = (0..p).map(|_| stream.next_index().0).collect();
        let mut next_completion = 0u64;
        if !cfg.grpo.dynamic_sampling {
            let groups = self.sample_groups(model, &first, index, &mut next_completion, cfg)?;
            return Ok((RolloutBatch::from_rollouts(groups.into_iter().flatten().collect()), DynamicCounts::default()));
        }
        let mut used: HashSet<usize> = first.iter().copied().collect();
        let (groups, counts) = fill_informative(p, cfg.grpo.max_resample_rounds, |round, count| {
            let picked = if round == 0 {
                first.clone()
            } else {
                extra_prompts(n, sample_seed(cfg.train.seed, index, u64::MAX - round as u64), count, &mut used)
            };
            self.sample_groups(model, &picked, index, &mut next_completion, cfg)
        })?;
        Ok((RolloutBatch::from_rollouts(groups.into_iter().flatten().collect()), counts))
    }

    /// `num_generations` rewarded completions of each picked problem, one group per problem;
    /// completion seeds continue from `next_completion`.
    fn sample_groups<B: Backend>(
        &self,
        model: &Model<B>,
        picked: &[usize],
        index: u64,
        next_completion: &mut u64,
        cfg: &GrpoConfig,
    ) -> Result<Vec<Vec<Rollout>>> {
        let g = &cfg.grpo;
        let mut jobs = Vec::with_capacity(picked.len() * g.num_generations);
        for &pi in picked {
            for _ in 0..g.num_generations {
                let params = SamplingParams {
                    max_new_tokens: g.max_completion_length,
                    temperature: g.temperature as f32,
                    top_p: g.top_p as f32,
                    top_k: g.top_k,
                    seed: sample_seed(cfg.train.seed, index, *next_completion),
                    stop_token_ids: self.stop_ids.clone(),
                    ..Default::default()
                };
                *next_completion += 1;
                jobs.push((self.set.prompts[pi].clone(), params));
            }
        }
        let outputs = complete(model, &self.tokenizer, jobs)?;
        let mut groups: Vec<Vec<Rollout>> = picked.iter().map(|_| Vec::with_capacity(g.num_generations)).collect();
        for (i, (out, text)) in outputs.into_iter().enumerate() {
            let pi = picked[i / g.num_generations];
            let prob = &self.set.problems[pi];
            let acc = reward::accuracy(&prob.answer, &text);
            let fmt = reward::format(&text);
            let over = reward::overlong_penalty(out.new_ids.len(), g.max_completion_length, g.overlong_buffer, g.overlong_penalty);
            groups[i / g.num_generations].push(Rollout {
                group: serde_json::Value::String(prob.id.clone()),
                prompt_ids: self.set.prompts[pi].clone(),
                truncated: out.finish_reason == FinishReason::Length,
                completion_ids: out.new_ids,
                reward: acc + cfg.rollouts.format_reward * fmt + over,
                old_logprobs: None,
                ref_logprobs: None,
                accuracy: Some(acc),
                format: Some(fmt),
            });
        }
        Ok(groups)
    }
}

/// `count` problem indices of a stream seeded by `seed`, skipping those in `used` (unless all
/// `n` are used), added to `used`.
fn extra_prompts(n: usize, seed: u64, count: usize, used: &mut HashSet<usize>) -> Vec<usize> {
    let mut stream = RowStream::new(n, true, seed, 0);
    let mut out = Vec::with_capacity(count);
    for _ in 0..n {
        if out.len() == count {
            break;
        }
        let i = stream.next_index().0;
        if used.insert(i) {
            out.push(i);
        }
    }
    while out.len() < count {
        out.push(stream.next_index().0);
    }
    out
}

/// The sampling seed of completion `i` of rollout batch `index` (SplitMix64 of the three).
pub fn sample_seed(seed: u64, index: u64, i: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_prompts_skip_used_ones_and_are_seeded() {
        let mut used: HashSet<usize> = [0, 1, 2].into_iter().collect();
        let a = extra_prompts(10, 7, 4, &mut used.clone());
        assert_eq!(a, extra_prompts(10, 7, 4, &mut used.clone()), "same seed, same prompts");
        let b = extra_prompts(10, 7, 4, &mut used);
        assert_eq!(a, b);
        assert!(a.iter().all(|i| *i >= 3) && a.len() == 4);
        assert_eq!(used.len(), 7);
        // all used: repeats rather than fewer prompts
        let mut all: HashSet<usize> = (0..3).collect();
        assert_eq!(extra_prompts(3, 1, 2, &mut all).len(), 2);
    }
}
