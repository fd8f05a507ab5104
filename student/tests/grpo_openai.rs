//! `[rollouts] source = "openai"` against an in-process `distill serve` on the tiny fixture: a
//! GRPO step whose rollouts (ids and old logprobs) come from the server, then the policy saved
//! and the server told to reload it through `/update_weights_from_disk`; afterwards the
//! server's logprob of a fixed completion equals the trained policy's within 1e-4.

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::log_softmax;
use serde_json::{json, Value};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2")
}

/// Logprobs of `completion` after `prompt` under the checkpoint in `dir` (one forward pass).
fn logprobs_under(dir: &Path, prompt: &[u32], completion: &[u32]) -> Vec<f32> {
    let m = models::load_model::<Flex>(dir, &FlexDevice, burn::tensor::DType::F32).unwrap().model;
    let row: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let input = models::ForwardInput::<Flex>::from_rows(&[row], &FlexDevice).unwrap();
    let logits = models::CausalLm::forward(&m, input);
    let v = models::CausalLm::<Flex>::config(&m).vocab_size;
    let lp = log_softmax(logits, 2).into_data().to_vec::<f32>().unwrap();
    completion.iter().enumerate().map(|(i, &id)| lp[(prompt.len() - 1 + i) * v + id as usize]).collect()
}

/// One sampled completion with the server's logprobs: (ids, logprobs).
fn sample(rt: &tokio::runtime::Runtime, base: &str, prompt: &[u32]) -> (Vec<u32>, Vec<f32>) {
    let body = json!({"prompt": prompt, "max_tokens": 6, "temperature": 1.0, "seed": 11,
                      "logprobs": 0, "return_tokens_as_token_ids": true});
    let v: Value = rt.block_on(async {
        reqwest::Client::new().post(format!("{base}/completions")).json(&body).send().await.unwrap().json().await.unwrap()
    });
    let lp = &v["choices"][0]["logprobs"];
    let ids = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| inference::logprobs::parse_token_id(t.as_str().unwrap()).unwrap())
        .collect();
    let lps = lp["token_logprobs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    (ids, lps)
}

#[test]
fn openai_rollouts_then_reload_keep_the_server_on_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("policy0");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture_dir(), &ckpt).unwrap();
    // Many EOS ids: the random policy's completions end at varied lengths, so the overlong
    // penalty gives each group reward variance (and the step a gradient).
    let gen_path = ckpt.join("generation_config.json");
    let mut gen: Value = serde_json::from_str(&std::fs::read_to_string(&gen_path).unwrap()).unwrap();
    gen["eos_token_id"] = json!((0..160).collect::<Vec<u32>>());
    std::fs::write(&gen_path, gen.to_string()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = models::EngineConfig { max_batch: 8, max_seq_len: 256, ..Default::default() };
    let model = inference::NativeModel::load::<Flex>(&ckpt, FlexDevice, burn::tensor::DType::F32, engine, Some("tiny".into())).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = inference::server::router(model, None, inference::server::ServerLimits::default());
    rt.spawn(inference::server::serve(listener, app, std::future::pending()));

    let prompt: Vec<u32> = vec![257, 50, 43, 50, 61];
    let (ids0, lp0) = sample(&rt, &base, &prompt);
    let initial = logprobs_under(&ckpt, &prompt, &ids0);
    for (a, b) in lp0.iter().zip(&initial) {
        assert!((a - b).abs() < 1e-4, "server {lp0:?} vs policy {initial:?}");
    }

    let problems = tmp.path().join("problems.jsonl");
    std::fs::write(&problems, "{\"id\":\"a\",\"problem\":\"2+3?\",\"answer\":\"5\"}\n{\"id\":\"b\",\"problem\":\"7*6?\",\"answer\":\"42\"}\n").unwrap();
    let out = tmp.path().join("run");
    let text = format!(
        r#"[model]
path = "{ckpt}"
[rollouts]
source = "openai"
base_url = "{base}"
problems = "{problems}"
groups_per_step = 2
r1_instruction = false
[grpo]
num_generations = 4
temperature = 1.0
max_completion_length = 6
overlong_buffer = 5
loss_type = "grpo"
[optim]
lr = 5e-2
[schedule]
kind = "constant"
[train]
max_steps = 1
seed = 3
[output]
dir = "{out}"
save_every = 0
"#,
        ckpt = ckpt.display(),
        problems = problems.display(),
        out = out.display()
    );
    let cfg = student::GrpoConfig::from_toml_str(&text, &[], "test", None).unwrap();
    let summary = student::train_grpo::<Autodiff<Flex>>(&cfg, &Default::default(), &Default::default()).unwrap();
    assert_eq!(summary.steps, 1);
    let m = student::grpo::read_grpo_metrics(&out).unwrap();
    assert!(m[0].completion_length_mean > 0.0 && m[0].grad_norm > 0.0, "{:?}", m[0]);
    assert!(out.join("rollout-policy/config.json").is_file());

    // The server now serves the trained policy: its logprobs of a fixed completion equal the
    // trainer's final weights' and differ from the initial ones.
    let (ids1, lp1) = sample(&rt, &base, &prompt);
    let trained = logprobs_under(&summary.final_dir, &prompt, &ids1);
    let before = logprobs_under(&ckpt, &prompt, &ids1);
    for (a, b) in lp1.iter().zip(&trained) {
        assert!((a - b).abs() < 1e-4, "server {lp1:?} vs trained policy {trained:?}");
    }
    let moved = lp1.iter().zip(&before).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the step changed the served logprobs: {lp1:?} vs {before:?}");
}
