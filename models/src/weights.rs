//! Where module constructors get their tensors: a memory-mapped HF checkpoint or random init.
//!
//! Architectures build themselves by asking a [`WeightSource`] for each tensor by its HF name
//! and expected shape, so there are no rename tables: the name asked for *is* the name in the
//! file, and a wrong shape is reported with tensor and file. Reading is per tensor straight
//! from the mmap (one transient host copy of one tensor at a time, never of the whole model),
//! which also lets DeepSeek-V3 plug in FP8 dequantisation per tensor via a [`DtypeDecoder`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, Metadata, SafeTensors};

use crate::error::ModelError;

/// Supplies named tensors to architecture constructors.
pub trait WeightSource<B: Backend> {
    /// The tensor `name` with the given shape, on the source's device in its compute dtype.
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>, ModelError>;
    /// Whether `name` exists (for optional tensors: `lm_head.weight` of tied models, biases).
    fn contains(&self, name: &str) -> bool;
    /// Device tensors are created on.
    fn device(&self) -> B::Device;
    /// Float dtype tensors are cast to.
    fn dtype(&self) -> DType;
}

/// One tensor as stored in a safetensors file, borrowed from the mmap.
#[derive(Clone, Copy, Debug)]
pub struct RawTensor<'a> {
    /// HF tensor name.
    pub name: &'a str,
    /// The shard it lives in.
    pub file: &'a Path,
    /// Stored dtype.
    pub dtype: StDtype,
    /// Stored shape.
    pub shape: &'a [usize],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

/// Decodes dtypes the loader does not know (FP8 block-quantised weights) into f32
/// [`TensorData`]. Returns `None` to decline (the loader then reports an unsupported dtype).
/// Gets the whole checkpoint so it can read companion tensors such as `*_scale_inv`; it
/// should report those via [`SafetensorsFiles::mark_used`].
pub type DtypeDecoder =
    Arc<dyn Fn(&RawTensor<'_>, &SafetensorsFiles) -> Option<Result<TensorData, ModelError>> + Send + Sync>;

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    meta: Metadata,
}

/// A checkpoint's safetensors files, memory-mapped, with a name → shard index.
pub struct SafetensorsFiles {
    shards: Vec<Shard>,
    index: HashMap<String, usize>,
    used: std::sync::Mutex<HashSet<String>>,
    decoder: Option<DtypeDecoder>,
}

impl std::fmt::Debug for SafetensorsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFiles")
            .field("shards", &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>())
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn st_err(file: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Safetensors { file: file.to_path_buf(), message: e.to_string() }
}

impl SafetensorsFiles {
    /// Opens `dir/model.safetensors`, or the shards listed in
    /// `dir/model.safetensors.index.json`. Every shard's header is validated against its file
    /// size, so a truncated download fails here naming the file.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let (files, weight_map): (Vec<PathBuf>, Option<BTreeMap<String, String>>) = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::Json { path: index_path.clone(), message: e.to_string() })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::MissingKey {
                path: index_path.clone(),
                key: "weight_map".into(),
            })?;
            let mut wm = BTreeMap::new();
            for (k, f) in map {
                let f = f.as_str().ok_or_else(|| ModelError::BadValue {
                    path: index_path.clone(),
                    key: format!("weight_map.{k}"),
                    message: "expected a file name".into(),
                })?;
                wm.insert(k.clone(), f.to_string());
            }
            let mut files: Vec<String> = wm.values().cloned().collect();
            files.sort();
            files.dedup();
            (files.into_iter().map(|f| dir.join(f)).collect(), Some(wm))
        } else if single.exists() {
            (vec![single], None)
        } else {
            return Err(ModelError::io(
                &single,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no model.safetensors or model.safetensors.index.json"),
            ));
        };
        let mut this = SafetensorsFiles { shards: Vec::new(), index: HashMap::new(), used: Default::default(), decoder: None };
        for path in files {
            this.add_shard(path)?;
        }
        if let Some(wm) = weight_map {
            for (name, f) in &wm {
                match this.index.get(name) {
                    Some(&si) if this.shards[si].path == dir.join(f) => {}
                    Some(&si) => {
                        return Err(st_err(&this.shards[si].path, format!("index.json says `{name}` is in {f}")));
                    }
                    None => {
                        return Err(ModelError::MissingTensor { tensor: name.clone(), files: dir.join(f).display().to_string() });
                    }
                }
            }
        }
        Ok(this)
    }

    /// Opens one safetensors file on its own (e.g. a reference-tensor file).
    pub fn open_file(path: &Path) -> Result<Self, ModelError> {
        let mut files = SafetensorsFiles { shards: Vec::new(), index: HashMap::new(), used: Default::default(), decoder: None };
        files.add_shard(path.to_path_buf())?;
        Ok(files)
    }

    fn add_shard(&mut self, path: PathBuf) -> Result<(), ModelError> {
        let file = std::fs::File::open(&path).map_err(|e| ModelError::io(&path, e))?;
        // SAFETY: the checkpoint is treated as read-only for the life of this struct;
        // modifying it underneath a running process is outside what we can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
        let (header_len, meta) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| st_err(&path, format!("{e:?} (truncated or corrupt file?)")))?;
        let si = self.shards.len();
        for name in meta.tensors().keys() {
            if let Some(prev) = self.index.insert(name.clone(), si) {
                let prev = &self.shards[prev].path;
                return Err(st_err(&path, format!("tensor `{name}` also stored in {}", prev.display())));
            }
        }
        self.shards.push(Shard { path, mmap, header_len, meta });
        Ok(())
    }

    /// Installs a decoder for dtypes beyond f32/f16/bf16 (FP8).
    pub fn set_decoder(&mut self, decoder: DtypeDecoder) {
        self.decoder = Some(decoder);
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.index.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    /// Whether the checkpoint has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The shard files, in order.
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// The stored bytes of `name`, without conversion.
    pub fn raw(&self, name: &str) -> Result<RawTensor<'_>, ModelError> {
        let si = *self.index.get(name).ok_or_else(|| ModelError::MissingTensor {
            tensor: name.to_string(),
            files: self.shards.iter().map(|s| s.path.display().to_string()).collect::<Vec<_>>().join(", "),
        })?;
        let shard = &self.shards[si];
        let info = shard.meta.info(name).expect("indexed");
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        Ok(RawTensor { name: self.index.get_key_value(name).expect("indexed").0, file: &shard.path, dtype: info.dtype, shape: &info.shape, data: &shard.mmap[start..end] })
    }

    /// Records that `name` was consumed (so it is not reported as unused).
    pub fn mark_used(&self, name: &str) {
        self.used.lock().expect("poisoned").insert(name.to_string());
    }

    /// Names present in the files that nobody consumed, sorted.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().expect("poisoned");
        let mut v: Vec<String> = self.index.keys().filter(|k| !used.contains(*k)).cloned().collect();
        v.sort();
        v
    }

    /// Reads `name` as [`TensorData`] in its stored float dtype (f32/f16/bf16 kept as is, f64
    /// converted to f32, other dtypes through the installed [`DtypeDecoder`]). Checks the
    /// shape when `expected` is given. Marks the tensor used.
    pub fn tensor_data(&self, name: &str, expected: Option<&[usize]>) -> Result<TensorData, ModelError> {
        let raw = self.raw(name)?;
        if let Some(exp) = expected {
            if raw.shape != exp {
                return Err(ModelError::ShapeMismatch {
                    file: raw.file.to_path_buf(),
                    tensor: name.to_string(),
                    expected: exp.to_vec(),
                    found: raw.shape.to_vec(),
                });
            }
        }
        self.mark_used(name);
        let shape = raw.shape.to_vec();
        let bytes = raw.data.to_vec();
        let data = match raw.dtype {
            StDtype::F32 => TensorData::from_bytes_vec(bytes, shape, DType::F32),
            StDtype::F16 => TensorData::from_bytes_vec(bytes, shape, DType::F16),
            StDtype::BF16 => TensorData::from_bytes_vec(bytes, shape, DType::BF16),
            StDtype::F64 => TensorData::from_bytes_vec(bytes, shape, DType::F64).convert_dtype(DType::F32),
            other => match &self.decoder {
                Some(dec) => match dec(&raw, self) {
                    Some(r) => r?,
                    None => return Err(unsupported(&raw, other)),
                },
                None => return Err(unsupported(&raw, other)),
            },
        };
        Ok(data)
    }
}

