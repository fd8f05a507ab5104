//! Weight reloads from disk: SGLang's `POST /update_weights_from_disk` with
//! `{"model_path": "<HF checkpoint dir>"}`, answered `{"success": bool, "message": …}`. An RL
//! trainer (`distill student grpo` with `[rollouts] source = "openai"`) saves its policy after
//! each optimizer step and calls this so the next rollouts come from the new weights.
//!
//! The new checkpoint must have the served architecture (same shapes and vocabulary; the
//! tokenizer stays the one loaded at start). Requests running when the call arrives finish on
//! the old weights; the swap happens when they are done and later requests wait for it. On any
//! error the old weights keep serving.

use std::path::PathBuf;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::native::NativeModel;

/// The route, as SGLang spells it.
pub const UPDATE_WEIGHTS_ROUTE: &str = "/update_weights_from_disk";

/// Request body of [`UPDATE_WEIGHTS_ROUTE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWeightsRequest {
    /// HF checkpoint directory (config.json + safetensors) readable by the server.
    pub model_path: PathBuf,
    /// SGLang's load format; only `auto` (or absent) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_format: Option<String>,
}

/// Reply of [`UPDATE_WEIGHTS_ROUTE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateWeightsResponse {
    /// Whether the new weights now serve.
    pub success: bool,
    /// What happened.
    pub message: String,
}

/// Handles one reload request body; returns the HTTP status and the reply.
pub async fn update_weights_from_disk(
    model: &NativeModel,
    body: &[u8],
) -> (StatusCode, UpdateWeightsResponse) {
    let fail = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            UpdateWeightsResponse {
                success: false,
                message,
            },
        )
    };
    let req: UpdateWeightsRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "invalid body (expected {{\"model_path\": \"...\"}}): {e}"
            ))
        }
    };
    if let Some(f) = req.load_format.as_deref().filter(|f| *f != "auto") {
        return fail(format!("load_format `{f}` is not supported; use \"auto\""));
    }
    if !req.model_path.join("config.json").is_file() {
        return fail(format!(
            "{}: not a checkpoint directory (no config.json)",
            req.model_path.display()
        ));
    }
    let started = std::time::Instant::now();
    match model.reload(req.model_path.clone()).await {
        Ok(()) => (
            StatusCode::OK,
            UpdateWeightsResponse {
                success: true,
                message: format!(
                    "Succeeded to update model weights from {} in {:.2}s.",
                    req.model_path.display(),
                    started.elapsed().as_secs_f64()
                ),
            },
        ),
        Err(e) => fail(format!(
            "Failed to update model weights: {}",
            crate::error_chain(&e)
        )),
    }
}
