//! Data-parallel training on CPU peers: N peers × grad_accum G equals one device with
//! grad_accum N·G (losses, grad norms, parameters), for SFT and LoRA, with the optimizer
//! replicated or sharded (ZeRO-1); a failing peer stops the others with its error, and the
//! run resumes from the last checkpoint, on the same or a different number of peers.

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

/// Every tensor of `a/optimizer.safetensors` (the full AdamW state) equals `b`'s within `tol`.
fn optimizer_close(a: &Path, b: &Path, tol: f64) {
    let (fa, fb) = (std::fs::read(a.join("optimizer.safetensors")).unwrap(), std::fs::read(b.join("optimizer.safetensors")).unwrap());
    let (sa, sb) = (safetensors::SafeTensors::deserialize(&fa).unwrap(), safetensors::SafeTensors::deserialize(&fb).unwrap());
    let (mut na, mut nb) = (sa.names(), sb.names());
    na.sort();
    nb.sort();
    assert_eq!(na, nb);
    assert!(!na.is_empty());
    for n in na {
        let (x, y) = (read_tensor(&sa, n).0, read_tensor(&sb, n).0);
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst <= tol, "{n}: differs by {worst}");
    }
}

/// 2 peers × grad_accum `g` (optimizer sharded or not) against 1 device × grad_accum 2·`g`;
/// a checkpoint at step 2 holds the same full optimizer state. Returns both summaries.
fn assert_equivalent(extra: &str, g: usize, n_rows: usize, max_steps: u64, steps: usize, shard: bool) -> (student::TrainSummary, student::TrainSummary) {
    let tmp = tempfile::tempdir().unwrap();
    let mut single = config(tmp.path(), "single", n_rows, extra);
    single.train.grad_accum = 2 * g;
    single.train.max_steps = max_steps;
    single.output.save_every = 2;
    let mut dp = with_peers(config(tmp.path(), "dp", n_rows, extra), 2);
    dp.train.grad_accum = g;
    dp.train.max_steps = max_steps;
    dp.train.shard_optimizer = shard;
    dp.output.save_every = 2;
    let rs = run(&single, false);
    let rd = run_peers(&dp, &DistributedOptions::default()).unwrap();
    assert_eq!(rs.steps, rd.steps);
    metrics_close(&tmp.path().join("single"), &tmp.path().join("dp"), steps);
    all_params_close(&rs.final_dir, &rd.final_dir, 1e-5);
    if steps > 2 {
        optimizer_close(&tmp.path().join("single/checkpoint-2"), &tmp.path().join("dp/checkpoint-2"), 1e-5);
    }
    (rs, rd)
}

/// Each sharded peer holds only its balanced share of the moments; together all of them.
fn assert_sharded_state(single: &student::TrainSummary, dp: &student::TrainSummary) {
    let total = single.optimizer_state[0];
    assert!(total > 0);
    let shares = &dp.optimizer_state;
    assert_eq!(shares.len(), 2, "{shares:?}");
    assert_eq!(shares.iter().sum::<usize>(), total, "{shares:?} vs {total}");
    for &s in shares {
        assert!(s > 0 && s < total, "{shares:?} of {total}");
    }
}

#[test]
fn two_peers_equal_doubled_grad_accum_sft() {
    let (rs, rd) = assert_equivalent("", 1, 8, 3, 3, false);
    assert_eq!(rd.optimizer_state, vec![rs.optimizer_state[0]; 2], "replicated optimizer");
}

#[test]
fn sharded_optimizer_two_peers_equal_doubled_grad_accum_sft() {
    let (rs, rd) = assert_equivalent("", 1, 8, 3, 3, true);
    assert_sharded_state(&rs, &rd);
    // The qwen2 fixture's largest tensor (the embedding) bounds the balance of whole tensors.
    let (a, b) = (rd.optimizer_state[0], rd.optimizer_state[1]);
    assert!(a.abs_diff(b) * 3 < a + b, "unbalanced shares {a} / {b}");
}

#[test]
fn sharded_optimizer_two_peers_equal_doubled_grad_accum_lora() {
    let (rs, rd) = assert_equivalent(LORA, 1, 8, 3, 3, true);
    assert_sharded_state(&rs, &rd);
}

#[test]
fn two_peers_equal_doubled_grad_accum_with_a_short_last_step() {
    // 5 rows, one epoch, 4 micro-batches per step: step 2 has a single micro-batch, so
    // peer 1 computes nothing and contributes zero gradients.
    assert_equivalent("", 2, 5, 0, 2, false);
}

#[test]
fn two_peers_equal_doubled_grad_accum_lora() {
    assert_equivalent(LORA, 1, 8, 3, 3, false);
}

const LORA: &str = "[lora]\nrank = 4\nalpha = 8.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n";

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
        ..Default::default()
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

/// Train 2 steps on 2 sharded peers (peer 1 fails at step 3), resume on one device with
/// grad_accum doubled: the same 4 steps (rows, losses, final weights) as one straight run.
#[test]
fn resume_on_a_different_number_of_peers_keeps_the_data_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut clean = config(tmp.path(), "clean", 12, "");
    clean.train.grad_accum = 2;
    clean.train.max_steps = 4;
    let rc = run(&clean, false);

    let mut dp = with_peers(config(tmp.path(), "dp", 12, ""), 2);
    dp.train.max_steps = 4;
    dp.train.shard_optimizer = true;
    dp.output.save_every = 2;
    let dist = DistributedOptions { fault: Some(FaultInjection { rank: 1, step: 3, panic: false }), ..Default::default() };
    run_peers(&dp, &dist).unwrap_err();
    assert!(tmp.path().join("dp/checkpoint-2").is_dir());

    let mut one = dp.clone();
    one.train.devices.clear();
    one.train.shard_optimizer = false;
    one.train.grad_accum = 2;
    let r1 = run(&one, true);
    assert_eq!(r1.steps, 4);
    assert_eq!(r1.resumed_from.as_deref(), Some(tmp.path().join("dp/checkpoint-2").as_path()));
    metrics_close(&tmp.path().join("clean"), &tmp.path().join("dp"), 4);
    all_params_close(&rc.final_dir, &r1.final_dir, 1e-5);
}
