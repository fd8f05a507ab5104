//! A huge request must neither stall other clients nor raise the server's memory for good:
//! while a 200k-message chat request (rejected: far beyond the context) is templated and
//! tokenized, `/v1/models` answers at once even on a one-worker runtime, and afterwards the
//! process' resident set returns close to where it was. Alone in its test binary so no other
//! test's allocations blur the numbers.

mod common;

use std::time::Duration;

use common::{start, tiny_checkpoint, tiny_model};
use inference::server::ServerLimits;
use serde_json::{json, Value};

/// Resident set size of this process in MiB (Linux).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn memory_is_returned_after_a_huge_request() {
    let ckpt = tiny_checkpoint();
    let server = start(
        tiny_model(ckpt.path()),
        None,
        ServerLimits::default(),
        Duration::from_secs(30),
    )
    .await;
    let client = reqwest::Client::new();
    let chat = format!("{}/chat/completions", server.base);
    let small = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    let r = client.post(&chat).json(&small).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let Some(before) = rss_mib() else {
        eprintln!("no /proc/self/status: skipping the RSS check");
        return;
    };

    let mut body = String::from("{\"max_tokens\": 2, \"messages\": [");
    for i in 0..200_000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"role\":\"user\",\"content\":\"a\"}");
    }
    body.push_str("]}");
    let huge = tokio::spawn({
        let (client, chat) = (client.clone(), chat.clone());
        async move {
            let r = client
                .post(&chat)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    });
    // The body is up and being tokenized (several seconds) when the next request comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = std::time::Instant::now();
    let r = client
        .get(format!("{}/models", server.base))
        .send()
        .await
        .unwrap();
    let models_latency = t.elapsed();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        !huge.is_finished(),
        "the huge request was still being processed"
    );
    eprintln!("/v1/models during the huge request: {models_latency:?}");
    assert!(
        models_latency < Duration::from_secs(1),
        "{models_latency:?}"
    );
    let (status, v) = huge.await.unwrap();
    assert_eq!(status, 400, "{v}");
    let peak_ish = rss_mib().unwrap();
    // The trim runs right after the response; give it a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = rss_mib().unwrap();
    eprintln!(
        "RSS: {before:.0} MiB before, {peak_ish:.0} MiB right after, {after:.0} MiB 1.5 s later"
    );
    assert!(
        after - before < 100.0,
        "RSS grew from {before:.0} to {after:.0} MiB and stayed there"
    );
}
