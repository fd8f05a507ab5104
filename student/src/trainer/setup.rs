//! Run setup shared by every objective: tokenizer, starting model, resume point, compute
//! dtype, the trainable [`Policy`] (LoRA, optimizer moments) and the trainer state.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::DType;
use datasets::TextTokenizer;
use models::{GenerationConfig, Model, ModelConfig};

use super::policy::Policy;
use crate::checkpoint::{self, TrainerState, OPTIMIZER_FILE, STATE_SCHEMA_VERSION};
use crate::config::{LoraSection, ModelInit, ModelSection, OptimSection, TrainDtype};
use crate::error::{Result, StudentError};
use crate::lora::Lora;
use crate::optim::{AdamW, AdamWParams};

/// The tokenizer in `dir` when it has a `tokenizer.json` (random-init runs on token files may
/// have none).
pub fn load_tokenizer(dir: Option<&Path>) -> Result<Option<TextTokenizer>> {
    match dir {
        Some(d) if d.join("tokenizer.json").is_file() => TextTokenizer::from_dir(d)
            .map(Some)
            .map_err(|e| StudentError::dataset(format!("loading the tokenizer in {}", d.display()), e)),
        _ => Ok(None),
    }
}

/// The model a run starts from, with its configs.
pub struct StartModel<AB: Backend> {
    /// The weights (f32).
    pub model: Model<AB>,
    /// Its parsed `config.json`.
    pub config: ModelConfig,
    /// Its `generation_config.json` (or one derived from the config for random init).
    pub generation: GenerationConfig,
}

/// The starting model: a checkpoint, or random init from an architecture.
pub fn initial_model<AB: AutodiffBackend>(section: &ModelSection, seed: u64, device: &AB::Device) -> Result<StartModel<AB>> {
    match section.init {
        ModelInit::Pretrained => {
            let dir = section.path.as_ref().expect("validated");
            let loaded = models::load_model::<AB>(dir, device, DType::F32)
                .map_err(|e| StudentError::model(format!("loading the model {}", dir.display()), e))?;
            Ok(StartModel {
                model: loaded.model,
                config: loaded.config,
                generation: loaded.generation,
            })
        }
        ModelInit::Random => {
            let config = match (&section.config, &section.arch) {
                (Some(p), _) => ModelConfig::from_file(p).map_err(|e| StudentError::model(format!("reading {}", p.display()), e))?,
                (None, Some(arch)) => {
                    let raw = serde_json::to_value(arch).map_err(|e| StudentError::Config {
                        path: "[model.arch]".into(),
                        msg: e.to_string(),
                    })?;
                    ModelConfig::from_value(raw, Path::new("[model.arch]")).map_err(|e| StudentError::model("parsing [model.arch]", e))?
                }
                (None, None) => unreachable!("validated"),
            };
            let model = models::random_model::<AB>(&config, device, DType::F32, 0.02, seed)
                .map_err(|e| StudentError::model("building the random-init model", e))?;
            let generation = GenerationConfig {
                bos_token_id: config.bos_token_id,
                eos_token_ids: config.eos_token_ids.clone(),
                pad_token_id: config.pad_token_id,
                ..Default::default()
            };
            Ok(StartModel { model, config, generation })
        }
    }
}

/// Where a run continues from.
#[derive(Debug, Default)]
pub struct Resume {
    /// The checkpoint (step, directory) resumed from.
    pub from: Option<(u64, PathBuf)>,
    /// Its trainer state.
    pub state: Option<TrainerState>,
}

