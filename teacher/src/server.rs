//! `distill serve`: an OpenAI-compatible HTTP server over the native engine.
//!
//! Speaks the subset of the API that sampling and evaluation clients use — `GET /v1/models`,
//! `POST /v1/chat/completions`, `POST /v1/completions` with `n`, `temperature`, `top_p`,
//! `max_tokens`, `stop`, `seed` and SSE streaming — so the `openai` Python client, vLLM-style
//! tooling and our own HTTP backend work against it unchanged. All requests feed one engine, so
//! concurrent requests share forward passes. Errors use OpenAI's body shape
//! `{"error": {"message", "type", "param", "code"}}`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{FinishReason, Message, Prompt};
use crate::native::{GenParams, NativeModel, TextEvent};

/// Limits that protect the server from oversized or abusive requests.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerLimits {
    /// Largest request body in bytes. Default 8 MiB.
    pub max_body_bytes: usize,
    /// Largest `max_tokens` accepted (also bounded by the engine's context). Default 32768.
    pub max_tokens: u32,
    /// Largest `n` (choices per prompt). Default 16.
    pub max_n: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 8 << 20,
            max_tokens: 32768,
            max_n: 16,
        }
    }
}

struct ServerState {
    model: NativeModel,
    api_key: Option<String>,
    limits: ServerLimits,
    next_id: AtomicU64,
}

/// The router with every endpoint; `api_key` enables the bearer-token check.
pub fn router(model: NativeModel, api_key: Option<String>, limits: ServerLimits) -> Router {
    let body_limit = limits.max_body_bytes;
    let state = Arc::new(ServerState {
        model,
        api_key,
        limits,
        next_id: AtomicU64::new(1),
    });
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async {
            api_error(
                StatusCode::NOT_FOUND,
                "unknown endpoint",
                "invalid_request_error",
                None,
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves (then finishes open responses).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// An OpenAI-style error: rendered as `{"error": {"message", "type", "param", "code"}}` with
/// its HTTP status. Small (no body yet) so validation code can return it by value.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, `authentication_error`, `server_error`).
    pub kind: &'static str,
    /// The request field at fault, if any.
    pub param: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": Value::Null}});
        (self.status, Json(body)).into_response()
    }
}

/// Builds an [`ApiError`].
pub fn api_error(
    status: StatusCode,
    message: impl Into<String>,
    kind: &'static str,
    param: Option<&'static str>,
) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        kind,
        param,
    }
}

fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn check_auth(state: &ServerState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time comparison: the key must not leak through response timing.
    let ok = given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(api_error(
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key",
            "authentication_error",
            None,
        ))
    }
}

async fn list_models(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_auth(&state, &headers) {
        return r.into_response();
    }
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model.name(),
            "object": "model",
            "created": unix_now(),
            "owned_by": "distill",
            "max_model_len": state.model.engine().info().max_seq_len,
        }]
    }))
    .into_response()
}

/// Fields shared by both endpoints. Unknown fields are ignored, as OpenAI-compatible servers
/// do (clients send `user`, `logprobs: null`, …).
#[derive(Deserialize)]
struct CommonParams {
    model: Option<String>,
    n: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Value>,
    seed: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<Value>,
}

#[derive(Deserialize)]
struct ChatBody {
    messages: Vec<Value>,
    #[serde(flatten)]
    common: CommonParams,
}

#[derive(Deserialize)]
struct CompletionBody {
    prompt: Value,
    #[serde(flatten)]
    common: CommonParams,
}

/// Validated request: prompts (as ids) × n choices with their parameters.
struct Plan {
    prompts: Vec<Vec<u32>>,
    n: u32,
    params: GenParams,
    seed: Option<u64>,
    stream: bool,
    include_usage: bool,
}

fn parse_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        api_error(
            status,
            format!("could not read the request body: {e}"),
            "invalid_request_error",
            None,
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}"), None))
}

fn message_text(v: &Value, i: usize) -> Result<Message, ApiError> {
    let role = v.get("role").and_then(Value::as_str).ok_or_else(|| {
        bad_request(
            format!("messages[{i}].role must be a string"),
            Some("messages"),
        )
    })?;
    if !matches!(role, "system" | "user" | "assistant" | "developer" | "tool") {
        return Err(bad_request(
            format!("messages[{i}].role `{role}` is not supported"),
            Some("messages"),
        ));
    }
    let content = match v.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut s = String::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => s.push_str(t),
                    _ => {
                        return Err(bad_request(
                            format!("messages[{i}].content: only text parts are supported"),
                            Some("messages"),
                        ))
                    }
                }
            }
            s
        }
        Some(Value::Null) | None => String::new(),
        Some(_) => {
            return Err(bad_request(
                format!("messages[{i}].content must be a string or text parts"),
                Some("messages"),
            ))
        }
    };
    let role = if role == "developer" { "system" } else { role };
    Ok(Message {
        role: role.into(),
        content,
    })
}

fn stop_list(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if a.len() <= 16 => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    bad_request("stop must be a string or a list of strings", Some("stop"))
                })
            })
            .collect(),
        _ => Err(bad_request(
            "stop must be a string or a list of at most 16 strings",
            Some("stop"),
        )),
    }
}

