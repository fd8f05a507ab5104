//! Building the model backend an eval config names, through the `inference` crate, so the
//! teacher and every student are scored through the same client and engine code.

use std::path::Path;
use std::sync::Arc;

use inference::native::{NativeBackend, NativeModel};
use inference::Backend;

use crate::config::{BackendKind, EvalConfig, NativeDType};
use crate::EvalError;

/// The OpenAI-compatible client for `cfg` (`model.openai` with `model` = `model.checkpoint`
/// and the in-flight limit = `model.concurrency`).
pub fn openai_backend(cfg: &EvalConfig) -> Result<Arc<dyn Backend>, EvalError> {
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

/// Loads `model.checkpoint` into the in-process engine on `device` in `model.native.dtype`.
pub fn native_backend<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &EvalConfig,
) -> Result<Arc<dyn Backend>, EvalError> {
    let model = NativeModel::load::<B>(
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
    .map_err(|source| EvalError::Inference { checkpoint: cfg.model.checkpoint.clone(), source })?;
    Ok(Arc::new(NativeBackend::new(model)))
}

/// The backend `cfg` names; the native one runs on `device` with Burn backend `B`.
pub fn build_backend<B: burn::prelude::Backend>(
    device: B::Device,
    cfg: &EvalConfig,
) -> Result<Arc<dyn Backend>, EvalError> {
    match cfg.model.backend {
        BackendKind::Openai => openai_backend(cfg),
        BackendKind::Native => native_backend::<B>(device, cfg),
    }
}
