//! `load_model`: a HF checkpoint directory → a ready [`Model`] on a device.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::{DType, ElementConversion};

use crate::config::{GenerationConfig, ModelConfig};
use crate::error::ModelError;
use crate::model::Model;
use crate::weights::{CheckpointWeights, RandomWeights, SafetensorsFiles};

/// A loaded checkpoint: the model plus everything around it the caller needs.
#[derive(Debug)]
pub struct LoadedModel<B: Backend> {
    /// The network.
    pub model: Model<B>,
    /// Parsed config.json.
    pub config: ModelConfig,
    /// Parsed generation_config.json (or defaults from config.json).
    pub generation: GenerationConfig,
    /// Tensors in the files that the architecture did not use (also logged as a warning).
    pub unused_tensors: Vec<String>,
    /// The directory it came from.
    pub dir: PathBuf,
}

/// Loads `dir` (config.json, generation_config.json, model.safetensors or an index + shards)
/// onto `device`, casting floats to `dtype` (F32, F16 or BF16).
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device, dtype: DType) -> Result<LoadedModel<B>, ModelError> {
    load_model_with(dir, device, dtype, |_| Ok(()))
}

/// Like [`load_model`], but lets the caller prepare the opened files first (install a
/// [`crate::weights::DtypeDecoder`] for FP8 checkpoints).
pub fn load_model_with<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
    prepare: impl FnOnce(&mut SafetensorsFiles) -> Result<(), ModelError>,
) -> Result<LoadedModel<B>, ModelError> {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(ModelError::InvalidInput(format!("compute dtype must be f32, f16 or bf16, got {dtype:?}")));
    }
    let config = ModelConfig::from_dir(dir)?;
    config.check_fits_in_memory(dtype.size(), &crate::config::config_path(dir))?;
    let generation = GenerationConfig::from_dir(dir, &config)?;
    let mut files = SafetensorsFiles::open(dir)?;
    if config.architecture == crate::config::Architecture::DeepseekV3 {
        // DeepSeek ships FP8 (e4m3 + block scales) checkpoints; dequantise them per tensor.
        let block = crate::deepseek::fp8_block_size(&config.raw);
        files.set_decoder(crate::deepseek::fp8_decoder(block));
    }
    prepare(&mut files)?;
    let mut weights = CheckpointWeights::<B>::new(&files, device, dtype);
    let model = Model::<B>::load(&config, &mut weights)?;
    let unused_tensors = files.unused();
    if !unused_tensors.is_empty() {
        let shown: Vec<&str> = unused_tensors.iter().take(8).map(String::as_str).collect();
        tracing::warn!(
            dir = %dir.display(),
            count = unused_tensors.len(),
            "checkpoint tensors not used by {}: {}{}",
            config.architecture.class_name(),
            shown.join(", "),
            if unused_tensors.len() > shown.len() { ", …" } else { "" }
        );
    }
    warn_non_finite(&model, dir);
    Ok(LoadedModel { model, config, generation, unused_tensors, dir: dir.to_path_buf() })
}

/// Warns about weights holding NaN or infinity (a corrupt or diverged checkpoint generates
/// garbage without any other sign), naming up to eight of them.
fn warn_non_finite<B: Backend>(model: &Model<B>, dir: &Path) {
    /// Module path as HF names (enum wrappers skipped, as in `save::named_parameters`).
    struct Scan {
        path: crate::save::HfPath,
        bad: Vec<String>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Scan {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let t = param.val();
            let any = |b: Tensor<B, D, Bool>| b.any().int().into_scalar().elem::<i64>() != 0;
            if any(t.clone().is_nan()) || any(t.is_inf()) {
                self.bad.push(self.path.name());
            }
        }
    }
    let mut scan = Scan { path: Default::default(), bad: Vec::new() };
    burn::module::Module::visit(model, &mut scan);
    if !scan.bad.is_empty() {
        let shown: Vec<&str> = scan.bad.iter().take(8).map(String::as_str).collect();
        tracing::warn!(
            dir = %dir.display(),
            count = scan.bad.len(),
            "weights hold NaN or infinite values (the model will generate garbage): {}{}",
            shown.join(", "),
            if scan.bad.len() > shown.len() { ", …" } else { "" }
        );
    }
}

/// Burn draws random tensors from one generator per backend (process-wide on Flex), so two
/// threads building random models at once — data-parallel peers in one process — would
/// interleave their draws: each peer would start from other weights, and those would change
/// from run to run. Seeding and drawing under this lock makes a random init a function of its
/// seed alone.
static RANDOM_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A freshly initialised model for `config` (norms 1, biases 0, other weights
/// `N(0, std²)`), seeded through the backend RNG: benchmarks and training from scratch.
pub fn random_model<B: Backend>(
    config: &ModelConfig,
    device: &B::Device,
    dtype: DType,
    std: f64,
    seed: u64,
) -> Result<Model<B>, ModelError> {
    config.check_fits_in_memory(dtype.size(), std::path::Path::new("config"))?;
    let _draws = RANDOM_INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(device, seed);
    let mut w = RandomWeights::<B>::new(device, dtype, std, config.tie_word_embeddings);
    Model::<B>::load(config, &mut w)
}
