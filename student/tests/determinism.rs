//! Reproducibility on the CPU backend: the same config and seed give bit-identical losses,
//! gradient norms and weights — run twice in one process (on one device, and on two
//! data-parallel CPU peers), and again in a child process with a different rayon thread count (flex parallelises matmuls over the rayon pool; this model's
//! matmuls are large enough to take the parallel path).

mod common;
use common::checkpoint_tensor;

use std::path::Path;

/// A random-init Qwen2 the size of the quickstart's student, trained on seeded token rows.
fn config(dir: &Path, out: &Path) -> student::TrainConfig {
    let train = dir.join("rows.jsonl");
    let mut x = 12345u64;
    let mut lines = String::new();
    for _ in 0..24 {
        let ids: Vec<u32> = (0..128)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % 384) as u32
            })
            .collect();
        let labels: Vec<i64> = ids.iter().enumerate().map(|(i, &t)| if i < 8 { -100 } else { t as i64 }).collect();
        lines.push_str(&serde_json::json!({"input_ids": ids, "labels": labels}).to_string());
        lines.push('\n');
    }
    std::fs::write(&train, lines).unwrap();
    let text = format!(
        r#"[model]
init = "random"
[model.arch]
model_type = "qwen2"
vocab_size = 384
hidden_size = 128
intermediate_size = 384
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 512
rms_norm_eps = 1e-6
rope_theta = 10000.0
tie_word_embeddings = true
[data]
train = "{train}"
format = "tokens"
packing = true
max_seq_len = 256
[optim]
lr = 3e-3
max_grad_norm = 1.0
[schedule]
kind = "cosine"
warmup_steps = 1
[train]
batch_size = 4
max_steps = 3
seed = 7
[output]
dir = "{out}"
"#,
        train = train.display(),
        out = out.display()
    );
    student::TrainConfig::from_toml_str(&text, &[], "test", None).unwrap()
}

/// (loss, grad_norm) bit patterns per step and a checksum of two tracked tensors.
fn train_once(dir: &Path, out: &Path) -> (Vec<(u64, u64)>, Vec<u64>) {
    train_on_peers(dir, out, 1)
}

/// [`train_once`] on `peers` data-parallel CPU peers, each with its share of the 4-row batch
/// (the quickstart trains on two).
fn train_on_peers(dir: &Path, out: &Path, peers: usize) -> (Vec<(u64, u64)>, Vec<u64>) {
    type AB = burn::backend::Autodiff<burn::backend::Flex>;
    let mut cfg = config(dir, out);
    let opts = student::RunOptions { progress: false, ..Default::default() };
    let s = if peers == 1 {
        student::train::<AB>(&cfg, &Default::default(), &opts).unwrap()
    } else {
        cfg.train.batch_size /= peers;
        cfg.train.devices = vec!["cpu".into(); peers];
        let devices = vec![Default::default(); peers];
        student::train_data_parallel::<AB>(&cfg, &devices, &opts, &Default::default()).unwrap()
    };
    let m = student::read_metrics(out).unwrap();
    let curve = m.iter().map(|m| (m.loss.to_bits(), m.grad_norm.to_bits())).collect();
    let weights = ["model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight"]
        .iter()
        .flat_map(|p| checkpoint_tensor(&s.final_dir, p))
        .map(f64::to_bits)
        .collect();
    (curve, weights)
}

#[test]
fn same_seed_gives_bit_identical_training() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train_once(tmp.path(), &tmp.path().join("a"));
    let b = train_once(tmp.path(), &tmp.path().join("b"));
    assert_eq!(a.0.len(), 3);
    assert_eq!(a.0, b.0, "losses and gradient norms, bit for bit");
    assert!(a.1 == b.1, "final weights, bit for bit");
}

#[test]
fn two_cpu_peers_give_bit_identical_training() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train_on_peers(tmp.path(), &tmp.path().join("a"), 2);
    let b = train_on_peers(tmp.path(), &tmp.path().join("b"), 2);
    assert_eq!(a.0.len(), 3);
    assert_eq!(a.0, b.0, "losses and gradient norms, bit for bit");
    assert!(a.1 == b.1, "final weights, bit for bit");
}

/// The child half of [`thread_count_does_not_change_the_numbers`]: prints the curve.
#[test]
fn determinism_child() {
    let Ok(dir) = std::env::var("DISTILL_DETERMINISM_CHILD") else { return };
    let (curve, weights) = train_once(Path::new(&dir), &Path::new(&dir).join("child"));
    println!("CURVE {}", serde_json::json!({"curve": curve, "weights": weights.iter().fold(0u64, |h, w| h.rotate_left(5) ^ w)}));
}

#[test]
fn thread_count_does_not_change_the_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let run_child = |threads: &str, sub: &str| {
        let dir = tmp.path().join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "determinism_child", "--nocapture", "--test-threads=1"])
            .env("DISTILL_DETERMINISM_CHILD", &dir)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        let curve = text.lines().find_map(|l| l.split_once("CURVE ").map(|(_, c)| c.to_string()));
        curve.unwrap_or_else(|| panic!("no curve from the child: {text}"))
    };
    let one = run_child("1", "t1");
    let four = run_child("4", "t4");
    assert_eq!(one, four, "1 vs 4 rayon threads");
}
