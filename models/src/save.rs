//! `save_model`: writes a model in the layout `save_pretrained` produces, so transformers and
//! vLLM load it unchanged: HF tensor names, safetensors with `{"format": "pt"}` metadata,
//! sharded by size with `model.safetensors.index.json`, plus config.json and
//! generation_config.json. Written into a temporary sibling directory and renamed into place,
//! so a crash never leaves a half-written checkpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;

use crate::config::{GenerationConfig, ModelConfig};
use crate::error::ModelError;

/// How to write a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct SaveOptions {
    /// Largest shard in bytes before starting a new one (default 5 GB, as `save_pretrained`).
    pub max_shard_bytes: u64,
    /// Store floats in this dtype (`None` keeps each tensor's dtype).
    pub dtype: Option<DType>,
    /// Replace `dir` if it exists (default false: refuse).
    pub overwrite: bool,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { max_shard_bytes: 5_000_000_000, dtype: None, overwrite: false }
    }
}

/// The module path a [`ModuleVisitor`] is at, as an HF name: enum variant wrappers (the
/// [`crate::Model`] variants) are skipped, so `model.layers.0.mlp.up_proj.weight` comes out.
#[derive(Default)]
pub(crate) struct HfPath {
    path: Vec<String>,
    skip: Vec<bool>,
}

impl HfPath {
    /// Call from `ModuleVisitor::enter_module`.
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        let skip = container_type.starts_with("Enum:");
        self.skip.push(skip);
        if !skip {
            self.path.push(name.to_string());
        }
    }

    /// Call from `ModuleVisitor::exit_module`.
    pub(crate) fn exit(&mut self) {
        if !self.skip.pop().unwrap_or(false) {
            self.path.pop();
        }
    }

    /// The dotted name of the parameter being visited.
    pub(crate) fn name(&self) -> String {
        self.path.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(".")
    }
}

/// Collects every float parameter with its dotted path, skipping enum variant names so paths
/// are the HF names.
struct Collect<B: Backend> {
    path: HfPath,
    out: Vec<Entry<B>>,
}

type TensorFetch = Box<dyn Fn() -> TensorData>;

/// (HF name, shape, stored dtype, data puller)
type Entry<B> = (String, Vec<usize>, DType, TensorFetch, std::marker::PhantomData<B>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let name = self.path.name();
        let dtype = t.dtype();
        self.out.push((name, shape, dtype, Box::new(move || t.clone().into_data()), std::marker::PhantomData));
    }
}

/// Parameters of `model` by HF name, in module order, as host data (pulled one at a time).
pub fn named_parameters<B: Backend, M: Module<B>>(model: &M) -> Vec<(String, TensorData)> {
    collect(model).into_iter().map(|(n, _, _, f, _)| (n, f())).collect()
}

fn collect<B: Backend, M: Module<B>>(model: &M) -> Vec<Entry<B>> {
    let mut c = Collect { path: HfPath::default(), out: Vec::new() };
    model.visit(&mut c);
    c.out
}

fn st_dtype(d: DType) -> Result<&'static str, ModelError> {
    Ok(match d {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F64 => "F64",
        other => return Err(ModelError::InvalidInput(format!("cannot save dtype {other:?}"))),
    })
}

