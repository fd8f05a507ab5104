//! One client's big request must neither starve other clients nor keep the engine busy after
//! that client hangs up: while a request of 64 prompts × 4 choices × 240 tokens decodes,
//! `/v1/models` and a small chat request answer in under a second, and once the big request's
//! connection is dropped its queued and running generations stop (the engine's token counter
//! stands still).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{start, tiny_checkpoint, tiny_model};
use inference::server::ServerLimits;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_requests_share_the_engine_and_stop_when_dropped() {
    let ckpt = tiny_checkpoint();
    let model = tiny_model(ckpt.path());
    let engine = model.engine().clone();
    let stats = || {
        let s = engine.stats();
        (
            s.running.load(Ordering::Relaxed),
            s.queued.load(Ordering::Relaxed),
            s.tokens.load(Ordering::Relaxed),
        )
    };
    let server = start(
        model.clone(),
        None,
        ServerLimits::default(),
        Duration::from_secs(30),
    )
    .await;
    let client = reqwest::Client::new();

    let prompts: Vec<String> = (0..64).map(|i| format!("big {i}")).collect();
    let big_body = json!({"model": "tiny", "prompt": prompts, "n": 4, "max_tokens": 240,
                          "temperature": 1.0, "seed": 1});
    let big = tokio::spawn({
        let (client, url) = (client.clone(), format!("{}/completions", server.base));
        async move { client.post(url).json(&big_body).send().await }
    });
    let started = Instant::now();
    while stats().0 < 7 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "big request never started: {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, queued, _) = stats();
    assert!(
        queued > 100,
        "the big request's choices wait in the queue: {queued}"
    );

    let t = Instant::now();
    let models: Value = client
        .get(format!("{}/models", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let models_latency = t.elapsed();
    assert_eq!(models["data"][0]["id"], "tiny");

    let t = Instant::now();
    let chat: Value = client
        .post(format!("{}/chat/completions", server.base))
        .json(
            &json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": 8, "temperature": 0}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat_latency = t.elapsed();
    assert!(
        chat["choices"][0]["message"]["content"].is_string(),
        "{chat}"
    );
    eprintln!(
        "during the big request: /v1/models {models_latency:?}, chat {chat_latency:?}; engine {:?}",
        stats()
    );
    assert!(
        !big.is_finished(),
        "the big request was still running while we measured"
    );
    assert!(
        models_latency < Duration::from_secs(1),
        "{models_latency:?}"
    );
    assert!(chat_latency < Duration::from_secs(1), "{chat_latency:?}");

    // The client hangs up: everything of its request leaves the engine and the queue.
    big.abort();
    let _ = big.await;
    let at_hangup = stats().2;
    let t = Instant::now();
    while stats().0 > 0 || stats().1 > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "work continues after disconnect: {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tokens = stats().2;
    eprintln!(
        "engine idle {:?} and {} tokens after the disconnect",
        t.elapsed(),
        tokens - at_hangup
    );
    // At most the step under way when the client left (8 slots); the ~250 queued choices
    // never start.
    assert!(
        tokens - at_hangup <= 16,
        "{} tokens after the disconnect",
        tokens - at_hangup
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stats().2,
        tokens,
        "no tokens are generated for a gone client"
    );
    assert!(engine.stats().cancelled.load(Ordering::Relaxed) > 100);

    // And the server still serves.
    let v: Value = client
        .post(format!("{}/completions", server.base))
        .json(&json!({"prompt": "after", "max_tokens": 3, "temperature": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["choices"][0]["text"].is_string(), "{v}");
}
