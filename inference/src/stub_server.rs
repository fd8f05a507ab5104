//! A scriptable OpenAI-compatible server for client tests: it reproduces, on demand, what
//! third-party servers do that a client must not take for a clean answer.
//!
//! - streams that end with `data: [DONE]` and no `finish_reason` (llama.cpp's server cuts a
//!   running stream that way when another request waits) for the first N attempts of a request;
//! - no usage block or chunk (servers that ignore `stream_options.include_usage`);
//! - a 500 whose body is a pydantic `1 validation error … [type=int_parsing …]` for prompts
//!   holding [`VALIDATION_MARKER`] (llama-cpp-python);
//! - a 400 for prompts holding [`REJECT_MARKER`] while rejection is on (a permanent failure that
//!   a later run can redo);
//! - any model name accepted on the completion routes, while `/v1/models` lists the configured
//!   models with their `max_model_len` (or answers 404), and requests longer than that context
//!   get vLLM's 400.
//!
//! It runs on its own thread and runtime, so synchronous tests (driving the `distill` binary)
//! and async tests alike can use it; dropping the [`StubServer`] stops it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Prompts containing this get a 500 whose body is a validation error.
pub const VALIDATION_MARKER: &str = "STUB_VALIDATION";
/// Prompts containing this get a 400 while [`StubServer::set_reject`] is on (the default).
pub const REJECT_MARKER: &str = "STUB_REJECT";

/// How the stub behaves.
#[derive(Clone, Debug)]
pub struct StubConfig {
    /// What `/v1/models` lists: (id, max_model_len). `None`: the route answers 404.
    pub models: Option<Vec<(String, Option<u64>)>>,
    /// Attempts per request (keyed by prompt and seed) whose stream ends with `[DONE]` but no
    /// finish reason, before one answers properly.
    pub cut_streams: u32,
    /// Send usage (a block, or a final chunk when streaming). Default true.
    pub usage: bool,
    /// Delay before each completion answer.
    pub delay: Duration,
    /// The answer text after the reasoning. Default `The answer is \boxed{42}.`
    pub answer: String,
}

impl Default for StubConfig {
    fn default() -> Self {
        StubConfig {
            models: Some(vec![("stub-model".into(), Some(4096))]),
            cut_streams: 0,
            usage: true,
            delay: Duration::ZERO,
            answer: "The answer is \\boxed{42}.".into(),
        }
    }
}

/// What the stub saw, for tests to assert on.
#[derive(Debug, Default)]
pub struct StubStats {
    /// Completion requests received (every route, every attempt).
    pub completions: AtomicUsize,
    /// `/v1/models` requests received.
    pub model_lists: AtomicUsize,
    /// Attempts per request key (prompt text + `#` + seed).
    pub attempts: Mutex<HashMap<String, u32>>,
    /// Every `seed` value received, as sent.
    pub seeds: Mutex<Vec<Value>>,
    /// Every `model` value received.
    pub models: Mutex<Vec<String>>,
}

impl StubStats {
    /// Total attempts for requests whose prompt contains `needle`.
    pub fn attempts_for(&self, needle: &str) -> u32 {
        let a = self.attempts.lock().expect("stats lock");
        a.iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }
}

struct Shared {
    cfg: StubConfig,
    stats: Arc<StubStats>,
    reject: AtomicBool,
}