fn unsupported(raw: &RawTensor<'_>, dtype: StDtype) -> ModelError {
    ModelError::UnsupportedDtype { file: raw.file.to_path_buf(), tensor: raw.name.to_string(), dtype: format!("{dtype:?}") }
}

/// [`WeightSource`] over a memory-mapped checkpoint.
pub struct CheckpointWeights<'a, B: Backend> {
    files: &'a SafetensorsFiles,
    device: B::Device,
    dtype: DType,
}

impl<'a, B: Backend> CheckpointWeights<'a, B> {
    /// Tensors from `files`, created on `device` and cast to `dtype`.
    pub fn new(files: &'a SafetensorsFiles, device: &B::Device, dtype: DType) -> Self {
        CheckpointWeights { files, device: device.clone(), dtype }
    }

    /// The underlying files (for the unused-tensor report).
    pub fn files(&self) -> &'a SafetensorsFiles {
        self.files
    }
}

impl<B: Backend> WeightSource<B> for CheckpointWeights<'_, B> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>, ModelError> {
        let data = self.files.tensor_data(name, Some(&shape))?;
        let data = if data.dtype == self.dtype { data } else { data.convert_dtype(self.dtype) };
        Ok(Tensor::from_data(data, (&self.device, self.dtype)))
    }
    fn contains(&self, name: &str) -> bool {
        self.files.contains(name)
    }
    fn device(&self) -> B::Device {
        self.device.clone()
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
}

/// [`WeightSource`] that draws fresh weights: norms 1, biases 0, everything else
/// `N(0, std²)` (HF's `initializer_range`, usually 0.02). For benchmarks and training from
/// scratch. Every name is "present" except `lm_head.weight` when `tied` is set.
pub struct RandomWeights<B: Backend> {
    device: B::Device,
    dtype: DType,
    std: f64,
    tied: bool,
}

impl<B: Backend> RandomWeights<B> {
    /// Random weights on `device`; call [`Backend::seed`] first for reproducibility.
    pub fn new(device: &B::Device, dtype: DType, std: f64, tied: bool) -> Self {
        RandomWeights { device: device.clone(), dtype, std, tied }
    }
}

impl<B: Backend> WeightSource<B> for RandomWeights<B> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>, ModelError> {
        let opts = (&self.device, self.dtype);
        let t = if name.ends_with("norm.weight") {
            Tensor::ones(shape, opts)
        } else if name.ends_with(".bias") {
            Tensor::zeros(shape, opts)
        } else {
            Tensor::<B, D>::random(shape, Distribution::Normal(0.0, self.std), &self.device).cast(self.dtype)
        };
        Ok(t)
    }
    fn contains(&self, name: &str) -> bool {
        !(self.tied && name == "lm_head.weight")
    }
    fn device(&self) -> B::Device {
        self.device.clone()
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
}
