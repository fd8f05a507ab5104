//! `distill student train --devices cpu,cpu` gives the same metrics.jsonl losses and the
//! same `final/` weights as `--devices cpu` with grad_accum doubled (the checked form); so do
//! two processes on loopback joined through burn-collective's global orchestrator
//! (`--nodes 2 --node-rank R --orchestrator HOST:PORT`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Losses and final weights of two runs agree within 1e-5.
fn assert_same_run(one: &Path, two: &Path) {
    let (la, lb) = (losses(one), losses(two));
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

/// `n` TCP ports free on loopback right now.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Waits for both node processes; kills them after `limit` and fails with their logs.
fn wait_nodes(mut nodes: Vec<(Child, PathBuf)>, limit: Duration) {
    let t0 = Instant::now();
    let mut done = vec![None; nodes.len()];
    while done.iter().any(Option::is_none) {
        for (i, (child, _)) in nodes.iter_mut().enumerate() {
            if done[i].is_none() {
                done[i] = child.try_wait().unwrap();
            }
        }
        if t0.elapsed() > limit {
            for (child, _) in nodes.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, (_, log)) in nodes.iter().enumerate() {
        let ok = done[i].is_some_and(|s| s.success());
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: String = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        assert!(ok, "node {i} {} after {:?}:\n{tail}", done[i].map_or("timed out".into(), |s| s.to_string()), t0.elapsed());
    }
}

#[test]
fn two_nodes_on_loopback_match_one_process_with_doubled_grad_accum() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    write_rows(&data);
    let config = write_config(tmp.path(), &data);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    train(&config, &one, &["--set", "train.grad_accum=2"]);

    let ports = free_ports(3);
    let orchestrator = format!("127.0.0.1:{}", ports[0]);
    let nodes: Vec<(Child, PathBuf)> = (0..2)
        .map(|rank| {
            let log = tmp.path().join(format!("node{rank}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_distill"))
                .args(["student", "train", "--no-progress", "--config"])
                .arg(&config)
                .arg("--set")
                .arg(format!("output.dir=\"{}\"", two.display()))
                .args(["--nodes", "2", "--node-rank", &rank.to_string(), "--orchestrator", &orchestrator])
                .args(["--node-address", &format!("127.0.0.1:{}", ports[1 + rank])])
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    wait_nodes(nodes, Duration::from_secs(300));
    assert_same_run(&one, &two);
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

/// GRPO on the qwen2 fixture's recorded rollouts (3 groups × 4), small micro-batches so the
/// step's rows spread over several micro-batches and so over both peers.
fn write_grpo_config(dir: &Path, out: &Path) -> PathBuf {
    let text = format!(
        "[model]\npath = {model:?}\n[rollouts]\nfile = {rollouts:?}\n[grpo]\nnum_generations = 4\ntemperature = 0.7\n\
         epsilon_low = 0.2\nepsilon_high = 0.28\nbeta = 0.04\nloss_type = \"dapo\"\nmax_completion_length = 10\n\
         micro_batch_tokens = 32\n[optim]\nlr = 1e-3\nmax_grad_norm = 0.5\n[schedule]\nkind = \"constant\"\n\
         warmup_steps = 0\n[train]\nmax_steps = 3\ndtype = \"f32\"\nseed = 1\n[output]\ndir = {out:?}\n",
        model = fixture().display().to_string(),
        rollouts = fixture().join("grpo/rollouts.jsonl").display().to_string(),
        out = out.display().to_string(),
    );
    let path = dir.join(format!("{}.toml", out.file_name().unwrap().to_string_lossy()));
    std::fs::write(&path, text).unwrap();
    path
}

fn grpo(config: &Path, args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["student", "grpo", "--no-progress", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "distill student grpo {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

fn grpo_metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `distill student grpo --devices cpu,cpu` (optimizer replicated, then sharded) equals one
/// device: losses, grad norms, KL and final weights within 1e-5.
#[test]
fn grpo_on_two_cpu_peers_matches_one_device() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = [("one", vec!["--devices", "cpu"]), ("two", vec!["--devices", "cpu,cpu"]), ("zero", vec!["--devices", "cpu,cpu", "--set", "train.shard_optimizer=true"])];
    for (name, args) in &runs {
        let out = tmp.path().join(name);
        grpo(&write_grpo_config(tmp.path(), &out), args);
    }
    let one = grpo_metrics(&tmp.path().join("one"));
    assert_eq!(one.len(), 3);
    for name in ["two", "zero"] {
        let other = grpo_metrics(&tmp.path().join(name));
        assert_eq!(other.len(), 3, "{name}");
        for (a, b) in one.iter().zip(&other) {
            for key in ["loss", "grad_norm", "kl", "reward_mean", "loss_tokens"] {
                let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
                assert!((x - y).abs() <= 1e-5, "{name} step {}: {key} {x} vs {y}", a["step"]);
            }
        }
        let (ta, tb) = (tensors(&tmp.path().join("one/final/model.safetensors")), tensors(&tmp.path().join(name).join("final/model.safetensors")));
        assert_eq!(ta.len(), tb.len());
        for ((na, a), (nb, b)) in ta.iter().zip(&tb) {
            assert_eq!(na, nb);
            // The key bias's gradient is zero in exact arithmetic (softmax is invariant to the
            // per-query constant q·b it adds), so what it gets is rounding noise, which AdamW
            // scales up to updates of lr × O(0.1): its value says nothing about equivalence.
            if na.ends_with("k_proj.bias") {
                continue;
            }
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "{name} {na}: differs by {worst}");
        }
    }
}
