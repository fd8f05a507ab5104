//! `distill student train --devices cpu,cpu` gives the same metrics.jsonl losses and the
//! same `final/` weights as `--devices cpu` with grad_accum doubled (the checked form).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2")
}

/// Token rows of different lengths and prompt lengths (vocabulary 512).
fn write_rows(path: &Path) {
    let mut s = String::new();
    for i in 0..10u32 {
        let len = 4 + (i * 7) % 9;
        let ids: Vec<u32> = (0..len).map(|j| 3 + (i * 31 + j * 17) % 500).collect();
        let labels: Vec<i64> =
            ids.iter().enumerate().map(|(j, &t)| if j < 1 + (i as usize) % 3 { -100 } else { t as i64 }).collect();
        s.push_str(&serde_json::json!({ "input_ids": ids, "labels": labels }).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

fn write_config(dir: &Path, train: &Path) -> PathBuf {
    let text = format!(
        r#"[model]
path = "{model}"
[data]
train = "{train}"
format = "tokens"
packing = false
max_seq_len = 64
[optim]
lr = 1e-3
max_grad_norm = 0.5
[schedule]
kind = "constant"
warmup_steps = 0
[train]
batch_size = 1
grad_accum = 1
max_steps = 3
seed = 3
[output]
dir = "{out}"
"#,
        model = fixture().display(),
        train = train.display(),
        out = dir.join("unused").display(),
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, out: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["student", "train", "--no-progress", "--config"])
        .arg(config)
        .arg("--set")
        .arg(format!("output.dir=\"{}\"", out.display()))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "distill student train {args:?} failed");
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("loss").and_then(|x| x.as_f64()))
        .collect()
}

/// All F32 tensors of a single-file safetensors checkpoint, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(String, Vec<f32>)> = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            assert_eq!(v["dtype"], "F32", "{k}");
            let o = &v["data_offsets"];
            let (a, b) = (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize);
            (k.clone(), data[a..b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

#[test]
fn two_cpu_devices_match_one_device_with_doubled_grad_accum() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    write_rows(&data);
    let config = write_config(tmp.path(), &data);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    train(&config, &one, &["--devices", "cpu", "--set", "train.grad_accum=2"]);
    train(&config, &two, &["--devices", "cpu,cpu"]);

    let (la, lb) = (losses(&one), losses(&two));
    assert_eq!(la.len(), 3);
    assert_eq!(la.len(), lb.len());
    for (a, b) in la.iter().zip(&lb) {
        assert!((a - b).abs() <= 1e-5, "loss {a} vs {b}");
    }
    let (ta, tb) = (tensors(&one.join("final/model.safetensors")), tensors(&two.join("final/model.safetensors")));
    assert!(!ta.is_empty());
    assert_eq!(ta.len(), tb.len());
    for ((na, a), (nb, b)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{na}: differs by {worst}");
    }
}
