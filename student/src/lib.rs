//! The SFT / logit-distillation trainer for student models.
//!
//! Data flows in as trace / messages / pre-tokenized files, is rendered with the student's
//! chat template and packed by `datasets::sft`, and is trained here with PyTorch-exact AdamW,
//! global-norm clipping, gradient accumulation and chunked cross-entropy. Checkpoints are
//! Hugging Face directories (written by `models`) plus the trainer state needed to resume
//! bit-for-bit on the same loss curve.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod distributed;
pub mod error;
pub mod fsutil;
pub mod fused_ce;
pub mod lora;
pub mod loss;
pub mod manifest;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod merge;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use distributed::{train_data_parallel, DistributedOptions};
pub use error::{Result, StudentError};
pub use trainer::{read_metrics, train, RunOptions, TrainSummary};
