//! `distill serve` in-process over the tiny Qwen2 fixture (with the byte-level test tokenizer),
//! exercised over loopback HTTP: the OpenAI backend against it, batching invariance, seeds,
//! streaming, stop strings, limits and OpenAI-style errors. (The teacher sampler against it is
//! `teacher/tests/serve_sampling.rs`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use inference::backend::{Backend, ChatRequest, Prompt};
use inference::native::NativeModel;
use inference::openai::{ApiKind, OpenAiBackend, OpenAiConfig};
use inference::server::{router, ServerLimits};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2")
}

/// The fixture weights + byte tokenizer in a temp checkpoint directory.
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
    NativeModel::load::<burn::backend::Flex>(
        dir,
        burn::backend::flex::FlexDevice,
        burn::tensor::DType::F32,
        engine,
        Some("tiny".into()),
    )
    .unwrap()
}

struct Server {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(model: NativeModel, key: Option<&str>, limits: ServerLimits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(model, key.map(str::to_string), limits);
    tokio::spawn(inference::server::serve(listener, app, async {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}/v1"),
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

async fn complete_text(base: &str, prompt: &str, extra: Value) -> Value {
    let mut body = json!({"model": "tiny", "prompt": prompt, "max_tokens": 8, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, v) = post(&format!("{base}/completions"), body).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_backend_and_sampler_against_serve() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), None, ServerLimits::default()).await;

    let models: Value = reqwest::get(format!("{}/models", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");

    // Distinct seeds give (almost surely) distinct samples of the same prompt, through the
    // HTTP backend on the chat endpoint.
    let cfg = OpenAiConfig {
        base_urls: vec![server.base.clone()],
        model: "tiny".into(),
        ..Default::default()
    };
    let backend = Arc::new(OpenAiBackend::new(cfg).unwrap());
    let mut texts = std::collections::HashSet::new();
    for seed in 0..3 {
        let c = backend
            .complete(ChatRequest {
                prompt: Prompt::Messages(vec![inference::Message::user("1+1?")]),
                max_tokens: 6,
                temperature: 0.6,
                top_p: 0.95,
                seed: Some(seed),
                stop: vec![],
            })
            .await
            .unwrap();
        assert!(c.error.is_none(), "{:?}", c.error);
        assert!((1..=6).contains(&c.completion_tokens), "{}", c.completion_tokens);
        assert!(c.prompt_tokens > 10, "chat template applied: {}", c.prompt_tokens);
        texts.insert(c.completion);
    }
    assert!(texts.len() >= 2, "samples differ: {texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_outputs_do_not_depend_on_batching_or_streaming() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), None, ServerLimits::default()).await;
    let prompts: Vec<String> = (0..6)
        .map(|i| format!("prompt number {i} {}", "x".repeat(i * 3)))
        .collect();
    let mut alone = Vec::new();
    for p in &prompts {
        let v = complete_text(&server.base, p, json!({})).await;
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 8);
        alone.push(v["choices"][0]["text"].as_str().unwrap().to_string());
    }
    let together = futures::future::join_all(
        prompts
            .iter()
            .map(|p| complete_text(&server.base, p, json!({}))),
    )
    .await;
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a, t["choices"][0]["text"].as_str().unwrap());
    }
    // Streaming through our client gives the same text.
    let cfg = OpenAiConfig {
        base_urls: vec![server.base.clone()],
        model: "tiny".into(),
        api: ApiKind::Completions,
        stream: true,
        ..Default::default()
    };
    let client = OpenAiBackend::new(cfg).unwrap();
    let c = client
        .complete(ChatRequest {
            prompt: Prompt::Text(prompts[2].clone()),
            max_tokens: 8,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: vec![],
        })
        .await
        .unwrap();
    assert_eq!(c.completion, alone[2]);
    assert!(c.completion_tokens > 0);

    // Raw SSE shape of a chat stream: role first, finish reason, usage, [DONE].
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                      "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let text = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let first: Value = serde_json::from_str(events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["object"], "chat.completion.chunk");
    let usage: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert!(events.iter().any(|e| e.contains("\"finish_reason\":\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_n_and_stop_strings() {
    let ckpt = tiny_checkpoint();
    let server = start(tiny_model(ckpt.path()), None, ServerLimits::default()).await;
    let sampled = json!({"temperature": 1.0, "seed": 5, "max_tokens": 12});
    let a = complete_text(&server.base, "seeded", sampled.clone()).await;
    let b = complete_text(&server.base, "seeded", sampled).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    let n3 = complete_text(
        &server.base,
        "seeded",
        json!({"temperature": 1.0, "seed": 5, "max_tokens": 12, "n": 3}),
    )
    .await;
    let choices = n3["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(
        choices[0]["text"], a["choices"][0]["text"],
        "choice i uses seed + i"
    );
    assert_eq!(choices[2]["index"], 2);

    // Stop string: cut the greedy text at its second character.
    let full = complete_text(&server.base, "stop test", json!({"max_tokens": 16})).await;
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(
        chars.len() >= 3,
        "greedy text too short for the test: {text:?}"
    );
    let stop = chars[1].to_string();
    let cut = complete_text(
        &server.base,
        "stop test",
        json!({"max_tokens": 16, "stop": [stop.clone()]}),
    )
    .await;
    let pos = text.find(&stop).unwrap();
    assert_eq!(cut["choices"][0]["text"].as_str().unwrap(), &text[..pos]);
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");

    // Token-id prompts.
    let ids = complete_text(
        &server.base,
        "",
        json!({"prompt": [257, 104, 105], "max_tokens": 3}),
    )
    .await;
    assert_eq!(ids["usage"]["prompt_tokens"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let ckpt = tiny_checkpoint();
    let limits = ServerLimits {
        max_body_bytes: 2048,
        max_tokens: 64,
        max_n: 4,
        ..Default::default()
    };
    let server = start(tiny_model(ckpt.path()), None, limits).await;
    let chat = format!("{}/chat/completions", server.base);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"model": "tiny", "messages": msgs, "max_tokens": 65}),
            400,
            "max_tokens",
        ),
        (
            json!({"model": "tiny", "messages": msgs, "max_tokens": 0}),
            400,
            "max_tokens",
        ),
        (json!({"model": "tiny", "messages": msgs, "n": 5}), 400, "n"),
        (
            json!({"model": "tiny", "messages": msgs, "temperature": 3}),
            400,
            "temperature",
        ),
        (
            json!({"model": "tiny", "messages": msgs, "top_p": 0}),
            400,
            "top_p",
        ),
        (json!({"model": "tiny", "messages": []}), 400, "messages"),
        (
            json!({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            "messages",
        ),
        (json!({"model": "other", "messages": msgs}), 404, "model"),
        (json!({"model": "tiny"}), 400, ""),
    ];
    for (body, status, param) in cases {
        let (s, v) = post(&chat, body.clone()).await;
        assert_eq!(s, status, "{body} → {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(v["error"]["type"].is_string());
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{v}");
        }
    }
    // Context overflow: a prompt longer than the engine's capacity.
    let long = "y".repeat(300);
    let (s, v) = post(
        &format!("{}/completions", server.base),
        json!({"prompt": long, "max_tokens": 4}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length"),
        "{v}"
    );
    let (s, v) = post(
        &format!("{}/completions", server.base),
        json!({"prompt": [600], "max_tokens": 4}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // Malformed JSON and oversized bodies.
    let client = reqwest::Client::new();
    let r = client
        .post(&chat)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    let big = json!({"model": "tiny", "messages": [{"role": "user", "content": "z".repeat(4096)}]});
    let r = client.post(&chat).json(&big).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_checked() {
    let ckpt = tiny_checkpoint();
    let server = start(
        tiny_model(ckpt.path()),
        Some("sekret"),
        ServerLimits::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/models", server.base);
    assert_eq!(
        client.get(&url).send().await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("sekret")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // Our client sends the key from the named environment variable.
    std::env::set_var("DISTILL_TEST_SERVE_KEY", "sekret");
    let cfg = OpenAiConfig {
        base_urls: vec![server.base.clone()],
        model: "tiny".into(),
        api_key_env: Some("DISTILL_TEST_SERVE_KEY".into()),
        ..Default::default()
    };
    let c = OpenAiBackend::new(cfg)
        .unwrap()
        .complete(ChatRequest {
            prompt: Prompt::Messages(vec![inference::Message::user("hi")]),
            max_tokens: 3,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: vec![],
        })
        .await
        .unwrap();
    assert!(c.error.is_none(), "{:?}", c.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_backend_samples_in_process() {
    let ckpt = tiny_checkpoint();
    let backend = inference::native::NativeBackend::new(tiny_model(ckpt.path()));
    assert_eq!(backend.model_name(), "tiny");
    let req = |seed| ChatRequest {
        prompt: Prompt::Messages(vec![inference::Message::user("What is 1+1?")]),
        max_tokens: 10,
        temperature: 0.8,
        top_p: 0.95,
        seed: Some(seed),
        stop: vec![],
    };
    let (a, b, c) = futures::join!(
        backend.complete(req(1)),
        backend.complete(req(1)),
        backend.complete(req(2))
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(
        a.completion, b.completion,
        "same seed, same sample, even when batched together"
    );
    assert!(a.completion_tokens >= 1 && a.completion_tokens <= 10);
    assert!(a.prompt_tokens > 10);
    assert!(c.error.is_none() && c.completion_tokens >= 1);
    // A prompt that cannot fit is a recorded failure, not a crash.
    let huge = ChatRequest {
        prompt: Prompt::Text("w".repeat(400)),
        ..req(3)
    };
    let f = backend.complete(huge).await.unwrap();
    assert!(f.error.is_some());
    assert_eq!(f.finish_reason, inference::FinishReason::Error);
}
