//! Native GRPO: completions sampled in-process from a tiny random-init policy with a real chat
//! template, graded against the problems' answers, trained; a run resumed from a checkpoint in
//! the middle of a reused rollout batch (`num_iterations = 2`) ends bit-identical to the
//! uninterrupted run.

mod common;
use common::checkpoint_tensor;

use std::path::Path;

use burn::backend::{Autodiff, Flex};

fn config(dir: &Path, out: &Path) -> String {
    let problems = dir.join("problems.jsonl");
    std::fs::write(
        &problems,
        "{\"id\":\"a\",\"problem\":\"What is 2+3?\",\"answer\":\"5\"}\n{\"id\":\"b\",\"problem\":\"What is 7*6?\",\"answer\":\"42\"}\n",
    )
    .unwrap();
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/tokenizers/deepseek-r1-distill-qwen");
    format!(
        r#"[model]
init = "random"
tokenizer = "{tok}"
[model.arch]
model_type = "qwen2"
vocab_size = 151936
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
max_position_embeddings = 512
rms_norm_eps = 1e-6
rope_theta = 10000.0
tie_word_embeddings = true
[rollouts]
problems = "{problems}"
groups_per_step = 2
format_reward = 0.5
[grpo]
num_generations = 3
temperature = 1.0
max_completion_length = 6
num_iterations = 2
loss_type = "grpo"
[optim]
lr = 1e-2
[schedule]
kind = "constant"
[train]
max_steps = 2
seed = 5
[output]
dir = "{out}"
save_every = 1
keep_last = 0
"#,
        tok = tok.display(),
        problems = problems.display(),
        out = out.display()
    )
}

fn run(cfg_text: &str, resume: bool) -> student::GrpoSummary {
    let cfg = student::GrpoConfig::from_toml_str(cfg_text, &[], "test", None).unwrap();
    let opts = student::RunOptions { resume, ..Default::default() };
    student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &opts).unwrap()
}

#[test]
fn native_rollouts_train_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let ra = run(&config(tmp.path(), &a), false);
    assert_eq!(ra.steps, 2);
    let m = student::grpo::read_grpo_metrics(&a).unwrap();
    assert_eq!(m.len(), 2);
    for s in &m {
        assert!(s.completion_length_max <= 6 && s.completion_length_mean > 0.0, "{s:?}");
        assert!(s.accuracy.is_some() && s.format_reward.is_some());
        assert!((0.0..=1.5).contains(&s.reward_mean), "{s:?}");
        assert!(s.loss.is_finite() && s.grad_norm.is_finite() && s.entropy > 0.0, "{s:?}");
    }
    assert_eq!((m[0].iteration, m[1].iteration), (0, 1));
    assert!(m[0].generate_s > 0.0 && m[1].generate_s == 0.0, "the batch is sampled once, reused once");
    // the checkpoint of step 1 keeps the batch that step 2 reuses
    let ck = a.join("checkpoint-1");
    assert!(ck.join("rollouts-0.jsonl").is_file());
    // resume from it in a fresh directory: same step 2, same final weights
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(&ck).arg(b.join("checkpoint-1")).status().unwrap();
    assert!(status.success());
    let rb = run(&config(tmp.path(), &b), true);
    assert_eq!(rb.resumed_from.as_deref(), Some(b.join("checkpoint-1").as_path()));
    let mb = student::grpo::read_grpo_metrics(&b).unwrap();
    assert_eq!(mb.last().unwrap().step, 2);
    assert_eq!(mb.last().unwrap().loss, m[1].loss);
    assert_eq!(mb.last().unwrap().grad_norm, m[1].grad_norm);
    for p in ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.self_attn.q_proj.weight"] {
        assert_eq!(checkpoint_tensor(&ra.final_dir, p), checkpoint_tensor(&rb.final_dir, p), "{p}");
    }
}

/// Dynamic sampling on a policy that solves nothing: every group has zero variance, so each
/// batch is resampled for `max_resample_rounds` extra rounds and the counts land in
/// metrics.jsonl; held-out pass@1 is written every `eval_every` steps and at the last one.
#[test]
fn dynamic_sampling_counts_and_heldout_pass1_reach_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d");
    let text = config(tmp.path(), &out);
    let problems = tmp.path().join("problems.jsonl");
    let overrides = [
        "grpo.dynamic_sampling=true".to_string(),
        "grpo.max_resample_rounds=1".into(),
        "grpo.num_iterations=1".into(),
        "rollouts.format_reward=0.0".into(),
        "train.max_steps=3".into(),
        "train.eval_every=2".into(),
        format!("eval.problems=\"{}\"", problems.display()),
        "eval.samples=2".into(),
        "output.save_every=0".into(),
    ];
    let cfg = student::GrpoConfig::from_toml_str(&text, &overrides, "test", None).unwrap();
    let s = student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &Default::default()).unwrap();
    let m = student::grpo::read_grpo_metrics(&out).unwrap();
    assert_eq!(m.len(), 3);
    for x in &m {
        assert_eq!(x.zero_std_share, 1.0, "a random policy solves nothing: {x:?}");
        // round 0: 2 groups, both dropped; one extra round asks 2 / 0.25 = 8 prompts
        assert_eq!((x.resampled_groups, x.dropped_groups, x.groups), (8, 10, 2), "{x:?}");
    }
    let evals: Vec<(u64, Option<f64>)> = m.iter().map(|x| (x.step, x.eval_pass1)).collect();
    assert_eq!(evals, vec![(1, None), (2, Some(0.0)), (3, Some(0.0))]);
    assert!(m[1].eval_s > 0.0 && m[0].eval_s == 0.0);
    assert_eq!(s.last_eval_pass1, Some(0.0));
}
