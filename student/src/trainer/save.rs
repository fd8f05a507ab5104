//! Writing models: `checkpoint-<step>/` (f32 master weights or PEFT adapters, tokenizer,
//! optimizer moments, trainer state last) and `final/` (LoRA merged, in the save dtype).

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use models::{GenerationConfig, ModelConfig, SaveOptions};

use super::policy::Policy;
use crate::checkpoint::{self, TrainerState, OPTIMIZER_FILE, STATE_FILE};
use crate::config::TrainDtype;
use crate::error::{Result, StudentError};

/// What every saved model directory of a run shares.
pub struct Saver<'a> {
    /// The run directory (`output.dir`).
    pub out: &'a Path,
    /// `config.json` of the trained model.
    pub model_config: &'a ModelConfig,
    /// `generation_config.json` (EOS ids extended by the data when needed).
    pub generation: &'a GenerationConfig,
    /// Tokenizer files to copy next to the weights.
    pub tok_dir: Option<&'a Path>,
    /// Largest safetensors shard.
    pub max_shard_bytes: u64,
    /// Base model named in PEFT adapter configs.
    pub base_name: String,
}

impl Saver<'_> {
    /// Writes `checkpoint-<step>/`: HF weights (f32 master weights, or the PEFT adapters for
    /// LoRA runs), tokenizer files, optimizer moments, and the trainer state last (a directory
    /// without it is incomplete and ignored by `--resume`); then prunes to `keep_last`.
    /// `extra` writes objective-specific files into the directory before the state.
    pub fn checkpoint<AB: AutodiffBackend>(
        &self,
        policy: &Policy<AB>,
        state: &TrainerState,
        keep_last: usize,
        extra: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let dir = checkpoint::checkpoint_dir(self.out, state.step);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| StudentError::io(&dir, e))?;
        }
        match &policy.lora {
            None => self.save_weights(&dir, &policy.model.valid(), None)?,
            Some(l) => {
                std::fs::create_dir_all(&dir).map_err(|e| StudentError::io(&dir, e))?;
                l.save_peft(&dir, &self.base_name)?;
            }
        }
        copy_tokenizer(self.tok_dir, &dir)?;
        policy.opt.save(&dir.join(OPTIMIZER_FILE))?;
        extra(&dir)?;
        crate::fsutil::write_json(&dir.join(STATE_FILE), state)?;
        tracing::info!(dir = %dir.display(), step = state.step, "checkpoint saved");
        checkpoint::prune_checkpoints(self.out, keep_last)?;
        Ok(())
    }

    /// Writes `final/`: the merged model in `save_dtype` (default: the source checkpoint's
    /// `torch_dtype`), PEFT adapters too for LoRA runs, tokenizer and trainer state.
    pub fn final_model<AB: AutodiffBackend>(&self, policy: &Policy<AB>, state: &TrainerState, save_dtype: Option<TrainDtype>) -> Result<PathBuf> {
        let final_dir = self.out.join("final");
        let dtype = match save_dtype {
            Some(TrainDtype::Bf16) => Some(DType::BF16),
            Some(TrainDtype::F32) => None,
            None if self.model_config.torch_dtype.as_deref() == Some("bfloat16") => Some(DType::BF16),
            None => None,
        };
        let model = match &policy.lora {
            Some(l) => crate::lora::merge(policy.model.valid(), &l.host_pairs(), l.scale),
            None => policy.model.valid(),
        };
        self.save_weights(&final_dir, &model, dtype)?;
        if let Some(l) = &policy.lora {
            l.save_peft(&final_dir, &self.base_name)?;
        }
        copy_tokenizer(self.tok_dir, &final_dir)?;
        crate::fsutil::write_json(&final_dir.join(STATE_FILE), state)?;
        Ok(final_dir)
    }

    fn save_weights<B: burn::tensor::backend::Backend>(&self, dir: &Path, model: &models::Model<B>, dtype: Option<DType>) -> Result<()> {
        let opts = SaveOptions {
            max_shard_bytes: self.max_shard_bytes,
            dtype,
            overwrite: true,
        };
        models::save_model(dir, model, self.model_config, self.generation, &opts)
            .map_err(|e| StudentError::model(format!("saving the model to {}", dir.display()), e))
    }
}

/// Copies the tokenizer files of `src` (when it has any) into `dst`.
pub fn copy_tokenizer(src: Option<&Path>, dst: &Path) -> Result<()> {
    if let Some(src) = src {
        if src.join("tokenizer.json").is_file() || src.join("tokenizer_config.json").is_file() {
            datasets::tokenizer::copy_tokenizer_files(src, dst)
                .map_err(|e| StudentError::dataset(format!("copying tokenizer files to {}", dst.display()), e))?;
        }
    }
    Ok(())
}