/// Writes `model` with its configs to `dir` in HF layout (see the module docs).
pub fn save_model<B: Backend, M: Module<B>>(
    dir: &Path,
    model: &M,
    config: &ModelConfig,
    generation: &GenerationConfig,
    options: &SaveOptions,
) -> Result<(), ModelError> {
    if dir.exists() && !options.overwrite {
        return Err(ModelError::io(dir, std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite (set overwrite)")));
    }
    let params = collect(model);
    let mut seen = std::collections::HashSet::new();
    for (name, ..) in &params {
        if !seen.insert(name.clone()) {
            return Err(ModelError::InvalidInput(format!("two parameters share the name `{name}`")));
        }
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let base = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let result = write_all(&tmp, &params, config, generation, options);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))?;
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

fn write_all<B: Backend>(
    tmp: &Path,
    params: &[Entry<B>],
    config: &ModelConfig,
    generation: &GenerationConfig,
    options: &SaveOptions,
) -> Result<(), ModelError> {
    // Plan shards from shapes and dtypes alone (no data pulled yet), sorted by name as
    // `save_pretrained` does.
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_by(|&a, &b| params[a].0.cmp(&params[b].0));
    let dtypes: Vec<DType> = params.iter().map(|p| options.dtype.unwrap_or(p.2)).collect();
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut cur = 0u64;
    let mut total = 0u64;
    for &i in &order {
        let bytes = (params[i].1.iter().product::<usize>() * dtypes[i].size()) as u64;
        total += bytes;
        if cur > 0 && cur + bytes > options.max_shard_bytes {
            shards.push(Vec::new());
            cur = 0;
        }
        shards.last_mut().expect("non-empty").push(i);
        cur += bytes;
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (si, shard) in shards.iter().enumerate() {
        let file = if n == 1 { "model.safetensors".to_string() } else { format!("model-{:05}-of-{:05}.safetensors", si + 1, n) };
        let path = tmp.join(&file);
        write_shard::<B>(&path, shard, params, &dtypes)?;
        for &i in shard {
            weight_map.insert(params[i].0.clone(), serde_json::Value::String(file.clone()));
        }
    }
    if n > 1 {
        let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        write_json(&tmp.join("model.safetensors.index.json"), &index)?;
    }
    let mut cfg = config.to_json();
    if let Some(d) = options.dtype.or_else(|| dominant_dtype(params, &dtypes)) {
        set_config_dtype(&mut cfg, d);
    }
    write_json(&tmp.join("config.json"), &cfg)?;
    write_json(&tmp.join("generation_config.json"), &generation.to_json())?;
    Ok(())
}

/// The dtype holding the most parameter elements (what the checkpoint "is" when tensors mix).
fn dominant_dtype<B: Backend>(params: &[Entry<B>], dtypes: &[DType]) -> Option<DType> {
    let mut elems: Vec<(DType, usize)> = Vec::new();
    for (p, &d) in params.iter().zip(dtypes) {
        let n = p.1.iter().product::<usize>();
        match elems.iter_mut().find(|(e, _)| *e == d) {
            Some((_, c)) => *c += n,
            None => elems.push((d, n)),
        }
    }
    elems.into_iter().max_by_key(|&(_, n)| n).map(|(d, _)| d)
}

/// The transformers name of a float dtype (`torch.bfloat16` → `"bfloat16"`).
fn hf_dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// Records the saved tensors' dtype in `config.json` under both spellings: transformers ≥ 5
/// reads `dtype`, 4.x reads `torch_dtype`. A source config's stale value (a bf16 model saved
/// in f32) would otherwise make transformers cast the loaded weights back to the old dtype.
fn set_config_dtype(cfg: &mut serde_json::Value, d: DType) {
    let o = cfg.as_object_mut().expect("config.json is an object");
    for key in ["dtype", "torch_dtype"] {
        o.insert(key.into(), hf_dtype_name(d).into());
    }
}

fn write_shard<B: Backend>(
    path: &PathBuf,
    shard: &[usize],
    params: &[Entry<B>],
    dtypes: &[DType],
) -> Result<(), ModelError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for &i in shard {
        let bytes = params[i].1.iter().product::<usize>() * dtypes[i].size();
        header.insert(
            params[i].0.clone(),
            serde_json::json!({ "dtype": st_dtype(dtypes[i])?, "shape": params[i].1, "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    let mut h = serde_json::to_string(&serde_json::Value::Object(header)).expect("serialisable").into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let f = std::fs::File::create(path).map_err(|e| ModelError::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, f);
    let io = |e| ModelError::io(path, e);
    w.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&h).map_err(io)?;
    for &i in shard {
        let data = (params[i].3)();
        let data = if data.dtype == dtypes[i] { data } else { data.convert_dtype(dtypes[i]) };
        w.write_all(data.as_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)?;
    w.into_inner().map_err(|e| ModelError::io(path, e.into_error()))?.sync_all().map_err(io)?;
    Ok(())
}

/// Writes named host tensors to one safetensors file with `{"format": "pt"}` metadata,
/// atomically (temporary file, then rename). Used for `distill model forward --out`.
pub fn write_safetensors(path: &Path, tensors: &[(String, TensorData)]) -> Result<(), ModelError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for (name, data) in tensors {
        let dtype = match data.dtype {
            DType::I64 => "I64",
            DType::I32 => "I32",
            d => st_dtype(d)?,
        };
        let bytes = data.as_bytes().len();
        header.insert(name.clone(), serde_json::json!({ "dtype": dtype, "shape": data.shape.to_vec(), "data_offsets": [offset, offset + bytes] }));
        offset += bytes;
    }
    let mut h = serde_json::to_string(&serde_json::Value::Object(header)).expect("serialisable").into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let file_name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io = |e| ModelError::io(path, e);
    {
        let f = std::fs::File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(f);
        w.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
        w.write_all(&h).map_err(io)?;
        for (_, data) in tensors {
            w.write_all(data.as_bytes()).map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}
