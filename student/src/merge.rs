//! `distill student merge`: base HF checkpoint + PEFT LoRA adapter → one merged HF checkpoint
//! (`W + (lora_alpha / r)·B·A` for every adapted weight) that transformers and vLLM load
//! without PEFT.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::DType;
use models::SaveOptions;

use crate::error::{Result, StudentError};

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    /// Weights that received a delta.
    pub merged: usize,
    /// α / r used.
    pub scale: f64,
}

/// Merges the adapter in `adapter_dir` (`adapter_config.json` + `adapter_model.safetensors`)
/// into the model in `base_dir`, writing `out_dir` (weights in `dtype`, default the base's).
pub fn merge_adapter<B: Backend>(
    base_dir: &Path,
    adapter_dir: &Path,
    out_dir: &Path,
    device: &B::Device,
    dtype: Option<DType>,
) -> Result<MergeSummary> {
    let cfg_path = adapter_dir.join("adapter_config.json");
    let acfg: serde_json::Value = crate::fsutil::read_json(&cfg_path)?;
    let num = |k: &str| {
        acfg.get(k).and_then(|v| v.as_f64()).ok_or_else(|| StudentError::Checkpoint {
            path: cfg_path.clone(),
            msg: format!("missing number `{k}`"),
        })
    };
    let (r, alpha) = (num("r")?, num("lora_alpha")?);
    if r <= 0.0 {
        return Err(StudentError::Checkpoint {
            path: cfg_path,
            msg: "r must be > 0".into(),
        });
    }
    let scale = if acfg.get("use_rslora").and_then(|v| v.as_bool()) == Some(true) {
        alpha / r.sqrt()
    } else {
        alpha / r
    };
    let pairs = crate::lora::read_peft(adapter_dir)?;
    let loaded = models::load_model::<B>(base_dir, device, DType::F32)
        .map_err(|e| StudentError::model(format!("loading the base model {}", base_dir.display()), e))?;
    let names: std::collections::HashSet<String> =
        crate::params::list_params(&loaded.model).into_iter().map(|p| p.name).collect();
    if let Some(missing) = pairs.keys().find(|k| !names.contains(*k)) {
        return Err(StudentError::Checkpoint {
            path: adapter_dir.join(crate::checkpoint::ADAPTER_FILE),
            msg: format!("adapter targets {missing}, which {} does not have", base_dir.display()),
        });
    }
    let merged = crate::lora::merge(loaded.model, &pairs, scale);
    let dtype = dtype.or(match loaded.config.torch_dtype.as_deref() {
        Some("bfloat16") => Some(DType::BF16),
        Some("float16") => Some(DType::F16),
        _ => None,
    });
    models::save_model(
        out_dir,
        &merged,
        &loaded.config,
        &loaded.generation,
        &SaveOptions {
            dtype,
            overwrite: true,
            ..SaveOptions::default()
        },
    )
    .map_err(|e| StudentError::model(format!("saving the merged model to {}", out_dir.display()), e))?;
    let tok_src = if adapter_dir.join("tokenizer.json").is_file() { adapter_dir } else { base_dir };
    if tok_src.join("tokenizer.json").is_file() {
        datasets::tokenizer::copy_tokenizer_files(tok_src, out_dir)
            .map_err(|e| StudentError::dataset(format!("copying tokenizer files to {}", out_dir.display()), e))?;
    }
    Ok(MergeSummary {
        merged: pairs.len(),
        scale,
    })
}
