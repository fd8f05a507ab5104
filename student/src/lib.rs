//! The SFT / logit-distillation trainer for student models.
//!
//! Data flows in as trace / messages / pre-tokenized files, is rendered with the student's
//! chat template and packed by `datasets::sft`, and is trained here with PyTorch-exact AdamW,
//! global-norm clipping, gradient accumulation and chunked cross-entropy. Checkpoints are
//! Hugging Face directories (written by `models`) plus the trainer state needed to resume
//! bit-for-bit on the same loss curve.
//!
//! The trainer is assembled from parts ([`trainer`]: setup, policy step, eval, records,
//! saving); what a micro-batch's loss is lives behind one seam, [`objective::Objective`]
//! (cross-entropy, logit distillation), which starts from final-norm hidden states.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod fsutil;
pub mod fused_ce;
pub mod lora;
pub mod loss;
pub mod manifest;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod params;
pub mod merge;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, StudentError};
pub use trainer::{read_metrics, train, RunOptions, TrainSummary};