fn plan(state: &ServerState, prompts: Vec<Vec<u32>>, c: &CommonParams) -> Result<Plan, ApiError> {
    let limits = &state.limits;
    let info = state.model.engine().info();
    if let Some(m) = &c.model {
        if m != state.model.name() {
            return Err(api_error(
                StatusCode::NOT_FOUND,
                format!(
                    "The model `{m}` does not exist; this server serves `{}`.",
                    state.model.name()
                ),
                "invalid_request_error",
                Some("model"),
            ));
        }
    }
    let n = c.n.unwrap_or(1);
    if n == 0 || n > limits.max_n {
        return Err(bad_request(
            format!("n must be between 1 and {}", limits.max_n),
            Some("n"),
        ));
    }
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad_request(
            "temperature must be between 0 and 2",
            Some("temperature"),
        ));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad_request("top_p must be in (0, 1]", Some("top_p")));
    }
    let top_k = match c.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => {
            return Err(bad_request(
                format!("top_k must be -1 or positive, got {k}"),
                Some("top_k"),
            ))
        }
    };
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(bad_request("the prompt is empty", Some("prompt")));
    }
    if let Some(bad) = prompts
        .iter()
        .flatten()
        .find(|&&t| t as usize >= info.vocab_size)
    {
        return Err(bad_request(
            format!(
                "token id {bad} is outside the vocabulary ({})",
                info.vocab_size
            ),
            Some("prompt"),
        ));
    }
    let room = info.max_seq_len.saturating_sub(longest);
    let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
        Some(0) => {
            return Err(bad_request(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ))
        }
        Some(m) if m > limits.max_tokens => {
            return Err(bad_request(
                format!(
                    "max_tokens {m} exceeds this server's limit of {}",
                    limits.max_tokens
                ),
                Some("max_tokens"),
            ))
        }
        Some(m) => m as usize,
        None => room.min(limits.max_tokens as usize),
    };
    if room == 0 || longest + max_tokens > info.max_seq_len {
        return Err(bad_request(
            format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the prompt, {} for the completion).",
                info.max_seq_len,
                longest + max_tokens,
                longest,
                max_tokens
            ),
            Some("max_tokens"),
        ));
    }
    let include_usage = c
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Plan {
        prompts,
        n,
        params: GenParams {
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed: 0,
            stop: stop_list(&c.stop)?,
        },
        seed: c.seed.map(|s| s as u64),
        stream: c.stream.unwrap_or(false),
        include_usage,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

async fn chat_completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = check_auth(&state, &headers) {
        return r.into_response();
    }
    let body: ChatBody = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if body.messages.is_empty() {
        return bad_request("messages must not be empty", Some("messages")).into_response();
    }
    let mut msgs = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.iter().enumerate() {
        match message_text(m, i) {
            Ok(m) => msgs.push(m),
            Err(r) => return r.into_response(),
        }
    }
    let ids = match state.model.prompt_ids(&Prompt::Messages(msgs)) {
        Ok(ids) => ids,
        Err(e) => {
            return bad_request(
                format!("cannot apply the chat template: {e}"),
                Some("messages"),
            )
            .into_response()
        }
    };
    match plan(&state, vec![ids], &body.common) {
        Ok(p) => respond(state, p, Kind::Chat).await,
        Err(r) => r.into_response(),
    }
}

async fn completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = check_auth(&state, &headers) {
        return r.into_response();
    }
    let body: CompletionBody = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let encode = |text: &str| state.model.prompt_ids(&Prompt::Text(text.to_string()));
    let as_ids = |a: &[Value]| -> Option<Vec<u32>> {
        a.iter()
            .map(|x| x.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect()
    };
    let prompts: Result<Vec<Vec<u32>>, String> = match &body.prompt {
        Value::String(s) => encode(s).map(|ids| vec![ids]),
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().map(|s| encode(s.as_str().unwrap_or_default())).collect()
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| as_ids(x.as_array().map(Vec::as_slice).unwrap_or_default()).ok_or_else(|| "token ids must be non-negative integers".to_string()))
            .collect(),
        Value::Array(a) if !a.is_empty() => as_ids(a).map(|ids| vec![ids]).ok_or_else(|| "token ids must be non-negative integers".into()),
        _ => Err("prompt must be a string, a list of strings, a list of token ids or a list of such lists".into()),
    };
    let prompts = match prompts {
        Ok(p) => p,
        Err(e) => return bad_request(e, Some("prompt")).into_response(),
    };
    match plan(&state, prompts, &body.common) {
        Ok(p) => respond(state, p, Kind::Text).await,
        Err(r) => r.into_response(),
    }
}

/// Seeds per choice: `seed + i` when the client gave one (reproducible), random otherwise.
fn choice_seeds(seed: Option<u64>, count: usize) -> Vec<u64> {
    match seed {
        Some(s) => (0..count as u64).map(|i| s.wrapping_add(i)).collect(),
        None => (0..count).map(|_| rand::random::<u64>()).collect(),
    }
}

