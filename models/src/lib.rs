//! Burn implementations of the decoder architectures distill runs (Qwen2/Qwen2.5, Llama 3/3.1,
//! DeepSeek-V3/R1), their Hugging Face checkpoint IO, and KV-cache generation.
//!
//! This crate sees token ids only, never text: tokenizers, chat templates and stop strings live
//! in `datasets`. Everything is generic over `B: Backend`; only the CLI names a backend.
//!
//! Entry points:
//! * [`load_model`] / [`save_model`]: HF directory ⇄ [`Model`];
//! * [`CausalLm`]: full-sequence hidden states / logits (training, scoring) and cached forward;
//! * [`generate()`] (batch of prompts) and [`Engine`] (continuous batching for servers).

pub mod attention;
pub mod backend_ext;
pub mod config;
pub mod decoder;
pub mod deepseek;
pub mod engine;
pub mod flash_attention;
pub mod error;
pub mod generate;
pub mod kv_cache;
pub mod layers;
pub mod layerwise;
pub mod lm;
pub mod loader;
pub mod model;
pub mod plan;
pub mod rope;
pub mod sampling;
pub mod save;
pub mod weights;

pub use config::{Architecture, GenerationConfig, ModelConfig, RopeScaling};
pub use engine::{Engine, EngineConfig, RequestId, StepEvent};
pub use error::ModelError;
pub use generate::{generate, generate_requests, FinishReason, GenerationOutput, GenerationRequest, StopCheck};
pub use layerwise::{AttentionImpl, AttentionInputs, LayerCtx, LayerwiseLm};
pub use lm::{AttentionLayout, CachedInput, CausalLm, ForwardInput, HiddenStates, KvCache, OutputProjection};
pub use loader::{load_model, load_model_with, random_model, LoadedModel};
pub use model::{Model, ModelCache};
pub use sampling::{SampledToken, Sampler, SamplingParams};
pub use save::{named_parameters, save_model, write_safetensors, SaveOptions};
pub use weights::{CheckpointWeights, RandomWeights, SafetensorsFiles, WeightSource};

/// Re-exported so dependants name dtypes without depending on burn paths.
pub use burn::tensor::DType;
