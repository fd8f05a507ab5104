//! Native DeepSeek-V3 / R1 (`DeepseekV3ForCausalLM`): Multi-head Latent Attention with a
//! compressed-latent KV cache and decode-time weight absorption, DeepSeek MoE routing
//! (sigmoid + correction bias, group-limited top-k, shared experts) with real token dispatch,
//! DeepSeek YaRN, and FP8 (e4m3 + 128×128 block scales) checkpoints.
//!
//! Matches transformers' `DeepseekV3ForCausalLM` numerically (see `models/tests/deepseek*.rs`).

pub mod attention;
pub mod cache;
pub mod config;
pub mod fp8;
pub mod layers;
pub mod loader;
pub mod model;
pub mod moe;
pub mod params;
pub mod rope;

pub use cache::{KvLayout, MlaCache, MlaCacheShape};
pub use fp8::{fp8_block_size, fp8_decoder};
pub use config::{DeepseekV3Config, DeepseekV3Parts, ScoringFunc, TopkMethod, YarnScaling};
pub use model::{DeepseekTrace, DeepseekV3ForCausalLM};
pub use moe::RouterChoices;
pub use params::{deepseek_param_report, ParamReport};