impl Resume {
    /// The newest checkpoint in `out` when `opts.resume` (a fresh start when there is none).
    /// Its config must match `resolved` (see [`super::outdir::check_config`]) unless
    /// `opts.allow_config_change`.
    pub fn find(out: &Path, opts: &super::RunOptions, resolved: &str, config_sha: &str) -> Result<Self> {
        if !opts.resume {
            return Ok(Self::default());
        }
        let from = checkpoint::latest_checkpoint(out)?;
        let Some((_, dir)) = &from else {
            tracing::info!(dir = %out.display(), "resume requested but no checkpoint exists yet: starting fresh");
            return Ok(Self::default());
        };
        let state = checkpoint::read_state(dir)?;
        super::outdir::check_config(dir, &state.config_sha256, resolved, config_sha, opts.allow_config_change)?;
        Ok(Self { from, state: Some(state) })
    }

    /// The checkpoint directory, when resuming.
    pub fn dir(&self) -> Option<&Path> {
        self.from.as_ref().map(|f| f.1.as_path())
    }

    /// Optimizer steps already done.
    pub fn start_step(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.step)
    }

    /// The trainer state to continue (or a fresh one), stamped with this run's total steps
    /// and config hash.
    pub fn trainer_state(&self, total_steps: u64, seed: u64, config_sha: &str) -> TrainerState {
        let mut s = self.state.clone().unwrap_or(TrainerState {
            schema_version: STATE_SCHEMA_VERSION,
            step: 0,
            total_steps,
            rows_consumed: 0,
            epoch: 0,
            seed,
            loss_tokens_seen: 0,
            input_tokens_seen: 0,
            last_lr: 0.0,
            config_sha256: config_sha.to_string(),
        });
        s.total_steps = total_steps;
        s.config_sha256 = config_sha.to_string();
        s
    }
}

/// bf16 compute when asked for and supported; f32 otherwise (with a warning on CPU).
pub fn compute_dtype(dtype: TrainDtype, bf16_supported: bool) -> Option<DType> {
    match dtype {
        TrainDtype::F32 => None,
        TrainDtype::Bf16 if bf16_supported => Some(DType::BF16),
        TrainDtype::Bf16 => {
            tracing::warn!("train.dtype = \"bf16\" is not supported on this backend; computing in f32");
            None
        }
    }
}

/// The trainable policy: the resumed master weights (full fine-tuning) or fresh/resumed LoRA
/// adapters over frozen weights, and AdamW with its moments restored when resuming.
pub fn build_policy<AB: AutodiffBackend>(
    mut model: Model<AB>,
    lora: Option<&LoraSection>,
    optim: &OptimSection,
    resume: &Resume,
    seed: u64,
    compute_dtype: Option<DType>,
    device: &AB::Device,
) -> Result<Policy<AB>> {
    if let (Some(dir), None) = (resume.dir(), lora) {
        let loaded = models::load_model::<AB>(dir, device, DType::F32)
            .map_err(|e| StudentError::model(format!("loading the checkpoint {}", dir.display()), e))?;
        model = loaded.model;
    }
    let lora = match lora {
        None => None,
        Some(section) => {
            if section.dropout > 0.0 {
                return Err(StudentError::Config {
                    path: "[lora]".into(),
                    msg: "lora.dropout > 0 is not supported: adapters act in weight space (W + s·B·A), \
                          which has no per-token input to drop; set 0"
                        .into(),
                });
            }
            model = model.no_grad();
            Some(match resume.dir() {
                Some(dir) => Lora::<AB>::load_peft(&model, section, dir, device)?,
                None => Lora::<AB>::init(&model, section, seed, device)?,
            })
        }
    };
    let mut opt = AdamW::<AB::InnerBackend>::new(AdamWParams {
        betas: optim.betas,
        eps: optim.eps,
        weight_decay: optim.weight_decay,
        no_decay: optim.no_decay.clone(),
        kind: optim.kind,
        state_dtype: optim.state_dtype,
        seed,
    });
    if let (Some(dir), Some(s)) = (resume.dir(), &resume.state) {
        opt.load(&dir.join(OPTIMIZER_FILE), s.step, device)?;
    }
    Ok(Policy {
        model,
        lora,
        opt,
        compute_dtype,
        checkpointing: None,
    })
}
