//! Building the model backend an eval config names, through the `inference` crate, so the
//! teacher and every student are scored through the same client and engine code. With a
//! thinking budget (`protocol.max_thinking_tokens` / `min_thinking_tokens`) the backend is
//! wrapped in s1 budget forcing: in the engine with token ids (native) or through continuation
//! requests to `/v1/completions` (OpenAI; see [`inference::budget_openai`]).

use std::path::Path;
use std::sync::Arc;

use inference::budget_native::NativeBudgetBackend;
use inference::budget_openai::OpenAiBudgetBackend;
use inference::native::{NativeBackend, NativeModel};
use inference::Backend;

use crate::config::{BackendKind, EvalConfig, NativeDType};
use crate::EvalError;

/// A model loaded once and served under any protocol: `eval sweep` wraps the same loaded
/// checkpoint (or client) in a different thinking budget per run.
#[derive(Clone)]
pub enum LoadedModel {
    /// The in-process engine.
    Native(NativeModel),
    /// An OpenAI-compatible client.
    Openai(Arc<dyn Backend>),
}

impl LoadedModel {
    /// Loads what `cfg.model` names (the native checkpoint on `device`).
    pub fn load<B: burn::prelude::Backend>(device: B::Device, cfg: &EvalConfig) -> Result<Self, EvalError> {
        Ok(match cfg.model.backend {
            BackendKind::Openai => LoadedModel::Openai(openai_client(cfg)?),
            BackendKind::Native => LoadedModel::Native(native_model::<B>(device, cfg)?),
        })
    }

    /// The backend for `cfg`'s protocol: plain, or under its thinking budget.
    pub fn backend(&self, cfg: &EvalConfig) -> Result<Arc<dyn Backend>, EvalError> {
        let err = |source| EvalError::Inference { checkpoint: cfg.model.checkpoint.clone(), source };
        let Some(budget) = cfg.protocol.thinking_budget() else {
            return Ok(match self {
                LoadedModel::Native(m) => Arc::new(NativeBackend::new(m.clone())),
                LoadedModel::Openai(c) => c.clone(),
            });
        };
        Ok(match self {
            LoadedModel::Native(m) => Arc::new(NativeBudgetBackend::new(m.clone(), budget).map_err(err)?),
            LoadedModel::Openai(c) => {
                let dir = cfg.model.tokenizer.as_deref().ok_or_else(|| {
                    EvalError::Invalid("a thinking budget on the openai backend needs `model.tokenizer`".into())
                })?;
                let tok = datasets::TextTokenizer::from_dir(dir).map_err(|e| err(e.into()))?;
                Arc::new(OpenAiBudgetBackend::new(c.clone(), Arc::new(tok), budget).map_err(err)?)
            }
        })
    }
}

/// The OpenAI-compatible backend for `cfg`: the client, under the thinking budget when one is
/// set.
pub fn openai_backend(cfg: &EvalConfig) -> Result<Arc<dyn Backend>, EvalError> {
    LoadedModel::Openai(openai_client(cfg)?).backend(cfg)
}

/// The OpenAI-compatible client for `cfg` (`model.openai` with `model` = `model.checkpoint`
/// and the in-flight limit = `model.concurrency`).
fn openai_client(cfg: &EvalConfig) -> Result<Arc<dyn Backend>, EvalError> {
    let mut oc = cfg.model.openai.clone();
    oc.model = cfg.model.checkpoint.clone();
    oc.concurrency = cfg.model.concurrency;
    let b = inference::OpenAiBackend::new(oc).map_err(|source| EvalError::Inference {
        checkpoint: cfg.model.checkpoint.clone(),
        source,
    })?;
    Ok(Arc::new(b))
}

/// The engine sizing a native run uses.
pub fn engine_config(cfg: &EvalConfig) -> models::EngineConfig {
    models::EngineConfig {
        max_batch: cfg.model.native.max_batch.unwrap_or(cfg.model.concurrency),
        max_seq_len: cfg
            .model
            .native
            .max_seq_len
            .unwrap_or(cfg.protocol.max_tokens as usize + 2048),
        ..Default::default()
    }
}

/// Loads `model.checkpoint` into the in-process engine on `device` in `model.native.dtype`
/// (under the thinking budget when one is set).
pub fn native_backend<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &EvalConfig,
) -> Result<Arc<dyn Backend>, EvalError> {
    LoadedModel::Native(native_model::<B>(device, cfg)?).backend(cfg)
}

fn native_model<B: burn::prelude::Backend>(device: B::Device, cfg: &EvalConfig) -> Result<NativeModel, EvalError> {
    NativeModel::load::<B>(
        Path::new(&cfg.model.checkpoint),
        device,
        match cfg.model.native.dtype {
            NativeDType::F32 => burn::tensor::DType::F32,
            NativeDType::Bf16 => burn::tensor::DType::BF16,
            NativeDType::F16 => burn::tensor::DType::F16,
        },
        engine_config(cfg),
        Some(cfg.model.display_name()),
    )
    .map_err(|source| EvalError::Inference { checkpoint: cfg.model.checkpoint.clone(), source })
}

/// The backend `cfg` names; the native one runs on `device` with Burn backend `B`.
pub fn build_backend<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &EvalConfig,
) -> Result<Arc<dyn Backend>, EvalError> {
    LoadedModel::load::<B>(device, cfg)?.backend(cfg)
}
