//! The GRPO config: `distill student grpo --config FILE [--set k=v]`. Unknown keys are errors;
//! every default is documented where it is declared. `[model]`, `[optim]`, `[schedule]` and
//! `[output]` are the SFT trainer's sections.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{parse_with_overrides, resolve_relative, ModelSection, OptimSection, OutputSection, ScheduleSection, TrainDtype};
use crate::error::{Result, StudentError};

/// The whole GRPO run description.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrpoConfig {
    /// The policy to train (`path`, or random init as in SFT).
    pub model: ModelSection,
    /// Where completions come from.
    pub rollouts: RolloutsSection,
    /// The algorithm's knobs.
    #[serde(default)]
    pub grpo: GrpoSection,
    /// AdamW (same keys and defaults as SFT).
    #[serde(default)]
    pub optim: OptimSection,
    /// Learning-rate schedule (same keys and defaults as SFT).
    #[serde(default)]
    pub schedule: ScheduleSection,
    /// Run length, precision, seed.
    #[serde(default)]
    pub train: GrpoTrainSection,
    /// Run directory, checkpoints, final model.
    pub output: OutputSection,
    /// Held-out pass@1 during training (every `train.eval_every` steps; off by default).
    #[serde(default)]
    pub eval: GrpoEvalSection,
}

/// `[eval]`: held-out pass@1 of the policy while it trains, written to `metrics.jsonl` as
/// `eval_pass1` every `train.eval_every` steps and at the last step (native engine, grader).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrpoEvalSection {
    /// Held-out problems (`id`, `problem`, `answer`); required when `train.eval_every` > 0.
    #[serde(default)]
    pub problems: Option<PathBuf>,
    /// Completions per problem (pass@1 = mean accuracy over them). Default 1.
    #[serde(default = "one")]
    pub samples: usize,
    /// Use only the first N problems; 0 = all. Default 0.
    #[serde(default)]
    pub max_problems: usize,
    /// Sampling temperature. Default 0.6 (R1's evaluation protocol).
    #[serde(default = "default_eval_temperature")]
    pub temperature: f64,
    /// Nucleus mass. Default 0.95 (R1's evaluation protocol).
    #[serde(default = "default_eval_top_p")]
    pub top_p: f64,
    /// Longest answer in tokens; 0 = `grpo.max_completion_length`. Default 0.
    #[serde(default)]
    pub max_tokens: usize,
}

impl Default for GrpoEvalSection {
    fn default() -> Self {
        Self {
            problems: None,
            samples: 1,
            max_problems: 0,
            temperature: default_eval_temperature(),
            top_p: default_eval_top_p(),
            max_tokens: 0,
        }
    }
}

/// Rollout source.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RolloutSource {
    /// Recorded rollouts from `rollouts.file` (one JSON line per completion).
    File,
    /// Sample from the current policy in-process with the native engine.
    Native,
    /// Sample from an OpenAI-compatible server (vLLM, SGLang, `distill serve`) serving the
    /// policy, with logprobs; after each optimizer step the policy is saved in HF layout and
    /// the server told to reload it (`rollouts.reload_endpoint`).
    Openai,
}

/// How the rollout server is told to load the new policy after an optimizer step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReloadEndpoint {
    /// SGLang's `POST /update_weights_from_disk {"model_path": dir}` (also served by
    /// `distill serve`). Default.
    #[default]
    Sglang,
    /// Do not call the server (it is reloaded some other way, or the run is off-policy on
    /// purpose).
    None,
}

/// `[rollouts]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RolloutsSection {
    /// Recorded rollouts JSONL: `group`, `prompt_ids`, `completion_ids`, `reward`, optional
    /// `old_logprobs` (per completion token; absent = the current policy's, i.e. on-policy),
    /// optional `ref_logprobs`, optional `truncated`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Problem set (`id`, `problem`, `answer`) for sampled rollouts.
    #[serde(default)]
    pub problems: Option<PathBuf>,
    /// `file`, `native` or `openai`. Default: `file` when `file` is set, else `native`.
    #[serde(default)]
    pub source: Option<RolloutSource>,
    /// `openai` source: the server's OpenAI base URL, with `/v1` (e.g.
    /// `http://127.0.0.1:8000/v1`). Required for `openai`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `openai` source: the served model name sent as `model`. Default: the first model of
    /// `GET <base_url>/models`.
    #[serde(default)]
    pub model: Option<String>,
    /// `openai` source: how the server reloads the policy after each optimizer step.
    /// Default `sglang`.
    #[serde(default)]
    pub reload_endpoint: ReloadEndpoint,
    /// `openai` source: the reload URL. Default: `base_url` without its trailing `/v1`, plus
    /// `/update_weights_from_disk`.
    #[serde(default)]
    pub reload_url: Option<String>,
    /// `openai` source: seconds one rollout request may take. Default 3600.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_s: u64,
    /// Groups (prompts) per rollout batch; 0 = the whole file as one batch (file source).
    /// Default 0 for files; native sampling requires >= 1 (default used there: 8).
    #[serde(default)]
    pub groups_per_step: usize,
    /// Shuffle the problems each epoch (native). Default true.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Weight of the format reward (`<think>…</think>` then a `\boxed{}` answer) added to the
    /// 0/1 accuracy reward (native). Default 0 (accuracy only).
    #[serde(default)]
    pub format_reward: f64,
    /// Append the R1 instruction ("Please reason step by step, …\\boxed{}.") to each problem.
    /// Default true.
    #[serde(default = "yes")]
    pub r1_instruction: bool,
}

