//! GRPO: group-relative policy optimisation with verifiable rewards, on the SFT trainer's
//! parts (setup, policy step, checkpoints, final save) with its own objective
//! ([`crate::objective::grpo`]) and a rollout stage: recorded rollouts from a file, G
//! completions per problem sampled in-process and rewarded by the grader, or the same sampled
//! by an OpenAI-compatible server kept in sync after every step ([`openai`]).
//!
//! TRL's conventions throughout: logprobs at the sampling temperature, each completion its own
//! sequence from position 0, Bessel-std advantages + 1e-4, the two-sided clipped ratio with
//! the k3 KL (β = 0 loads no reference), `loss_type` grpo | bnpo | dr_grpo | dapo.

pub mod advantage;
pub mod batch;
pub mod config;
pub mod dynamic;
pub mod heldout;
pub mod metrics;
pub mod native;
pub mod openai;
pub mod reward;
pub mod rollout;
pub mod trainer;

pub use config::GrpoConfig;
pub use metrics::{read_grpo_metrics, GrpoStepMetrics};
pub use trainer::{train_grpo, GrpoSummary};
