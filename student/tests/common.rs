//! Helpers shared by the trainer's integration tests: fixture access and tiny run configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `models/tests/fixtures/<name>` (a path inside this repository).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures").join(name)
}

/// Reads one tensor of `reference.safetensors` as f64 values with its shape.
pub fn reference(name: &str, key: &str) -> (Vec<f64>, Vec<usize>) {
    let bytes = std::fs::read(fixture(name).join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    read_tensor(&st, key)
}

/// Reads one tensor of a safetensors file as f64.
pub fn read_tensor(st: &safetensors::SafeTensors<'_>, key: &str) -> (Vec<f64>, Vec<usize>) {
    let v = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let d = v.data();
    let vals: Vec<f64> = match v.dtype() {
        safetensors::Dtype::F32 => {
            d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        safetensors::Dtype::I64 => {
            d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        safetensors::Dtype::BF16 => {
            d.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64).collect()
        }
        other => panic!("{key}: dtype {other:?}"),
    };
    (vals, v.shape().to_vec())
}

/// Reads a tensor from a (possibly sharded) HF checkpoint directory.
pub fn checkpoint_tensor(dir: &Path, key: &str) -> Vec<f64> {
    let index = dir.join("model.safetensors.index.json");
    let file = if index.exists() {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(index).unwrap()).unwrap();
        dir.join(v["weight_map"][key].as_str().unwrap_or_else(|| panic!("{key} not in index")))
    } else {
        dir.join("model.safetensors")
    };
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    read_tensor(&st, key).0
}

/// Writes rows as a `format = "tokens"` JSONL file.
pub fn write_tokens(path: &Path, rows: &[(Vec<u32>, Vec<i64>)]) {
    let mut s = String::new();
    for (ids, labels) in rows {
        s.push_str(&serde_json::json!({ "input_ids": ids, "labels": labels }).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// The fixture's `sft.input_ids` / `sft.labels` as token rows.
pub fn sft_rows(name: &str) -> Vec<(Vec<u32>, Vec<i64>)> {
    let (ids, shape) = reference(name, "sft.input_ids");
    let (labels, _) = reference(name, "sft.labels");
    let (b, t) = (shape[0], shape[1]);
    (0..b)
        .map(|r| {
            (
                ids[r * t..(r + 1) * t].iter().map(|&x| x as u32).collect(),
                labels[r * t..(r + 1) * t].iter().map(|&x| x as i64).collect(),
            )
        })
        .collect()
}

/// A config for a tiny run on fixture `model` (tokens format, constant LR, no clipping).
pub fn tiny_config(model: &Path, train: &Path, out: &Path, extra: &str) -> student::TrainConfig {
    let text = format!(
        r#"
[model]
path = "{model}"
[data]
train = "{train}"
format = "tokens"
packing = false
max_seq_len = 64
[optim]
lr = 1e-3
betas = [0.9, 0.95]
eps = 1e-8
weight_decay = 0.1
no_decay = []
max_grad_norm = 0.0
[schedule]
kind = "constant"
warmup_steps = 0
[train]
batch_size = 2
grad_accum = 1
max_steps = 1
shuffle = false
seed = 1
[output]
dir = "{out}"
{extra}
"#,
        model = model.display(),
        train = train.display(),
        out = out.display(),
    );
    // `extra` may repeat a section; apply it as overrides instead when it is `k=v` lines.
    student::TrainConfig::from_toml_str(&text, &[], "test", None).unwrap()
}

/// Same as [`tiny_config`] with `--set` style overrides.
pub fn tiny_config_with(model: &Path, train: &Path, out: &Path, sets: &[&str]) -> student::TrainConfig {
    let base = tiny_config(model, train, out, "");
    let text = toml::to_string(&base).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    student::TrainConfig::from_toml_str(&text, &sets, "test", None).unwrap()
}

/// Runs training on the CPU backend.
pub fn run(cfg: &student::TrainConfig, resume: bool) -> student::TrainSummary {
    let opts = student::RunOptions { resume, progress: false, bf16_supported: false, ..Default::default() };
    student::train::<burn::backend::Autodiff<burn::backend::Flex>>(cfg, &Default::default(), &opts).unwrap()
}
