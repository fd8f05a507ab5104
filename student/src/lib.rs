//! The student trainers: SFT / logit distillation and GRPO.
//!
//! Data flows in as trace / messages / pre-tokenized files, is rendered with the student's
//! chat template and packed by `datasets::sft`, and is trained here with PyTorch-exact AdamW,
//! global-norm clipping, gradient accumulation and chunked cross-entropy. Checkpoints are
//! Hugging Face directories (written by `models`) plus the trainer state needed to resume
//! bit-for-bit on the same loss curve.
//!
//! The trainer is assembled from parts ([`trainer`]: setup, policy step, eval, records,
//! saving); what a micro-batch's loss is lives behind one seam, [`objective::Objective`]
//! (cross-entropy, logit distillation, GRPO's clipped-ratio loss), which starts from final-norm
//! hidden states. [`grpo`] adds the rollout stage (recorded or natively sampled and graded
//! completions) for reinforcement learning with verifiable rewards.

pub mod batch;
pub mod checkpoint;
pub mod checkpointed;
pub mod config;
pub mod data;
pub mod distributed;
pub mod error;
pub mod fsutil;
pub mod fused_ce;
pub mod fused_head;
mod grads;
pub mod grpo;
pub mod lora;
pub mod loss;
pub mod manifest;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod optim_lean;
pub mod optim_state;
pub mod params;
pub mod plan;
mod plan_render;
pub mod plan_shape;
pub mod merge;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use distributed::{train_data_parallel, train_grpo_data_parallel, DistributedOptions};
pub use grpo::{train_grpo, GrpoConfig, GrpoSummary};
pub use error::{Result, StudentError};
pub use trainer::{read_metrics, train, RunOptions, TrainSummary};
