//! LoRA in weight space: each targeted `[out, in]` weight W is used as `W + (α/r)·B·A` with
//! `A [r, in]` and `B [out, r]` trainable and W frozen (PEFT's `lora_A`/`lora_B` layouts and
//! init: A Kaiming-uniform, B zero, so step 0 equals the base model).
//!
//! Why weight space: the adapters then work on every architecture of `models` without hooks in
//! its layers, merging is exact by construction, and the effective weight is rebuilt once per
//! micro-batch (cost `out·in·r` per target — small next to a forward over thousands of tokens).
//! The price: the effective weights of targeted layers exist once more in memory, and adapter
//! dropout (which acts on per-token inputs) has no weight-space equivalent, so `dropout` must be 0.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::LoraSection;
use crate::error::{Result, StudentError};
use crate::params::{list_params, PathStack};

/// One adapter pair.
#[derive(Module, Debug)]
pub struct LoraPair<B: Backend> {
    /// `[r, in]` (PEFT `lora_A.weight`).
    pub lora_a: Param<Tensor<B, 2>>,
    /// `[out, r]` (PEFT `lora_B.weight`).
    pub lora_b: Param<Tensor<B, 2>>,
}

/// The trainable adapters of a model, in target order.
#[derive(Module, Debug)]
pub struct LoraAdapters<B: Backend> {
    /// One pair per target weight.
    pub pairs: Vec<LoraPair<B>>,
}

/// Adapters plus what they attach to.
#[derive(Debug, Clone)]
pub struct Lora<B: Backend> {
    /// Trainable tensors.
    pub adapters: LoraAdapters<B>,
    /// HF names of the adapted weights (`….q_proj.weight`), aligned with `adapters.pairs`.
    pub targets: Vec<String>,
    /// α / r.
    pub scale: f64,
    /// The `[lora]` section they were built from.
    pub section: LoraSection,
}

/// Names of 2-D weights of `model` that `section.target_modules` selects.
pub fn select_targets<B: Backend, M: Module<B>>(model: &M, section: &LoraSection) -> Vec<(String, [usize; 2])> {
    list_params(model)
        .into_iter()
        .filter(|p| p.shape.len() == 2)
        .filter_map(|p| {
            let module = p.name.strip_suffix(".weight")?;
            let last = module.rsplit('.').next()?;
            section
                .target_modules
                .iter()
                .any(|t| t == last)
                .then(|| (p.name.clone(), [p.shape[0], p.shape[1]]))
        })
        .collect()
}

impl<B: Backend> Lora<B> {
    /// Fresh adapters for `model` (A uniform in ±1/√in from `seed`, B zero).
    pub fn init<M: Module<B>>(model: &M, section: &LoraSection, seed: u64, device: &B::Device) -> Result<Self> {
        let targets = select_targets(model, section);
        if targets.is_empty() {
            return Err(StudentError::Config {
                path: "[lora]".into(),
                msg: format!("target_modules {:?} match no 2-D weight of the model", section.target_modules),
            });
        }
        let r = section.rank;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4C6F_5241);
        let pairs = targets
            .iter()
            .map(|(_, [out, inp])| {
                let bound = 1.0 / (*inp as f64).sqrt();
                let a: Vec<f32> = (0..r * inp).map(|_| rng.random_range(-bound..bound) as f32).collect();
                LoraPair {
                    lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [r, *inp]), (device, DType::F32))),
                    lora_b: Param::from_tensor(Tensor::zeros([*out, r], (device, DType::F32))),
                }
            })
            .collect();
        Ok(Self {
            adapters: LoraAdapters { pairs },
            targets: targets.into_iter().map(|t| t.0).collect(),
            scale: section.alpha / r as f64,
            section: section.clone(),
        })
    }

    /// The adapted weights as host data: name → (A, B).
    pub fn host_pairs(&self) -> HashMap<String, (TensorData, TensorData)> {
        self.targets
            .iter()
            .zip(&self.adapters.pairs)
            .map(|(n, p)| (n.clone(), (p.lora_a.val().into_data(), p.lora_b.val().into_data())))
            .collect()
    }

    /// Returns `model` with every target weight replaced by `W + scale·B·A` (differentiable
    /// in A and B) and, with `cast`, every float parameter cast to that dtype.
    pub fn apply<M: Module<B>>(&self, model: M, cast: Option<DType>) -> M {
        let map: HashMap<&str, &LoraPair<B>> =
            self.targets.iter().map(String::as_str).zip(self.adapters.pairs.iter()).collect();
        let mut m = ViewMapper::<B> {
            stack: PathStack::default(),
            lora: Some((&map, self.scale)),
            cast,
        };
        model.map(&mut m)
    }

    /// Writes the adapters in PEFT's layout (`adapter_model.safetensors` +
    /// `adapter_config.json`), loadable with `PeftModel.from_pretrained(base, dir)`.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<()> {
        let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (name, (a, b)) in self.host_pairs() {
            let module = name.strip_suffix(".weight").unwrap_or(&name);
            for (suffix, d) in [("lora_A", a), ("lora_B", b)] {
                let shape = d.shape.clone();
                let v: Vec<f32> = d.iter::<f32>().collect();
                tensors.push((
                    format!("base_model.model.{module}.{suffix}.weight"),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    shape.to_vec(),
                ));
            }
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let file = dir.join(crate::checkpoint::ADAPTER_FILE);
        let err = |msg: String| StudentError::Checkpoint { path: file.clone(), msg };
        let views = tensors
            .iter()
            .map(|(k, b, s)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).map(|v| (k.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
        crate::fsutil::write_atomic(&file, &bytes)?;
        let mut modules: Vec<&String> = self.section.target_modules.iter().collect();
        modules.sort();
        let cfg = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.section.rank,
            "lora_alpha": self.section.alpha,
            "lora_dropout": self.section.dropout,
            "target_modules": modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
        });
        crate::fsutil::write_json(&dir.join("adapter_config.json"), &cfg)
    }

    /// Loads adapters saved by [`Lora::save_peft`] for `model` (targets must match).
    pub fn load_peft<M: Module<B>>(model: &M, section: &LoraSection, dir: &Path, device: &B::Device) -> Result<Self> {
        let mut lora = Self::init(model, section, 0, device)?;
        let host = read_peft(dir)?;
        let file = dir.join(crate::checkpoint::ADAPTER_FILE);
        for (name, pair) in lora.targets.iter().zip(lora.adapters.pairs.iter_mut()) {
            let (a, b) = host.get(name).ok_or_else(|| StudentError::Checkpoint {
                path: file.clone(),
                msg: format!("no adapter for {name}"),
            })?;
            if a.shape != pair.lora_a.val().shape() || b.shape != pair.lora_b.val().shape() {
                return Err(StudentError::Checkpoint {
                    path: file.clone(),
                    msg: format!("{name}: adapter shapes {:?}/{:?} do not fit", a.shape, b.shape),
                });
            }
            pair.lora_a = Param::from_tensor(Tensor::from_data(a.clone(), (device, DType::F32)));
            pair.lora_b = Param::from_tensor(Tensor::from_data(b.clone(), (device, DType::F32)));
        }
        Ok(lora)
    }
}

