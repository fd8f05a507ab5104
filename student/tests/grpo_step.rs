//! The acceptance check of GRPO: one step on each fixture's recorded rollouts (the whole file
//! as one batch) matches the PyTorch reference for every loss type: per-token logprobs at the
//! temperature, loss, global grad norm, and tracked parameters after one AdamW step. The
//! config is written as a file and loaded the way `distill student grpo --config F` loads it;
//! everything it needs is read from the fixture's reference.json (no per-fixture constants).

mod common;
use common::*;

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use student::grpo::batch::target_logprobs;
use student::grpo::rollout::read_rollouts;

const LOSS_TYPES: [&str; 4] = ["grpo", "bnpo", "dr_grpo", "dapo"];

fn reference_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("grpo/reference.json")).unwrap()).unwrap()
}

/// The GRPO config of the fixture's reference step, as TOML text.
pub fn grpo_config_text(name: &str, loss_type: &str, out: &Path) -> String {
    let r = reference_json(name);
    let h = &r["hyper"];
    let a = &h["adamw"];
    format!(
        r#"[model]
path = "{model}"
[rollouts]
file = "{rollouts}"
[grpo]
num_generations = {g}
temperature = {t}
epsilon_low = {el}
epsilon_high = {eh}
beta = {beta}
loss_type = "{loss_type}"
scale_rewards = "{scale}"
max_completion_length = {mcl}
[optim]
lr = {lr}
betas = [{b1}, {b2}]
eps = {eps}
weight_decay = {wd}
no_decay = []
max_grad_norm = {mgn}
[schedule]
kind = "constant"
warmup_steps = 0
[train]
max_steps = 1
dtype = "f32"
seed = 1
[output]
dir = "{out}"
"#,
        model = fixture(name).display(),
        rollouts = fixture(name).join("grpo/rollouts.jsonl").display(),
        g = h["num_generations"],
        t = h["temperature"],
        el = h["epsilon_low"],
        eh = h["epsilon_high"],
        beta = h["beta"],
        scale = h["scale_rewards"].as_str().unwrap(),
        mcl = h["max_completion_length"],
        lr = a["lr"],
        b1 = a["betas"][0],
        b2 = a["betas"][1],
        eps = a["eps"],
        wd = a["weight_decay"],
        mgn = h["max_grad_norm"],
        out = out.display(),
    )
}

fn check_logprobs(name: &str) {
    let r = reference_json(name);
    let t = r["hyper"]["temperature"].as_f64().unwrap();
    let loaded = models::load_model::<Flex>(&fixture(name), &Default::default(), models::DType::F32).unwrap();
    let rollouts = read_rollouts(&fixture(name).join("grpo/rollouts.jsonl")).unwrap();
    let bytes = std::fs::read(fixture(name).join("grpo/reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (i, ro) in rollouts.iter().enumerate() {
        let mut ids = ro.prompt_ids.clone();
        ids.extend(&ro.completion_ids);
        let mut labels = vec![-100i64; ro.prompt_ids.len()];
        labels.extend(ro.completion_ids.iter().map(|&x| x as i64));
        let row = student::batch::TrainRow::single(ids, labels);
        let mb = student::batch::MicroBatch::new(&[&row], 0);
        // a small chunk so the chunked projection is exercised
        let lp = target_logprobs(&loaded.model, &mb, t, 4);
        let p = ro.prompt_ids.len();
        let got = &lp[p - 1..p - 1 + ro.completion_ids.len()];
        let (want, _) = read_tensor(&st, &format!("logps.{i}"));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}: logps.{i} differ by {worst}");
    }
}

/// Checks one finished run against the reference of `loss_type`.
pub fn check_run(name: &str, loss_type: &str, out: &Path) {
    let r = reference_json(name);
    let want = &r["loss_types"][loss_type];
    let m = student::grpo::read_grpo_metrics(out).unwrap();
    assert_eq!(m.len(), 1, "{name}/{loss_type}: one step");
    let (loss, gn) = (want["loss"].as_f64().unwrap(), want["grad_norm"].as_f64().unwrap());
    assert!((m[0].loss - loss).abs() < 1e-4, "{name}/{loss_type}: loss {} vs torch {loss}", m[0].loss);
    assert!((m[0].grad_norm - gn).abs() < 1e-4 * gn.max(1.0), "{name}/{loss_type}: grad_norm {} vs torch {gn}", m[0].grad_norm);
    let bytes = std::fs::read(fixture(name).join("grpo/reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tracked = r["tracked_params"].as_array().unwrap();
    assert!(!tracked.is_empty());
    for p in tracked {
        let p = p.as_str().unwrap();
        let (want, _) = read_tensor(&st, &format!("{loss_type}.after.{p}"));
        let got = checkpoint_tensor(&out.join("final"), p);
        assert_eq!(got.len(), want.len(), "{name}/{loss_type}: {p}");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}/{loss_type}: {p} differs from torch by {worst}");
        let before = checkpoint_tensor(&fixture(name), p);
        let moved = before.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(moved > 1e-4, "{name}/{loss_type}: {p} unchanged");
    }
}

fn run_fixture(name: &str, sets: &[&str]) {
    check_logprobs(name);
    let tmp = tempfile::tempdir().unwrap();
    for lt in LOSS_TYPES {
        let out = tmp.path().join(lt);
        let cfg_path = tmp.path().join(format!("{lt}.toml"));
        std::fs::write(&cfg_path, grpo_config_text(name, lt, &out)).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let cfg = student::GrpoConfig::load(&cfg_path, &sets).unwrap();
        let opts = student::RunOptions::default();
        let s = student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &opts).unwrap();
        assert_eq!(s.steps, 1);
        assert!(!s.reference_loaded, "the rollouts carry ref_logprobs: no reference model");
        check_run(name, lt, &out);
    }
}

