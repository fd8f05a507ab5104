//! Native rollouts: G completions per problem sampled in-process from the current policy with
//! the batched engine (`models::generate_requests`), rewarded by the grader. Problem order is
//! a pure function of (seed, epoch) and each completion's sampling seed of (seed, batch, i), so
//! a resumed run samples what the uninterrupted run would have.

use burn::tensor::backend::Backend;
use datasets::problems::{load_problems, Problem, ProblemColumns};
use datasets::TextTokenizer;
use models::{FinishReason, GenerationRequest, Model, SamplingParams};

use super::config::GrpoConfig;
use super::reward;
use super::rollout::{Rollout, RolloutBatch};
use crate::batch::RowStream;
use crate::error::{Result, StudentError};

/// Problems rendered to prompt ids, and how to sample and reward them.
pub struct NativeSampler {
    problems: Vec<Problem>,
    prompts: Vec<Vec<u32>>,
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
        let problems = load_problems(path, &ProblemColumns::default())
            .map_err(|e| StudentError::dataset(format!("loading problems {}", path.display()), e))?;
        if problems.is_empty() {
            return Err(StudentError::Data(format!("{}: no problems", path.display())));
        }
        let mut prompts = Vec::with_capacity(problems.len());
        for p in &problems {
            let text = if cfg.rollouts.r1_instruction { datasets::chat::r1_math_prompt(&p.problem) } else { p.problem.clone() };
            let ids = tokenizer
                .encode_chat(&[datasets::chat::ChatMessage::user(text)], true)
                .map_err(|e| StudentError::dataset(format!("rendering problem {}", p.id), e))?;
            prompts.push(ids);
        }
        let groups_per_batch = if cfg.rollouts.groups_per_step == 0 { DEFAULT_GROUPS } else { cfg.rollouts.groups_per_step };
        Ok(Self {
            problems,
            prompts,
            tokenizer,
            stop_ids,
            groups_per_batch,
        })
    }

    /// Batches in one pass over the problems.
    pub fn batches_per_epoch(&self) -> u64 {
        self.problems.len().div_ceil(self.groups_per_batch) as u64
    }

    /// The problems of rollout batch `index`: the next `groups_per_step` of the seeded stream.
    pub fn pick(&self, index: u64, cfg: &GrpoConfig) -> Vec<usize> {
        let p = self.groups_per_batch;
        let mut stream = RowStream::new(self.problems.len(), cfg.rollouts.shuffle, cfg.train.seed, index * p as u64);
        (0..p).map(|_| stream.next_index().0).collect()
    }

    /// Problem `i`.
    pub fn problem(&self, i: usize) -> &Problem {
        &self.problems[i]
    }

    /// The rendered prompt ids of problem `i`.
    pub fn prompt(&self, i: usize) -> &[u32] {
        &self.prompts[i]
    }

    /// Reward of a completion `text` of problem `i` with `n_tokens` tokens: accuracy, the
    /// weighted format reward and the overlong penalty; returns (reward, accuracy, format).
    pub fn reward(&self, i: usize, text: &str, n_tokens: usize, cfg: &GrpoConfig) -> (f64, f64, f64) {
        let g = &cfg.grpo;
        let acc = reward::accuracy(&self.problems[i].answer, text);
        let fmt = reward::format(text);
        let over = reward::overlong_penalty(n_tokens, g.max_completion_length, g.overlong_buffer, g.overlong_penalty);
        (acc + cfg.rollouts.format_reward * fmt + over, acc, fmt)
    }

    /// Samples rollout batch `index` (0-based) with `model`: the next `groups_per_step`
    /// problems of the seeded stream, `num_generations` completions each, rewarded.
    pub fn sample<B: Backend>(&self, model: &Model<B>, index: u64, cfg: &GrpoConfig) -> Result<RolloutBatch> {
        let g = &cfg.grpo;
        let picked = self.pick(index, cfg);
        let mut requests = Vec::with_capacity(picked.len() * g.num_generations);
        for (k, &pi) in picked.iter().enumerate() {
            for j in 0..g.num_generations {
                let params = SamplingParams {
                    max_new_tokens: g.max_completion_length,
                    temperature: g.temperature as f32,
                    top_p: g.top_p as f32,
                    top_k: g.top_k,
                    seed: sample_seed(cfg.train.seed, index, (k * g.num_generations + j) as u64),
                    stop_token_ids: self.stop_ids.clone(),
                    ..Default::default()
                };
                requests.push(GenerationRequest::new(self.prompts[pi].clone(), params));
            }
        }
        let outputs = models::generate_requests(model, requests, usize::MAX)
            .map_err(|e| StudentError::model("sampling rollouts", e))?;
        let mut rollouts = Vec::with_capacity(outputs.len());
        for (i, out) in outputs.into_iter().enumerate() {
            let pi = picked[i / g.num_generations];
            let text = self
                .tokenizer
                .decode(&out.new_ids, true)
                .map_err(|e| StudentError::dataset("decoding a completion", e))?;
            let truncated = out.finish_reason == FinishReason::Length;
            let (reward, acc, fmt) = self.reward(pi, &text, out.new_ids.len(), cfg);
            rollouts.push(Rollout {
                group: serde_json::Value::String(self.problems[pi].id.clone()),
                prompt_ids: self.prompts[pi].clone(),
                completion_ids: out.new_ids,
                reward,
                old_logprobs: None,
                ref_logprobs: None,
                truncated,
                accuracy: Some(acc),
                format: Some(fmt),
            });
        }
        Ok(RolloutBatch::from_rollouts(rollouts))
    }
}

/// The sampling seed of completion `i` of rollout batch `index` (SplitMix64 of the three).
pub fn sample_seed(seed: u64, index: u64, i: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