/// Reads a PEFT adapter file: HF weight name → (A, B).
pub fn read_peft(dir: &Path) -> Result<HashMap<String, (TensorData, TensorData)>> {
    let file = dir.join(crate::checkpoint::ADAPTER_FILE);
    let bytes = std::fs::read(&file).map_err(|e| StudentError::io(&file, e))?;
    let err = |msg: String| StudentError::Checkpoint { path: file.clone(), msg };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let mut parts: HashMap<String, (Option<TensorData>, Option<TensorData>)> = HashMap::new();
    for (key, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::BF16 => view
                .data()
                .chunks_exact(2)
                .map(|c| f32::from_bits((u32::from(u16::from_le_bytes([c[0], c[1]]))) << 16))
                .collect(),
            other => return Err(err(format!("{key}: unsupported dtype {other:?}"))),
        };
        let td = TensorData::new(data, view.shape().to_vec());
        let rest = key.strip_prefix("base_model.model.").unwrap_or(&key);
        let (module, which) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
            (m, 0)
        } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
            (m, 1)
        } else {
            return Err(err(format!("unexpected tensor {key}")));
        };
        let e = parts.entry(format!("{module}.weight")).or_default();
        if which == 0 {
            e.0 = Some(td)
        } else {
            e.1 = Some(td)
        }
    }
    parts
        .into_iter()
        .map(|(k, (a, b))| match (a, b) {
            (Some(a), Some(b)) => Ok((k, (a, b))),
            _ => Err(err(format!("{k}: lora_A or lora_B missing"))),
        })
        .collect()
}

/// Adds `scale·B·A` to the named weights of `model` (any backend, no autodiff needed).
pub fn merge<B: Backend, M: Module<B>>(model: M, pairs: &HashMap<String, (TensorData, TensorData)>, scale: f64) -> M {
    let mut m = MergeMapper::<B> {
        stack: PathStack::default(),
        pairs,
        scale,
        _b: std::marker::PhantomData,
    };
    model.map(&mut m)
}

struct MergeMapper<'a, B: Backend> {
    stack: PathStack,
    pairs: &'a HashMap<String, (TensorData, TensorData)>,
    scale: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> ModuleMapper<B> for MergeMapper<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        let t = match self.pairs.get(&self.stack.path()) {
            Some((a, b)) if D == 2 => {
                let dev = t.device();
                let dtype = t.dtype();
                let a = Tensor::<B, 2>::from_data(a.clone(), (&dev, DType::F32));
                let b = Tensor::<B, 2>::from_data(b.clone(), (&dev, DType::F32));
                let delta = b.matmul(a).mul_scalar(self.scale);
                let dims = t.dims();
                (t.cast(DType::F32) + delta.reshape(dims)).cast(dtype)
            }
            _ => t,
        };
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Builds the per-micro-batch view of the master model: LoRA deltas and/or a compute-dtype cast.
struct ViewMapper<'a, B: Backend> {
    stack: PathStack,
    lora: Option<(&'a HashMap<&'a str, &'a LoraPair<B>>, f64)>,
    cast: Option<DType>,
}

impl<B: Backend> ModuleMapper<B> for ViewMapper<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, mut t, mapper) = param.consume();
        if let Some((map, scale)) = self.lora {
            if let Some(pair) = map.get(self.stack.path().as_str()) {
                let delta = pair.lora_b.val().matmul(pair.lora_a.val()).mul_scalar(scale);
                let dims = t.dims();
                t = t.detach() + delta.reshape(dims);
            }
        }
        if let Some(dt) = self.cast {
            if t.dtype() != dt {
                t = t.cast(dt);
            }
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Casts every float parameter of `model` to `dtype` (differentiably: under autodiff the
/// gradients flow back to the f32 master weights).
pub fn cast_view<B: Backend, M: Module<B>>(model: M, dtype: DType) -> M {
    let mut m = ViewMapper::<B> {
        stack: PathStack::default(),
        lora: None,
        cast: Some(dtype),
    };
    model.map(&mut m)
}