#[test]
fn qwen2_grpo_step_matches_pytorch() {
    run_fixture("qwen2", &[]);
}

#[test]
fn llama3_grpo_step_matches_pytorch() {
    run_fixture("llama3", &[]);
}

#[test]
fn autodiff_path_and_micro_batches_match_pytorch() {
    // the reference (autodiff) logprob path, small logits chunks, and the step split into
    // several micro-batches give the same step
    run_fixture("qwen2", &["grpo.fused=false", "grpo.loss_chunk=3", "grpo.micro_batch_tokens=40"]);
}

#[test]
fn beta_zero_loads_no_reference_and_beta_needs_one() {
    let tmp = tempfile::tempdir().unwrap();
    // rollouts without ref_logprobs
    let src = read_rollouts(&fixture("qwen2").join("grpo/rollouts.jsonl")).unwrap();
    let stripped = tmp.path().join("r.jsonl");
    let mut text = String::new();
    for mut r in src {
        r.ref_logprobs = None;
        text.push_str(&serde_json::to_string(&r).unwrap());
        text.push('\n');
    }
    std::fs::write(&stripped, text).unwrap();
    let missing = tmp.path().join("no-such-reference");
    let cfg_path = tmp.path().join("c.toml");
    std::fs::write(&cfg_path, grpo_config_text("qwen2", "dapo", &tmp.path().join("out"))).unwrap();
    let sets = |beta: &str| {
        vec![
            format!("rollouts.file=\"{}\"", stripped.display()),
            format!("grpo.reference=\"{}\"", missing.display()),
            format!("grpo.beta={beta}"),
        ]
    };
    let opts = student::RunOptions::default();
    let cfg = student::GrpoConfig::load(&cfg_path, &sets("0.0")).unwrap();
    let s = student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &opts).unwrap();
    assert!(!s.reference_loaded);
    let m = student::grpo::read_grpo_metrics(&tmp.path().join("out")).unwrap();
    assert_eq!(m[0].kl, 0.0);
    let cfg = student::GrpoConfig::load(&cfg_path, &sets("0.04")).unwrap();
    // a second run in the same directory must say it replaces the first
    let opts = student::RunOptions { overwrite: true, ..Default::default() };
    let e = student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &opts).unwrap_err();
    let chain = format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
    assert!(chain.contains("no-such-reference"), "{chain}");
}

#[test]
fn on_policy_batches_skip_the_old_logprob_pass_and_train_the_same() {
    // Rollouts without old_logprobs: with num_iterations = 1 the step takes the current
    // logprobs (detached) as old, like TRL; with num_iterations = 2 it computes them with a
    // forward pass first. The first step must be the same either way.
    let tmp = tempfile::tempdir().unwrap();
    let src = read_rollouts(&fixture("qwen2").join("grpo/rollouts.jsonl")).unwrap();
    let stripped = tmp.path().join("r.jsonl");
    let mut text = String::new();
    for mut r in src {
        r.old_logprobs = None;
        text.push_str(&serde_json::to_string(&r).unwrap());
        text.push('\n');
    }
    std::fs::write(&stripped, text).unwrap();
    let run = |iterations: u32| {
        let out = tmp.path().join(format!("it{iterations}"));
        let cfg_path = tmp.path().join(format!("it{iterations}.toml"));
        std::fs::write(&cfg_path, grpo_config_text("qwen2", "dapo", &out)).unwrap();
        let sets = vec![format!("rollouts.file=\"{}\"", stripped.display()), format!("grpo.num_iterations={iterations}")];
        let cfg = student::GrpoConfig::load(&cfg_path, &sets).unwrap();
        student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &student::RunOptions::default()).unwrap();
        let m = student::grpo::read_grpo_metrics(&out).unwrap().remove(0);
        (out, m)
    };
    let ((on_out, on), (off_out, off)) = (run(1), run(2));
    assert_eq!(on.score_s, 0.0, "no old-logprob pass on-policy");
    assert!(off.score_s > 0.0);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
    assert!(close(on.loss, off.loss), "loss {} vs {}", on.loss, off.loss);
    assert!(close(on.grad_norm, off.grad_norm), "grad norm {} vs {}", on.grad_norm, off.grad_norm);
    for p in ["model.layers.0.self_attn.q_proj.weight", "model.norm.weight"] {
        let (a, b) = (checkpoint_tensor(&on_out.join("final"), p), checkpoint_tensor(&off_out.join("final"), p));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "{p}: {worst}");
    }
}
