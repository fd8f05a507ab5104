//! Data-parallel training on CPU peers: N peers × grad_accum G equals one device with
//! grad_accum N·G (losses, grad norms, parameters), for SFT and LoRA; a failing peer stops
//! the others with its error, and the run resumes from the last checkpoint.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use student::distributed::FaultInjection;
use student::{DistributedOptions, StudentError, TrainConfig};

type AB = Autodiff<Flex>;

/// Rows of different lengths and loss-token counts cut from the fixture's ids, so that the
/// peers' micro-batches carry different numbers of loss tokens.
fn rows(n: usize) -> Vec<(Vec<u32>, Vec<i64>)> {
    let ids: Vec<u32> = sft_rows("qwen2").iter().flat_map(|r| r.0.clone()).collect();
    (0..n)
        .map(|i| {
            let a = (i * 3) % (ids.len() - 8);
            let len = 3 + (i * 5) % 6;
            let prompt = 1 + i % 3;
            let x: Vec<u32> = ids[a..a + len].to_vec();
            let l = x.iter().enumerate().map(|(j, &t)| if j < prompt { -100 } else { t as i64 }).collect();
            (x, l)
        })
        .collect()
}

/// A run of the qwen2 fixture on `n_rows` rows; clipping on so the global norm matters.
fn config(dir: &Path, name: &str, n_rows: usize, extra: &str) -> TrainConfig {
    let train = dir.join("train.jsonl");
    write_tokens(&train, &rows(n_rows));
    let mut cfg = tiny_config(&fixture("qwen2"), &train, &dir.join(name), extra);
    cfg.train.batch_size = 1;
    cfg.train.max_steps = 3;
    cfg.train.shuffle = true;
    cfg.optim.max_grad_norm = 0.5;
    cfg
}

fn run_peers(cfg: &TrainConfig, dist: &DistributedOptions) -> student::Result<student::TrainSummary> {
    let opts = student::RunOptions::default();
    let devices = vec![Default::default(); cfg.train.devices.len().max(1)];
    student::train_data_parallel::<AB>(cfg, &devices, &opts, dist)
}

fn with_peers(mut cfg: TrainConfig, n: usize) -> TrainConfig {
    cfg.train.devices = vec!["cpu".to_string(); n];
    cfg
}

/// Every tensor of `a/model.safetensors` equals the one in `b` within `tol`.
fn all_params_close(a: &Path, b: &Path, tol: f64) {
    let bytes = std::fs::read(a.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = st.names();
    assert!(!names.is_empty());
    for n in names {
        let (x, y) = (checkpoint_tensor(a, n), checkpoint_tensor(b, n));
        assert_eq!(x.len(), y.len(), "{n}");
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst <= tol, "{n}: differs by {worst}");
    }
}

fn metrics_close(a: &Path, b: &Path, steps: usize) {
    let (ma, mb) = (student::read_metrics(a).unwrap(), student::read_metrics(b).unwrap());
    assert_eq!(ma.len(), steps);
    assert_eq!(mb.len(), steps);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x.loss_tokens, y.loss_tokens, "step {}", x.step);
        assert_eq!(x.tokens, y.tokens, "step {}", x.step);
        assert!((x.loss - y.loss).abs() <= 1e-5, "step {} loss {} vs {}", x.step, x.loss, y.loss);
        assert!(
            (x.grad_norm - y.grad_norm).abs() <= 1e-5,
            "step {} grad norm {} vs {}",
            x.step,
            x.grad_norm,
            y.grad_norm
        );
    }
}

/// 2 peers × grad_accum `g` against 1 device × grad_accum 2·`g`.
fn assert_equivalent(extra: &str, g: usize, n_rows: usize, max_steps: u64, steps: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let mut single = config(tmp.path(), "single", n_rows, extra);
    single.train.grad_accum = 2 * g;
    single.train.max_steps = max_steps;
    let mut dp = with_peers(config(tmp.path(), "dp", n_rows, extra), 2);
    dp.train.grad_accum = g;
    dp.train.max_steps = max_steps;
    let rs = run(&single, false);
    let rd = run_peers(&dp, &DistributedOptions::default()).unwrap();
    assert_eq!(rs.steps, rd.steps);
    metrics_close(&tmp.path().join("single"), &tmp.path().join("dp"), steps);
    all_params_close(&rs.final_dir, &rd.final_dir, 1e-5);
}

#[test]
fn two_peers_equal_doubled_grad_accum_sft() {
    assert_equivalent("", 1, 8, 3, 3);
}

#[test]
fn two_peers_equal_doubled_grad_accum_with_a_short_last_step() {
    // 5 rows, one epoch, 4 micro-batches per step: step 2 has a single micro-batch, so
    // peer 1 computes nothing and contributes zero gradients.
    assert_equivalent("", 2, 5, 0, 2);
}

#[test]
fn two_peers_equal_doubled_grad_accum_lora() {
    assert_equivalent("[lora]\nrank = 4\nalpha = 8.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n", 1, 8, 3, 3);
}

#[test]
fn train_refuses_several_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = with_peers(config(tmp.path(), "x", 4, ""), 2);
    let opts = student::RunOptions::default();
    let err = student::train::<AB>(&cfg, &Default::default(), &opts).unwrap_err();
    assert!(err.to_string().contains("train.devices"), "{err}");
}

/// A peer that fails (error or panic) stops the others quickly with its error; resuming
/// from the last checkpoint then finishes on the same curve as an uninterrupted run.
fn failure_then_resume(panic: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let mut clean = config(tmp.path(), "clean", 8, "");
    clean.train.grad_accum = 2;
    let rc = run(&clean, false);

    let mut dp = with_peers(config(tmp.path(), "dp", 8, ""), 2);
    dp.output.save_every = 1;
    let dist = DistributedOptions {
        timeout: Duration::from_secs(600),
        fault: Some(FaultInjection { rank: 1, step: 3, panic }),
    };
    let t0 = Instant::now();
    let err = run_peers(&dp, &dist).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(120), "took {:?}", t0.elapsed());
    match &err {
        StudentError::Peer { rank: 1, .. } => {}
        other => panic!("expected peer 1's failure, got {other}"),
    }
    let text = err.chain();
    assert!(text.contains(if panic { "injected panic" } else { "injected failure" }), "{text}");
    assert!(!tmp.path().join("dp/final").exists());
    assert!(tmp.path().join("dp/checkpoint-2").is_dir());

    let opts = student::RunOptions { resume: true, ..Default::default() };
    let rd = student::train_data_parallel::<AB>(
        &dp,
        &[Default::default(), Default::default()],
        &opts,
        &DistributedOptions::default(),
    )
    .unwrap();
    assert_eq!(rd.steps, 3);
    metrics_close(&tmp.path().join("clean"), &tmp.path().join("dp"), 3);
    all_params_close(&rc.final_dir, &rd.final_dir, 1e-5);
}

#[test]
fn failing_peer_stops_the_group_and_the_run_resumes() {
    failure_then_resume(false);
}

#[test]
fn panicking_peer_stops_the_group_and_the_run_resumes() {
    failure_then_resume(true);
}