fn start_choices(
    state: &ServerState,
    p: &Plan,
) -> Vec<tokio::sync::mpsc::UnboundedReceiver<TextEvent>> {
    let total = p.prompts.len() * p.n as usize;
    let seeds = choice_seeds(p.seed, total);
    let mut out = Vec::with_capacity(total);
    for (pi, prompt) in p.prompts.iter().enumerate() {
        for i in 0..p.n as usize {
            let params = GenParams {
                seed: seeds[pi * p.n as usize + i],
                ..p.params.clone()
            };
            out.push(state.model.generate_stream(prompt.clone(), &params));
        }
    }
    out
}

async fn respond(state: Arc<ServerState>, p: Plan, kind: Kind) -> Response {
    let id_num = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (id, object) = match kind {
        Kind::Chat => (format!("chatcmpl-{id_num:016x}"), "chat.completion"),
        Kind::Text => (format!("cmpl-{id_num:016x}"), "text_completion"),
    };
    let created = unix_now();
    let model = state.model.name().to_string();
    let receivers = start_choices(&state, &p);
    if p.stream {
        let events = sse_events(receivers, kind, id, created, model, p.include_usage);
        return Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let results = futures::future::join_all(receivers.into_iter().map(collect)).await;
    let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
    let mut choices = Vec::with_capacity(results.len());
    let per_prompt = p.n as usize;
    for (index, r) in results.into_iter().enumerate() {
        let (text, finish, pt, ct) = match r {
            Ok(x) => x,
            Err(e) => {
                return api_error(StatusCode::INTERNAL_SERVER_ERROR, e, "server_error", None)
                    .into_response()
            }
        };
        if index % per_prompt == 0 {
            prompt_tokens += u64::from(pt);
        }
        completion_tokens += u64::from(ct);
        choices.push(match kind {
            Kind::Chat => json!({"index": index, "message": {"role": "assistant", "content": text},
                "logprobs": null, "finish_reason": finish.as_str()}),
            Kind::Text => json!({"index": index, "text": text, "logprobs": null, "finish_reason": finish.as_str()}),
        });
    }
    Json(json!({
        "id": id, "object": object, "created": created, "model": model, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response()
}

async fn collect(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<TextEvent>,
) -> Result<(String, FinishReason, u32, u32), String> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            TextEvent::Delta(t) => text.push_str(&t),
            TextEvent::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => return Ok((text, finish_reason, prompt_tokens, completion_tokens)),
            TextEvent::Error(e) => return Err(e),
        }
    }
    Err("generation ended without a result".into())
}

fn sse_events(
    receivers: Vec<tokio::sync::mpsc::UnboundedReceiver<TextEvent>>,
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let (object, n) = match kind {
        Kind::Chat => ("chat.completion.chunk", receivers.len()),
        Kind::Text => ("text_completion", receivers.len()),
    };
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |choice: Value| {
            Event::default().data(
                json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]}).to_string(),
            )
        }
    };
    // Chat streams open each choice with the assistant role, as OpenAI does.
    let openers: Vec<Event> = if kind == Kind::Chat {
        (0..n)
            .map(|i| chunk(json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})))
            .collect()
    } else {
        Vec::new()
    };
    let merged = stream::select_all(receivers.into_iter().enumerate().map(|(i, rx)| {
        stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
        )
        .map(move |ev| (i, ev))
        .boxed()
    }));
    let usage = Arc::new(std::sync::Mutex::new((0u64, 0u64, 0usize)));
    let usage_in = usage.clone();
    let body = merged.map(move |(i, ev)| {
        let ev = match ev {
            TextEvent::Delta(t) => match kind {
                Kind::Chat => chunk(json!({"index": i, "delta": {"content": t}, "logprobs": null, "finish_reason": null})),
                Kind::Text => chunk(json!({"index": i, "text": t, "logprobs": null, "finish_reason": null})),
            },
            TextEvent::Done { finish_reason, prompt_tokens, completion_tokens } => {
                let mut u = usage_in.lock().expect("usage lock");
                u.0 = u.0.max(u64::from(prompt_tokens));
                u.1 += u64::from(completion_tokens);
                u.2 += 1;
                match kind {
                    Kind::Chat => chunk(json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": finish_reason.as_str()})),
                    Kind::Text => chunk(json!({"index": i, "text": "", "logprobs": null, "finish_reason": finish_reason.as_str()})),
                }
            }
            TextEvent::Error(e) => Event::default()
                .data(json!({"error": {"message": e, "type": "server_error", "param": null, "code": null}}).to_string()),
        };
        Ok(ev)
    });
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if include_usage {
            let (pt, ct, _) = *usage.lock().expect("usage lock");
            out.push(Ok(Event::default().data(
                json!({"id": id, "object": object, "created": created, "model": model, "choices": [],
                       "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}})
                .to_string(),
            )));
        }
        out.push(Ok(Event::default().data("[DONE]")));
        stream::iter(out)
    })
    .flatten();
    stream::iter(openers.into_iter().map(Ok))
        .chain(body)
        .chain(tail)
}