/// How the loss is aggregated over completion tokens (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over sequences of each sequence's token mean.
    Grpo,
    /// Sum over tokens / tokens of the batch.
    Bnpo,
    /// Sum over tokens / (sequences · max_completion_length).
    DrGrpo,
    /// Sum over tokens / tokens of the whole step (global across micro-batches). Default.
    #[default]
    Dapo,
}

/// How advantages are scaled (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRewards {
    /// Divide by the group's std (+1e-4). Default.
    #[default]
    Group,
    /// Divide by the std of the whole batch (+1e-4).
    Batch,
    /// Do not divide (Dr. GRPO).
    None,
}

/// `[grpo]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrpoSection {
    /// Completions per prompt (G). Default 8.
    #[serde(default = "default_generations")]
    pub num_generations: usize,
    /// Sampling temperature; logprobs are taken at it (logits / T). Default 1.0.
    #[serde(default = "one_f")]
    pub temperature: f64,
    /// Nucleus mass for native sampling. Default 1.0 (off).
    #[serde(default = "one_f")]
    pub top_p: f64,
    /// Top-k for native sampling; 0 = off. Default 0.
    #[serde(default)]
    pub top_k: usize,
    /// Lower clip: ratio ≥ 1 − epsilon_low. Default 0.2.
    #[serde(default = "default_eps")]
    pub epsilon_low: f64,
    /// Upper clip: ratio ≤ 1 + epsilon_high (DAPO's clip-higher uses 0.28). Default 0.2.
    #[serde(default = "default_eps")]
    pub epsilon_high: f64,
    /// KL coefficient of the k3 estimator against the reference; 0 loads no reference model.
    /// Default 0.
    #[serde(default)]
    pub beta: f64,
    /// Reference model for β > 0 when rollouts carry no `ref_logprobs`. Default `model.path`
    /// (the initial policy).
    #[serde(default)]
    pub reference: Option<PathBuf>,
    /// Loss aggregation. Default `dapo`.
    #[serde(default)]
    pub loss_type: LossType,
    /// Advantage scaling. Default `group`.
    #[serde(default)]
    pub scale_rewards: ScaleRewards,
    /// Longest completion in tokens (sampling limit; dr_grpo's normaliser). Default 256.
    #[serde(default = "default_max_completion")]
    pub max_completion_length: usize,
    /// Optimizer steps per rollout batch. Default 1.
    #[serde(default = "one")]
    pub num_iterations: usize,
    /// Give truncated completions (no EOS within the limit) no loss. Default false.
    #[serde(default)]
    pub mask_truncated_completions: bool,
    /// DAPO soft overlong penalty: completions longer than `max_completion_length − buffer`
    /// lose up to `overlong_penalty` reward linearly; 0 = off. Default 0.
    #[serde(default)]
    pub overlong_buffer: usize,
    /// Largest soft overlong penalty. Default 1.0.
    #[serde(default = "one_f")]
    pub overlong_penalty: f64,
    /// Padded tokens (sequences × longest) per micro-batch; 0 = one micro-batch. Default 8192.
    #[serde(default = "default_mb_tokens")]
    pub micro_batch_tokens: usize,
    /// Positions per logits chunk of the logprob projection. Default 1024.
    #[serde(default = "crate::config::default_loss_chunk")]
    pub loss_chunk: usize,
    /// Hand-written projection gradient, one logits chunk alive at a time (`false` = autodiff
    /// through each chunk's log-softmax; reference path). Default true.
    #[serde(default = "yes")]
    pub fused: bool,
    /// DAPO dynamic sampling (native rollouts): drop groups whose rewards are all equal (they
    /// carry no advantage) and sample further prompts until the batch holds
    /// `rollouts.groups_per_step` informative groups or `max_resample_rounds` extra rounds ran.
    /// Default false.
    #[serde(default)]
    pub dynamic_sampling: bool,
    /// Extra sampling rounds per batch under `dynamic_sampling`. Default 3.
    #[serde(default = "default_resample_rounds")]
    pub max_resample_rounds: usize,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrpoTrainSection {
    /// Optimizer steps; 0 = one pass over the rollouts file / problems (× num_iterations).
    /// Default 0.
    #[serde(default)]
    pub max_steps: u64,
    /// Default `f32`.
    #[serde(default)]
    pub dtype: TrainDtype,
    /// Seed of problem order and sampling. Default 42.
    #[serde(default = "crate::config::default_seed")]
    pub seed: u64,
    /// Data-parallel peers, as SFT's `train.devices`: every peer holds the step's rollout
    /// batch and computes the micro-batches m with m mod N = its rank; gradients and loss
    /// sums are all-reduced. Default: one device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// ZeRO-1 over `devices`, as SFT's `train.shard_optimizer`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shard_optimizer: bool,
    /// Held-out pass@1 (`[eval]`) every N optimizer steps and at the last one; 0 = never.
    /// Default 0.
    #[serde(default)]
    pub eval_every: u64,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_generations() -> usize {
    8
}
fn default_eps() -> f64 {
    0.2
}
fn default_max_completion() -> usize {
    256
}
fn default_mb_tokens() -> usize {
    8192
}
fn default_request_timeout() -> u64 {
    3600
}
fn default_resample_rounds() -> usize {
    3
}
fn default_eval_temperature() -> f64 {
    0.6
}
fn default_eval_top_p() -> f64 {
    0.95
}

impl Default for GrpoSection {
    fn default() -> Self {
        Self {
            num_generations: default_generations(),
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            beta: 0.0,
            reference: None,
            loss_type: LossType::default(),
            scale_rewards: ScaleRewards::default(),
            max_completion_length: default_max_completion(),
            num_iterations: 1,
            mask_truncated_completions: false,
            overlong_buffer: 0,
            overlong_penalty: 1.0,
            micro_batch_tokens: default_mb_tokens(),
            loss_chunk: crate::config::default_loss_chunk(),
            fused: true,
            dynamic_sampling: false,
            max_resample_rounds: default_resample_rounds(),
        }
    }
}

impl Default for GrpoTrainSection {
    fn default() -> Self {
        Self {
            max_steps: 0,
            dtype: TrainDtype::F32,
            seed: crate::config::default_seed(),
            devices: Vec::new(),
            shard_optimizer: false,
            eval_every: 0,
        }
    }
}

impl GrpoConfig {
    /// Parses a config file with `key=value` overrides, resolves relative paths against the
    /// file's directory and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| StudentError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, overrides, &path.display().to_string(), Some(base))
    }

    /// As [`GrpoConfig::load`], from text (`origin` names it in errors).
    pub fn from_toml_str(text: &str, overrides: &[String], origin: &str, base: Option<&Path>) -> Result<Self> {
        let mut cfg: GrpoConfig = parse_with_overrides(text, overrides, origin)?;
        if let Some(base) = base {
            cfg.resolve_paths(base);
        }
        cfg.validate().map_err(|msg| StudentError::Config { path: origin.to_string(), msg })?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            self.model.path.as_mut(),
            self.model.config.as_mut(),
            self.model.tokenizer.as_mut(),
            self.rollouts.file.as_mut(),
            self.rollouts.problems.as_mut(),
            self.grpo.reference.as_mut(),
            self.eval.problems.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve_relative(p, base);
        }
    }

    /// The rollout source in effect.
    pub fn source(&self) -> RolloutSource {
        self.rollouts.source.unwrap_or(if self.rollouts.file.is_some() {
            RolloutSource::File
        } else {
            RolloutSource::Native
        })
    }

    /// Checks ranges and required combinations.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let probe = crate::TrainConfig {
            model: self.model.clone(),
            data: crate::config::DataSection {
                train: PathBuf::from("-"),
                eval: None,
                format: Default::default(),
                packing: false,
                max_seq_len: 2,
                over_length: Default::default(),
            },
            optim: self.optim.clone(),
            schedule: self.schedule.clone(),
            train: Default::default(),
            output: self.output.clone(),
            lora: None,
            distill: None,
        };
        probe.validate()?;
        let peers = crate::distributed::parse_devices(&self.train.devices).map_err(|e| format!("train.devices: {e}"))?;
        if peers.len() > 1 && self.source() == RolloutSource::Openai {
            // Every peer samples the step's whole batch itself; from a server each would get
            // different completions. One trainer per server keeps the batch one batch.
            return Err("rollouts.source = \"openai\" trains on one device: drop train.devices (the server does the sampling)".into());
        }
        let g = &self.grpo;
        if g.num_generations < 2 {
            return Err(format!("grpo.num_generations must be >= 2 (a group needs a baseline), got {}", g.num_generations));
        }
        if !(g.temperature > 0.0 && g.temperature.is_finite()) {
            return Err(format!("grpo.temperature must be > 0, got {}", g.temperature));
        }
        if !(g.top_p > 0.0 && g.top_p <= 1.0) {
            return Err(format!("grpo.top_p must be in (0, 1], got {}", g.top_p));
        }
        if !(0.0..1.0).contains(&g.epsilon_low) || g.epsilon_high < 0.0 || g.beta < 0.0 {
            return Err("grpo.epsilon_low must be in [0, 1), grpo.epsilon_high and grpo.beta >= 0".into());
        }
        if g.max_completion_length == 0 || g.num_iterations == 0 || g.loss_chunk == 0 {
            return Err("grpo.max_completion_length, grpo.num_iterations and grpo.loss_chunk must be >= 1".into());
        }
        if g.overlong_buffer >= g.max_completion_length && g.overlong_buffer > 0 {
            return Err("grpo.overlong_buffer must be < grpo.max_completion_length".into());
        }
        if self.train.eval_every > 0 {
            let e = &self.eval;
            if e.problems.is_none() {
                return Err("train.eval_every > 0 needs eval.problems (held-out problems)".into());
            }
            if e.samples == 0 || !(e.temperature > 0.0 && e.temperature.is_finite()) || !(e.top_p > 0.0 && e.top_p <= 1.0) {
                return Err("eval.samples must be >= 1, eval.temperature > 0, eval.top_p in (0, 1]".into());
            }
        }
        if g.dynamic_sampling && self.source() != RolloutSource::Native {
            return Err("grpo.dynamic_sampling resamples prompts: it needs native rollouts (rollouts.problems)".into());
        }
        match self.source() {
            RolloutSource::File if self.rollouts.file.is_none() => Err("rollouts.source = \"file\" needs rollouts.file".into()),
            RolloutSource::Native if self.rollouts.problems.is_none() => {
                Err("native rollouts need rollouts.problems (or set rollouts.file for recorded rollouts)".into())
            }
            RolloutSource::Openai if self.rollouts.problems.is_none() || self.rollouts.base_url.is_none() => {
                Err("rollouts.source = \"openai\" needs rollouts.problems and rollouts.base_url".into())
            }
            _ => Ok(()),
        }
    }

    /// The tokenizer directory: `model.tokenizer`, else `model.path`.
    pub fn tokenizer_dir(&self) -> Option<&Path> {
        self.model.tokenizer.as_deref().or(self.model.path.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[model]\npath = \"m\"\n[rollouts]\nfile = \"r.jsonl\"\n[output]\ndir = \"out\"\n";

    #[test]
    fn defaults_overrides_and_unknown_keys() {
        let c = GrpoConfig::from_toml_str(MIN, &["grpo.loss_type=\"dr_grpo\"".into(), "grpo.beta=0.04".into()], "x", None).unwrap();
        assert_eq!(c.grpo.loss_type, LossType::DrGrpo);
        assert_eq!(c.grpo.beta, 0.04);
        assert_eq!(c.source(), RolloutSource::File);
        assert_eq!(c.grpo.scale_rewards, ScaleRewards::Group);
        let e = GrpoConfig::from_toml_str(MIN, &["grpo.epsilon=0.2".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("epsilon"), "{e}");
        let e = GrpoConfig::from_toml_str(MIN, &["rollouts.source=\"native\"".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("rollouts.problems"), "{e}");
        let e = GrpoConfig::from_toml_str(MIN, &["rollouts.source=\"openai\"".into(), "rollouts.problems=\"p.jsonl\"".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("rollouts.base_url"), "{e}");
        let c = GrpoConfig::from_toml_str(MIN, &["rollouts.source=\"openai\"".into(), "rollouts.problems=\"p.jsonl\"".into(), "rollouts.base_url=\"http://h:1/v1\"".into()], "x", None).unwrap();
        assert_eq!(c.rollouts.reload_endpoint, ReloadEndpoint::Sglang);
    }

    #[test]
    fn eval_and_dynamic_sampling_keys_are_checked() {
        let c = GrpoConfig::from_toml_str(MIN, &[], "x", None).unwrap();
        assert_eq!((c.train.eval_every, c.eval.samples, c.grpo.dynamic_sampling, c.grpo.max_resample_rounds), (0, 1, false, 3));
        let e = GrpoConfig::from_toml_str(MIN, &["train.eval_every=5".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("eval.problems"), "{e}");
        let ok = ["train.eval_every=5".into(), "eval.problems=\"t.jsonl\"".into()];
        assert_eq!(GrpoConfig::from_toml_str(MIN, &ok, "x", None).unwrap().train.eval_every, 5);
        let e = GrpoConfig::from_toml_str(MIN, &["grpo.dynamic_sampling=true".into()], "x", None).unwrap_err();
        assert!(e.to_string().contains("native"), "{e}");
    }
}