/// A running stub; stops when dropped.
pub struct StubServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// What it saw.
    pub stats: Arc<StubStats>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StubServer {
    /// Starts the stub on 127.0.0.1 (any free port) on its own thread.
    pub fn start(cfg: StubConfig) -> std::io::Result<StubServer> {
        let stats = Arc::new(StubStats::default());
        let shared = Arc::new(Shared {
            cfg,
            stats: stats.clone(),
            reject: AtomicBool::new(true),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(StubServer {
            addr,
            stats,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Turns the 400 for [`REJECT_MARKER`] prompts on or off.
    pub fn set_reject(&self, on: bool) {
        self.shared.reject.store(on, Ordering::SeqCst);
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(complete))
        .route("/v1/completions", post(complete))
        .with_state(shared)
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    s.stats.model_lists.fetch_add(1, Ordering::SeqCst);
    match &s.cfg.models {
        None => (StatusCode::NOT_FOUND, "no such route").into_response(),
        Some(list) => {
            let data: Vec<Value> = list
                .iter()
                .map(|(id, len)| {
                    let mut card =
                        json!({"id": id, "object": "model", "created": 0, "owned_by": "stub"});
                    if let Some(len) = len {
                        card["max_model_len"] = json!(len);
                    }
                    card
                })
                .collect();
            Json(json!({"object": "list", "data": data})).into_response()
        }
    }
}

fn prompt_text(req: &Value) -> String {
    match req.get("messages").and_then(Value::as_array) {
        Some(m) => m
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        None => req.get("prompt").map(|p| p.to_string()).unwrap_or_default(),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "code": status.as_u16()}});
    (status, Json(body)).into_response()
}

/// The context check vLLM does: prompt (4 bytes a token here) + max_tokens ≤ max_model_len.
fn too_long(s: &Shared, req: &Value, prompt: &str) -> Option<String> {
    let limit = s
        .cfg
        .models
        .as_ref()?
        .iter()
        .filter_map(|(_, l)| *l)
        .min()?;
    let prompt_tokens = (prompt.len() as u64).div_ceil(4);
    let max_tokens = req.get("max_tokens").and_then(Value::as_u64).unwrap_or(16);
    (prompt_tokens + max_tokens > limit).then(|| {
        format!(
            "This model's maximum context length is {limit} tokens. However, you requested {} \
             tokens ({prompt_tokens} in the messages, {max_tokens} in the completion).",
            prompt_tokens + max_tokens
        )
    })
}

async fn complete(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    s.stats.completions.fetch_add(1, Ordering::SeqCst);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body");
    };
    let prompt = prompt_text(&req);
    let seed = req.get("seed").cloned().unwrap_or(Value::Null);
    s.stats.seeds.lock().expect("stats lock").push(seed.clone());
    if let Some(m) = req.get("model").and_then(Value::as_str) {
        s.stats
            .models
            .lock()
            .expect("stats lock")
            .push(m.to_string());
    }
    let key = format!("{prompt}#{seed}");
    let attempt = {
        let mut a = s.stats.attempts.lock().expect("stats lock");
        let n = a.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    if !s.cfg.delay.is_zero() {
        tokio::time::sleep(s.cfg.delay).await;
    }
    if prompt.contains(VALIDATION_MARKER) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "1 validation error for CreateChatCompletionRequest\nseed\n  Input should be a valid \
             integer, unable to parse string as an integer [type=int_parsing, input_value='x', \
             input_type=str]",
        );
    }
    if prompt.contains(REJECT_MARKER) && s.reject.load(Ordering::SeqCst) {
        return error(StatusCode::BAD_REQUEST, "prompt rejected by the stub");
    }
    if let Some(m) = too_long(&s, &req, &prompt) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    let reasoning = format!("thinking about {seed}");
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        let cut = attempt <= s.cfg.cut_streams;
        let sse = stream_body(&reasoning, &s.cfg.answer, cut, s.cfg.usage);
        return ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response();
    }
    let mut body = json!({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": req.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": s.cfg.answer,
            "reasoning_content": reasoning}, "finish_reason": "stop"}],
    });
    if s.cfg.usage {
        body["usage"] = json!({"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24});
    }
    Json(body).into_response()
}

/// An SSE answer, one word per event; `cut`: `[DONE]` right after the first words with no
/// finish reason (what llama.cpp's server sends when it drops a running stream).
fn stream_body(reasoning: &str, answer: &str, cut: bool, usage: bool) -> String {
    let ev = |v: Value| format!("data: {v}\n\n");
    let mut out = ev(
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    );
    for word in reasoning.split_inclusive(' ') {
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": word}, "finish_reason": null}]}),
        );
    }
    if cut {
        return out + "data: [DONE]\n\n";
    }
    for word in answer.split_inclusive(' ') {
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]}),
        );
    }
    out += &ev(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    if usage {
        out += &ev(
            json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24}}),
        );
    }
    out + "data: [DONE]\n\n"
}

/// Number of text events [`StubServer`] streams for one full answer (reasoning words + answer
/// words), which is what a client counts when no usage is sent.
pub fn streamed_text_events(reasoning: &str, answer: &str) -> u32 {
    (reasoning.split_inclusive(' ').count() + answer.split_inclusive(' ').count()) as u32
}
