//! A long-running `distill serve` keeps its memory flat: 2,000 requests (chat and completions,
//! streamed and not, with logprobs) against an in-process server on the tiny fixture, RSS
//! printed after a warm-up and every 500 requests. Ignored by default (a minute or two on
//! CPU); run with
//! `cargo test --release --workspace --test serve_rss -- --ignored --nocapture`.

use std::path::Path;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use inference::native::NativeModel;
use inference::server::{router, ServerLimits};
use serde_json::json;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rss_stays_flat_over_2000_requests() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, dir.path()).unwrap();
    let engine = models::EngineConfig {
        max_batch: 8,
        max_seq_len: 128,
        ..Default::default()
    };
    let model = NativeModel::load::<Flex>(
        dir.path(),
        FlexDevice,
        burn::tensor::DType::F32,
        engine,
        None,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(inference::server::serve(
        listener,
        router(model, None, ServerLimits::default()),
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let one = |i: usize| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let (path, mut body) = if i.is_multiple_of(2) {
                (
                    "chat/completions",
                    json!({"messages": [{"role": "user", "content": format!("q{i}")}], "logprobs": true, "top_logprobs": 2}),
                )
            } else {
                (
                    "completions",
                    json!({"prompt": format!("p{i}"), "logprobs": 1}),
                )
            };
            body["max_tokens"] = json!(6);
            body["temperature"] = json!(1.0);
            body["stream"] = json!(i.is_multiple_of(3));
            let r = client
                .post(format!("{base}/{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.unwrap().len()
        }
    };
    let run = |from: usize, to: usize| {
        let one = &one;
        async move {
            use futures::StreamExt;
            futures::stream::iter(from..to)
                .map(one)
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
        }
    };
    run(0, 100).await;
    let start = rss_kib();
    println!("serve RSS after 100 warm-up requests: {} MiB", start / 1024);
    let t = std::time::Instant::now();
    let mut last = start;
    for k in 0..4 {
        run(100 + k * 500, 100 + (k + 1) * 500).await;
        last = rss_kib();
        println!(
            "serve RSS after {} more requests: {} MiB",
            (k + 1) * 500,
            last / 1024
        );
    }
    println!(
        "2000 requests in {:.1}s; RSS growth {} KiB",
        t.elapsed().as_secs_f64(),
        last as i64 - start as i64
    );
    assert!(
        last < start + 32 * 1024,
        "RSS grew from {start} KiB to {last} KiB over 2000 requests"
    );
}
