//! Writing models: `checkpoint-<step>/` (f32 master weights or PEFT adapters, tokenizer,
//! optimizer moments, the resolved config, trainer state last) and `final/` (LoRA merged, in
//! the save dtype). Each is written as one unit: built in a temporary sibling
//! (`.checkpoint-<step>.tmp-<pid>`, `.final.tmp-<pid>`), fsync'd, then renamed into place, so a
//! kill leaves either the complete directory or a temporary that the next run removes.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use models::{GenerationConfig, ModelConfig, SaveOptions};

use super::policy::Policy;
use crate::checkpoint::{self, TrainerState, CONFIG_FILE, OPTIMIZER_FILE, STATE_FILE};
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
    /// The resolved config, saved in each checkpoint so a resume can name changed keys.
    pub resolved_config: &'a str,
}

impl Saver<'_> {
    /// Writes `checkpoint-<step>/`: HF weights (f32 master weights, or the PEFT adapters for
    /// LoRA runs), tokenizer files, optimizer moments, the resolved config and the trainer
    /// state, all in a temporary directory published with one rename; then prunes to
    /// `keep_last`. `extra` writes objective-specific files into the directory.
    pub fn checkpoint<AB: AutodiffBackend>(
        &self,
        policy: &Policy<AB>,
        state: &TrainerState,
        keep_last: usize,
        extra: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let dir = checkpoint::checkpoint_dir(self.out, state.step);
        let tmp = self.temp_dir(&format!("checkpoint-{}", state.step))?;
        let written = (|| {
            match &policy.lora {
                None => self.save_weights(&tmp, &policy.model.valid(), None)?,
                Some(l) => {
                    std::fs::create_dir_all(&tmp).map_err(|e| StudentError::io(&tmp, e))?;
                    l.save_peft(&tmp, &self.base_name)?;
                }
            }
            copy_tokenizer(self.tok_dir, &tmp)?;
            policy.opt.save(&tmp.join(OPTIMIZER_FILE))?;
            crate::fsutil::write_atomic(&tmp.join(CONFIG_FILE), self.resolved_config.as_bytes())?;
            extra(&tmp)?;
            crate::fsutil::write_json(&tmp.join(STATE_FILE), state)?;
            crate::fsutil::publish_dir(&tmp, &dir)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        tracing::info!(dir = %dir.display(), step = state.step, "checkpoint saved");
        checkpoint::prune_checkpoints(self.out, keep_last)?;
        Ok(())
    }

    /// `<out>/.<name>.tmp-<pid>`, emptied: where a directory is built before its rename.
    fn temp_dir(&self, name: &str) -> Result<PathBuf> {
        let tmp = self.out.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| StudentError::io(&tmp, e))?;
        }
        Ok(tmp)
    }

    /// Writes `<out>/<name>/`: the policy (LoRA merged) in HF layout in f32 with the
    /// tokenizer, published with one rename — what a rollout server reloads after a step.
    pub fn export<AB: AutodiffBackend>(&self, policy: &Policy<AB>, name: &str) -> Result<PathBuf> {
        let dir = self.out.join(name);
        let model = match &policy.lora {
            Some(l) => crate::lora::merge(policy.model.valid(), &l.host_pairs(), l.scale),
            None => policy.model.valid(),
        };
        let tmp = self.temp_dir(name)?;
        let written = (|| {
            self.save_weights(&tmp, &model, None)?;
            copy_tokenizer(self.tok_dir, &tmp)?;
            crate::fsutil::publish_dir(&tmp, &dir)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(dir)
    }

    /// Writes `final/`: the merged model in `save_dtype` (default: the source checkpoint's
    /// `torch_dtype`), PEFT adapters too for LoRA runs, tokenizer and trainer state.
    pub fn final_model<AB: AutodiffBackend>(&self, policy: &Policy<AB>, state: &TrainerState, save_dtype: Option<TrainDtype>) -> Result<PathBuf> {
        let final_dir = self.out.join("final");
        let dtype = match save_dtype {
            Some(TrainDtype::Bf16) => Some(DType::BF16),
            // Explicit: weights trained in bf16 (no f32 master copy) are widened on save.
            Some(TrainDtype::F32) => Some(DType::F32),
            None if self.model_config.torch_dtype.as_deref() == Some("bfloat16") => Some(DType::BF16),
            None => None,
        };
        let model = match &policy.lora {
            Some(l) => crate::lora::merge(policy.model.valid(), &l.host_pairs(), l.scale),
            None => policy.model.valid(),
        };
        let tmp = self.temp_dir("final")?;
        let written = (|| {
            self.save_weights(&tmp, &model, dtype)?;
            if let Some(l) = &policy.lora {
                l.save_peft(&tmp, &self.base_name)?;
            }
            copy_tokenizer(self.tok_dir, &tmp)?;
            crate::fsutil::write_json(&tmp.join(STATE_FILE), state)?;
            crate::fsutil::publish_dir(&tmp, &final_dir)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
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
