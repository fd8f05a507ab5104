//! `distill serve` behaving the way vLLM users expect (issue 14): generation_config defaults,
//! logprobs in both shapes (checked against an independent forward pass), repetition_penalty,
//! min_tokens, ignore_eos, stop_token_ids and stop_reason, per-choice seeds, fields it does not
//! implement refused by name, precise errors, the reasoning parser, system_fingerprint and
//! SGLang's `/update_weights_from_disk`.

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::tensor::activation::log_softmax;
use inference::native::NativeModel;
use inference::reasoning_parser::ReasoningParser;
use inference::server::{router_with_options, ServeOptions, ServerLimits};
use serde_json::{json, Value};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2")
}

fn tiny_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture_dir(), dir.path()).unwrap();
    dir
}

fn tiny_model(dir: &Path) -> NativeModel {
    let engine = models::EngineConfig {
        max_batch: 8,
        max_seq_len: 256,
        ..Default::default()
    };
    NativeModel::load::<Flex>(
        dir,
        FlexDevice,
        burn::tensor::DType::F32,
        engine,
        Some("tiny".into()),
    )
    .unwrap()
}

struct Server {
    base: String,
    root: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(model: NativeModel, options: ServeOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router_with_options(model, None, ServerLimits::default(), options);
    tokio::spawn(inference::server::serve(listener, app, async {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}/v1"),
        root: format!("http://{addr}"),
        _stop: tx,
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(url: &str, body: Value) -> Value {
    let (s, v) = post(url, body.clone()).await;
    assert_eq!(s, 200, "{body} → {v}");
    v
}

fn ids_of(choice: &Value) -> Vec<u32> {
    choice["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| inference::logprobs::parse_token_id(t.as_str().unwrap()).unwrap())
        .collect()
}

/// Logprobs of `completion` after `prompt` under the checkpoint in `dir`, from one full
/// forward pass (not the engine's cached decode).
fn reference_logprobs(dir: &Path, prompt: &[u32], completion: &[u32]) -> Vec<f32> {
    let m = models::load_model::<Flex>(dir, &FlexDevice, burn::tensor::DType::F32)
        .unwrap()
        .model;
    let row: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let input = models::ForwardInput::<Flex>::from_rows(&[row], &FlexDevice).unwrap();
    let logits = models::CausalLm::forward(&m, input);
    let lp = log_softmax(logits, 2).into_data().to_vec::<f32>().unwrap();
    let v = models::CausalLm::<Flex>::config(&m).vocab_size;
    completion
        .iter()
        .enumerate()
        .map(|(i, &id)| lp[(prompt.len() - 1 + i) * v + id as usize])
        .collect()
}

/// Raw next-token logits after `prompt` (one forward pass).
fn last_logits(dir: &Path, prompt: &[u32]) -> Vec<f32> {
    let m = models::load_model::<Flex>(dir, &FlexDevice, burn::tensor::DType::F32)
        .unwrap()
        .model;
    let input = models::ForwardInput::<Flex>::from_rows(&[prompt.to_vec()], &FlexDevice).unwrap();
    let logits = models::CausalLm::forward(&m, input)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let v = models::CausalLm::<Flex>::config(&m).vocab_size;
    logits[(prompt.len() - 1) * v..prompt.len() * v].to_vec()
}

fn argmax(l: &[f32]) -> u32 {
    models::sampling::argmax(l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_config_defaults_apply_to_requests_that_omit_them() {
    let ckpt = tiny_checkpoint();
    let gen_path = ckpt.path().join("generation_config.json");
    let mut gen: Value =
        serde_json::from_str(&std::fs::read_to_string(&gen_path).unwrap()).unwrap();
    gen["top_k"] = json!(1);
    std::fs::write(&gen_path, gen.to_string()).unwrap();
    let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let url = format!("{}/completions", server.base);
    let greedy = ok(
        &url,
        json!({"prompt": "defaults", "max_tokens": 12, "temperature": 0}),
    )
    .await;
    for _ in 0..3 {
        // temperature 1, no seed: only generation_config's top_k = 1 makes this greedy.
        let v = ok(
            &url,
            json!({"prompt": "defaults", "max_tokens": 12, "temperature": 1.0}),
        )
        .await;
        assert_eq!(v["choices"][0]["text"], greedy["choices"][0]["text"]);
    }
    // A request's own value wins over the default.
    let texts: std::collections::HashSet<String> = futures::future::join_all((0..4).map(|_| {
        ok(
            &url,
            json!({"prompt": "defaults", "max_tokens": 12, "temperature": 1.0, "top_k": -1}),
        )
    }))
    .await
    .iter()
    .map(|v| v["choices"][0]["text"].as_str().unwrap().to_string())
    .collect();
    assert!(texts.len() >= 2, "top_k -1 samples freely: {texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_in_both_shapes_match_an_independent_forward_pass() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let prompt: Vec<u32> = vec![257, 104, 105, 32, 116];
    let v = ok(
        &format!("{}/completions", server.base),
        json!({"prompt": prompt, "max_tokens": 6, "temperature": 1.0, "seed": 3, "logprobs": 2,
               "return_tokens_as_token_ids": true}),
    )
    .await;
    let c = &v["choices"][0];
    let ids = ids_of(c);
    assert_eq!(
        ids.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let served: Vec<f32> = c["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let want = reference_logprobs(ckpt.path(), &prompt, &ids);
    for (s, w) in served.iter().zip(&want) {
        assert!(
            (s - w).abs() < 1e-4,
            "served {served:?} vs forward {want:?}"
        );
    }
    let tops = c["logprobs"]["top_logprobs"].as_array().unwrap();
    assert!(tops
        .iter()
        .all(|t| (2..=3).contains(&t.as_object().unwrap().len())));
    let offsets = c["logprobs"]["text_offset"].as_array().unwrap();
    assert_eq!(offsets[0], 0);
    assert_eq!(v["choices"][0]["stop_reason"], Value::Null);

    // Chat shape: logprobs.content[{token, logprob, bytes, top_logprobs}].
    let v = ok(
        &format!("{}/chat/completions", server.base),
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0,
               "logprobs": true, "top_logprobs": 3}),
    )
    .await;
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for e in content {
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["logprob"], e["logprob"], "{e}");
        assert!(e["bytes"].is_array() && e["token"].is_string());
    }
    assert!(v["system_fingerprint"]
        .as_str()
        .is_some_and(|f| f.starts_with("fp_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ids_min_tokens_ignore_eos_and_repetition_penalty() {
    let ckpt = tiny_checkpoint();
    let prompt: Vec<u32> = vec![257, 97, 98, 99];
    let base = json!({"prompt": prompt, "max_tokens": 10, "temperature": 0, "logprobs": 0,
                      "return_tokens_as_token_ids": true});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let ids = {
        let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
        let url = format!("{}/completions", server.base);
        let v = ok(&url, base.clone()).await;
        let ids = ids_of(&v["choices"][0]);
        assert_eq!(
            ids.len(),
            10,
            "no EOS in the greedy text of the fixture: {ids:?}"
        );
        let x = ids[1];
        let first = ids.iter().position(|&i| i == x).unwrap();
        // stop_token_ids ends at the first x; stop_reason names it.
        let v = ok(&url, with(json!({"stop_token_ids": [x]}))).await;
        assert_eq!(ids_of(&v["choices"][0]), ids[..=first].to_vec());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["choices"][0]["stop_reason"], json!(x));
        // min_tokens: x cannot end it before 5 tokens.
        let v = ok(&url, with(json!({"stop_token_ids": [x], "min_tokens": 5}))).await;
        let got = ids_of(&v["choices"][0]);
        assert!(
            got.len() >= 5 && got[..got.len() - 1].iter().skip(5).all(|&i| i != x),
            "{got:?}"
        );
        // repetition_penalty: find a prompt whose greedy next token is already in it, then the
        // server's penalised choice must be HF's (seen logits: positive / p, negative · p).
        let mut p: Vec<u32> = vec![257, 97];
        let (logits, top) = loop {
            let l = last_logits(ckpt.path(), &p);
            let top = argmax(&l);
            if p.contains(&top) {
                break (l, top);
            }
            p.insert(1, top);
            assert!(p.len() < 120, "no repeating prompt found");
        };
        let mut pen = logits.clone();
        for &id in &p {
            let l = &mut pen[id as usize];
            *l = if *l > 0.0 { *l / 5.0 } else { *l * 5.0 };
        }
        let want = argmax(&pen);
        assert_ne!(want, top);
        let one = json!({"prompt": p, "max_tokens": 1, "temperature": 0, "logprobs": 0,
                         "return_tokens_as_token_ids": true, "repetition_penalty": 5.0});
        assert_eq!(ids_of(&ok(&url, one).await["choices"][0]), vec![want]);
        ids
    };
    // Make the second greedy id the EOS: the text ends there unless ignore_eos.
    let gen_path = ckpt.path().join("generation_config.json");
    let mut gen: Value =
        serde_json::from_str(&std::fs::read_to_string(&gen_path).unwrap()).unwrap();
    gen["eos_token_id"] = json!(ids[1]);
    std::fs::write(&gen_path, gen.to_string()).unwrap();
    let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let url = format!("{}/completions", server.base);
    let first = ids.iter().position(|&i| i == ids[1]).unwrap();
    let v = ok(&url, base.clone()).await;
    assert_eq!(ids_of(&v["choices"][0]).len(), first + 1);
    assert_eq!(
        v["choices"][0]["stop_reason"],
        Value::Null,
        "EOS has no stop_reason"
    );
    let v = ok(&url, with(json!({"ignore_eos": true}))).await;
    assert_eq!(ids_of(&v["choices"][0]), ids);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_of_choices_do_not_overlap_across_requests_and_stop_strings_are_reported() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let url = format!("{}/completions", server.base);
    let two = ok(
        &url,
        json!({"prompt": "seeded", "max_tokens": 16, "temperature": 1.0, "seed": 5, "n": 2}),
    )
    .await;
    let six = ok(
        &url,
        json!({"prompt": "seeded", "max_tokens": 16, "temperature": 1.0, "seed": 6}),
    )
    .await;
    assert_ne!(
        two["choices"][1]["text"], six["choices"][0]["text"],
        "choice 1 of seed 5 is not choice 0 of seed 6"
    );
    let full = ok(
        &url,
        json!({"prompt": "stop test", "max_tokens": 16, "temperature": 0}),
    )
    .await;
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    let stop: String = text.chars().nth(2).unwrap().to_string();
    let v = ok(
        &url,
        json!({"prompt": "stop test", "max_tokens": 16, "temperature": 0, "stop": [stop.clone()]}),
    )
    .await;
    assert_eq!(v["choices"][0]["stop_reason"], json!(stop));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_fields_and_bad_values_get_precise_400s() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let chat = format!("{}/chat/completions", server.base);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"messages": msgs, "max_tokens": -1}),
            "max_tokens must be ≥ 1",
            Some("max_tokens"),
        ),
        (json!({"model": "tiny"}), "missing field `messages`", None),
        (
            json!({"messages": msgs, "frequency_penalty": 0.5}),
            "frequency_penalty",
            Some("frequency_penalty"),
        ),
        (json!({"messages": msgs, "best_of": 3}), "best_of", None),
        (
            json!({"messages": msgs, "logit_bias": {"5": 10}}),
            "logit_bias",
            Some("logit_bias"),
        ),
        (
            json!({"messages": msgs, "top_logprobs": 2}),
            "needs logprobs",
            Some("top_logprobs"),
        ),
        (
            json!({"messages": msgs, "n": "two"}),
            "n must be an integer",
            Some("n"),
        ),
    ];
    for (body, text, param) in cases {
        let (s, v) = post(&chat, body.clone()).await;
        assert_eq!(s, 400, "{body} → {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(text), "{body}: {m}");
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{v}");
        }
    }
    // Neutral values of unimplemented fields are fine.
    let (s, v) = post(
        &chat,
        json!({"messages": msgs, "max_tokens": 2, "presence_penalty": 0, "user": "u"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_parser_splits_think_in_whole_and_streamed_answers() {
    let ckpt = tiny_checkpoint();
    let plain = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let options = ServeOptions {
        reasoning_parser: Some(ReasoningParser::DeepSeekR1),
    };
    let parsed = start(tiny_model(ckpt.path()), options).await;
    let body = json!({"messages": [{"role": "user", "content": "think"}], "max_tokens": 12, "temperature": 0});
    let raw = ok(&format!("{}/chat/completions", plain.base), body.clone()).await;
    let raw_text = raw["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let (want_r, want_c) = ReasoningParser::DeepSeekR1.split(&raw_text);
    let v = ok(&format!("{}/chat/completions", parsed.base), body.clone()).await;
    let msg = &v["choices"][0]["message"];
    assert_eq!(
        msg["reasoning_content"].as_str().map(String::from),
        want_r,
        "{v}"
    );
    assert_eq!(msg["content"].as_str().map(String::from), want_c, "{v}");
    assert!(
        want_r.is_some(),
        "the template opened <think>: the answer starts as reasoning"
    );
    // Streamed deltas add up to the same split.
    let mut sbody = body;
    sbody["stream"] = json!(true);
    let text = reqwest::Client::new()
        .post(format!("{}/chat/completions", parsed.base))
        .json(&sbody)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (mut r, mut c) = (String::new(), String::new());
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        if let Some(d) = chunk["choices"].get(0).map(|ch| &ch["delta"]) {
            r.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            c.push_str(d["content"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(
        (
            Some(r).filter(|s| !s.is_empty()),
            Some(c).filter(|s| !s.is_empty())
        ),
        (want_r, want_c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_weights_from_disk_swaps_the_served_weights() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), ServeOptions::default()).await;
    let url = format!("{}/completions", server.base);
    let prompt: Vec<u32> = vec![257, 120, 121];
    let req = json!({"prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 0, "return_tokens_as_token_ids": true});
    let before = ok(&url, req.clone()).await;
    // A second checkpoint with every weight scaled: same architecture, other logits.
    let other = tempfile::tempdir().unwrap();
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture_dir(), other.path()).unwrap();
    let m = models::load_model::<Flex>(ckpt.path(), &FlexDevice, burn::tensor::DType::F32).unwrap();
    let scaled = burn::module::Module::map(m.model, &mut Scale(1.5));
    let cfg = models::ModelConfig::from_dir(ckpt.path()).unwrap();
    let gen = models::GenerationConfig::from_dir(ckpt.path(), &cfg).unwrap();
    let opts = models::SaveOptions {
        overwrite: true,
        ..Default::default()
    };
    models::save_model(other.path(), &scaled, &cfg, &gen, &opts).unwrap();
    let fp0 = before["system_fingerprint"].clone();
    let (s, v) = post(
        &format!("{}/update_weights_from_disk", server.root),
        json!({"model_path": other.path()}),
    )
    .await;
    assert_eq!((s, &v["success"]), (200, &json!(true)), "{v}");
    let after = ok(&url, req).await;
    assert_ne!(after["system_fingerprint"], fp0);
    let ids = ids_of(&after["choices"][0]);
    let served: Vec<f32> = after["choices"][0]["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let want = reference_logprobs(other.path(), &prompt, &ids);
    for (a, b) in served.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{served:?} vs {want:?}");
    }
    assert_ne!(
        before["choices"][0]["logprobs"],
        after["choices"][0]["logprobs"]
    );
    // Not a checkpoint, or another architecture: refused, old weights keep serving.
    let (s, v) = post(
        &format!("{}/update_weights_from_disk", server.root),
        json!({"model_path": "/nonexistent"}),
    )
    .await;
    assert_eq!((s, &v["success"]), (400, &json!(false)), "{v}");
    let (s, v) = post(
        &format!("{}/update_weights_from_disk", server.root),
        json!({"path": "x"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
}

/// Multiplies every float parameter by a constant.
struct Scale(f32);

impl<B: burn::prelude::Backend> burn::module::ModuleMapper<B> for Scale {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::prelude::Tensor<B, D>>,
    ) -> burn::module::Param<burn::prelude::Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        burn::module::Param::from_mapped_value(id, tensor.mul_scalar(self.0), mapper)
    }
}
