//! `distill serve` refuses what it must before any work is done: requests without the right
//! API key (the key check fails closed), POSTs that are not JSON (cross-site browser POSTs),
//! too many prompts or too much work per request, and clients that stall — half-sent headers,
//! bodies shorter than their `Content-Length`, idle keep-alive connections — are cut off
//! within their deadlines. The slow-client cases speak raw TCP.

mod common;

use std::time::{Duration, Instant};

use common::{start, tiny_checkpoint, tiny_model};
use inference::server::ServerLimits;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(30);

async fn status_of(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_checked_case_insensitively_and_fails_closed() {
    let ckpt = tiny_checkpoint();
    let model = tiny_model(ckpt.path());
    let server = start(model.clone(), Some("sekret"), ServerLimits::default(), LONG).await;
    let c = reqwest::Client::new();
    let url = format!("{}/models", server.base);
    let with = |v: &str| c.get(&url).header("authorization", v);
    for (value, want) in [
        ("Bearer sekret", 200),
        ("bearer sekret", 200),
        ("BEARER sekret", 200),
        ("xyz", 401),
        ("sekret", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Basic sekret", 401),
        ("Bearer sekret2", 401),
        ("Bearer sekre", 401),
    ] {
        let (s, v) = status_of(with(value)).await;
        assert_eq!(s, want, "Authorization: {value:?} → {v}");
        if want == 401 {
            assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        }
    }
    assert_eq!(status_of(c.get(&url)).await.0, 401, "no header");
    // POSTs are checked before their body is read or parsed.
    let chat = format!("{}/chat/completions", server.base);
    let (s, _) = status_of(
        c.post(&chat)
            .header("authorization", "xyz")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 401);
    // Unknown endpoints do not reveal anything to an unauthenticated client either.
    let (s, _) = status_of(c.get(format!("{}/nope", server.base))).await;
    assert_eq!(s, 401);

    // A server given an empty key (a library caller; the CLI refuses to start) admits nobody.
    let open = start(model, Some(""), ServerLimits::default(), LONG).await;
    let url = format!("{}/models", open.base);
    for value in ["", "xyz", "Bearer ", "Bearer"] {
        let (s, v) = status_of(c.get(&url).header("authorization", value)).await;
        assert_eq!(s, 401, "Authorization: {value:?} → {v}");
    }
    assert_eq!(status_of(c.get(&url)).await.0, 401);
    // Liveness probes stay open.
    let health = format!("http://{}/health", open.addr);
    assert_eq!(status_of(c.get(&health)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_must_be_json_and_within_the_request_limits() {
    let ckpt = tiny_checkpoint();
    let limits = ServerLimits {
        max_prompts: 4,
        max_request_tokens: 100,
        max_body_bytes: 4096,
        ..Default::default()
    };
    let server = start(tiny_model(ckpt.path()), None, limits, LONG).await;
    let c = reqwest::Client::new();
    let url = format!("{}/completions", server.base);
    let body = json!({"prompt": "hi", "max_tokens": 2, "temperature": 0}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data"),
    ] {
        let mut req = c.post(&url).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (s, v) = status_of(req).await;
        assert_eq!(s, 415, "content-type {ct:?} → {v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    let ok = c
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body);
    assert_eq!(status_of(ok).await.0, 200);

    // Prompt count, checked before tokenizing.
    let (s, v) = status_of(
        c.post(&url)
            .json(&json!({"prompt": ["a", "b", "c", "d", "e"], "max_tokens": 1})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "prompt");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 4"),
        "{v}"
    );
    let (s, v) = status_of(
        c.post(&url)
            .json(&json!({"prompt": [[1, 2], [3], [4], [5], [6]], "max_tokens": 1})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // Work: prompts × n × max_tokens.
    let (s, v) = status_of(
        c.post(&url)
            .json(&json!({"prompt": ["a", "b"], "n": 2, "max_tokens": 26})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "max_tokens");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("104"),
        "{v}"
    );
    let (s, v) = status_of(
        c.post(&url)
            .json(&json!({"prompt": ["a", "b"], "n": 2, "max_tokens": 25, "temperature": 0})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // A declared body over the limit is refused before it is read.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (text, _) = read_to_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

/// Reads until the server closes the connection; returns what arrived and how long it took.
/// Panics if the connection is still open after `limit`.
async fn read_to_close(tcp: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_lying_clients_are_cut_off() {
    let ckpt = tiny_checkpoint();
    let limits = ServerLimits {
        body_timeout: Duration::from_millis(600),
        ..Default::default()
    };
    let header_timeout = Duration::from_millis(600);
    let server = start(tiny_model(ckpt.path()), None, limits, header_timeout).await;
    let limit = Duration::from_secs(5);

    // Half a header, then nothing.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, took) = read_to_close(&mut tcp, limit).await;
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");

    // Connected, never a byte.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    read_to_close(&mut tcp, limit).await;

    // A body shorter than its Content-Length: 408 and the connection is closed.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"prompt\":";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (text, took) = read_to_close(&mut tcp, limit).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        took >= Duration::from_millis(500),
        "answered after {took:?}"
    );

    // Idle keep-alive: a finished request, then silence.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, took) = read_to_close(&mut tcp, limit).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");

    // The server still answers well-behaved clients.
    let v: Value = reqwest::get(format!("{}/models", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["id"], "tiny");
}
