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

use crate::backend::Prompt;
pub use crate::http_serve::{serve_with, ConnOptions};
use crate::native::{collect_text, GenParams, NativeModel, TextEvent};
use crate::reasoning_parser::ReasoningParser;
use crate::serve_choice::{ChoiceKind, ChoiceRenderer};
use crate::serve_guard::GuardConfig;
use crate::serve_limits::{check_prompt_count, tokenize};
use crate::serve_params::{self as params, Endpoint};
use crate::serve_request::{authorized_body, message_text, plan, Plan};
use crate::wire::{
    ChatCompletionRequest, Choice, CompletionRequest, CompletionResponse, ErrorBody, ModelCard,
    ModelList, PromptInput, Usage,
};

/// Limits that protect the server from oversized or abusive requests.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerLimits {
    /// Largest request body in bytes. Default 8 MiB.
    pub max_body_bytes: usize,
    /// Largest `max_tokens` accepted (also bounded by the engine's context). Default 32768.
    pub max_tokens: u32,
    /// Largest `n` (choices per prompt). Default 16.
    pub max_n: u32,
    /// Most prompts in one `/v1/completions` request. Default 64.
    pub max_prompts: usize,
    /// Most tokens one request may ask the engine to generate: prompts × `n` × `max_tokens`.
    /// Default 2^20.
    pub max_request_tokens: u64,
    /// Time allowed to receive a whole request body. Default 60 s.
    pub body_timeout: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 8 << 20,
            max_tokens: 32768,
            max_n: 16,
            max_prompts: 64,
            max_request_tokens: 1 << 20,
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Behaviour switches of `distill serve` that are not limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServeOptions {
    /// `--reasoning-parser`: split `<think>` into `reasoning_content` on the chat endpoint.
    pub reasoning_parser: Option<ReasoningParser>,
}

pub(crate) struct ServerState {
    pub(crate) model: NativeModel,
    pub(crate) api_key: Option<String>,
    pub(crate) limits: ServerLimits,
    pub(crate) options: ServeOptions,
    pub(crate) next_id: AtomicU64,
}

/// The router with every endpoint; `api_key` enables the bearer-token check (an empty key
/// admits nobody: see [`crate::auth`]). Every request passes [`crate::serve_guard::guard`].
pub fn router(model: NativeModel, api_key: Option<String>, limits: ServerLimits) -> Router {
    router_with_options(model, api_key, limits, ServeOptions::default())
}

/// [`router`] with [`ServeOptions`].
pub fn router_with_options(
    model: NativeModel,
    api_key: Option<String>,
    limits: ServerLimits,
    options: ServeOptions,
) -> Router {
    let body_limit = limits.max_body_bytes;
    if api_key.as_deref().is_some_and(str::is_empty) {
        tracing::error!("the API key is empty: every request will be refused");
    }
    let guard = Arc::new(GuardConfig {
        api_key: api_key.clone(),
        max_body_bytes: limits.max_body_bytes,
        body_timeout: limits.body_timeout,
    });
    let state = Arc::new(ServerState {
        model,
        api_key,
        limits,
        options,
        next_id: AtomicU64::new(1),
    });
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route(crate::reload::UPDATE_WEIGHTS_ROUTE, post(update_weights))
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
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::serve_guard::guard,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves (then finishes open responses),
/// with the default [`ConnOptions`] (see [`serve_with`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ConnOptions::default(), shutdown).await
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
        let body = ErrorBody::new(self.message, self.kind, self.param);
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

pub(crate) fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
    )
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The key check again inside handlers (the guard middleware checks first), so a handler is
/// safe even if mounted without the guard.
pub(crate) fn check_auth(state: &ServerState, headers: &HeaderMap) -> Result<(), ApiError> {
    if crate::auth::authorized(state.api_key.as_deref(), headers) {
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
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: state.model.name().to_string(),
            object: "model".into(),
            created: unix_now(),
            owned_by: "distill".into(),
            max_model_len: state.model.engine().info().max_seq_len,
        }],
    })
    .into_response()
}

/// `POST /update_weights_from_disk` (SGLang's route): see [`crate::reload`].
async fn update_weights(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = check_auth(&state, &headers) {
        return r.into_response();
    }
    let bytes = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("could not read the request body: {e}"), None).into_response(),
    };
    let (status, reply) = crate::reload::update_weights_from_disk(&state.model, &bytes).await;
    (status, Json(reply)).into_response()
}

async fn chat_completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body: ChatCompletionRequest = match authorized_body(&state, &headers, body, Endpoint::Chat) {
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
    let ids = match tokenize(&state.model, vec![Prompt::Messages(msgs)]).await {
        Ok(mut ids) => ids.pop().unwrap_or_default(),
        Err(e) => {
            return bad_request(
                format!("cannot apply the chat template: {e}"),
                Some("messages"),
            )
            .into_response()
        }
    };
    match plan(&state, vec![ids], &body.sampling, Endpoint::Chat) {
        Ok(p) => respond(state, p).await,
        Err(r) => r.into_response(),
    }
}

async fn completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body: CompletionRequest =
        match authorized_body(&state, &headers, body, Endpoint::Completions) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = check_prompt_count(&state.limits, &body.prompt) {
        return e.into_response();
    }
    let texts = |a: Vec<String>| a.into_iter().map(Prompt::Text).collect();
    let prompts = match body.prompt {
        PromptInput::Text(s) => tokenize(&state.model, vec![Prompt::Text(s)]).await,
        PromptInput::Texts(a) => tokenize(&state.model, texts(a)).await,
        PromptInput::Ids(ids) => Ok(vec![ids]),
        PromptInput::IdLists(lists) => Ok(lists),
    };
    let prompts = match prompts {
        Ok(p) => p,
        Err(e) => return bad_request(e, Some("prompt")).into_response(),
    };
    match plan(&state, prompts, &body.sampling, Endpoint::Completions) {
        Ok(p) => respond(state, p).await,
        Err(r) => r.into_response(),
    }
}

/// Seeds per choice: a hash of (seed, i) when the client gave one (reproducible, and never the
/// seed of another request's choice), random otherwise.
fn choice_seeds(seed: Option<u64>, count: usize) -> Vec<u64> {
    match seed {
        Some(s) => (0..count as u64).map(|i| params::choice_seed(s, i)).collect(),
        None => (0..count).map(|_| rand::random::<u64>()).collect(),
    }
}

fn start_choices(
    state: &ServerState,
    p: &Plan,
) -> Vec<tokio::sync::mpsc::UnboundedReceiver<TextEvent>> {
    let total = p.prompts.len() * p.n as usize;
    let seeds = choice_seeds(p.seed, total);
    // One scheduling group per request: its choices take turns with other requests'.
    let group = state.model.engine().new_group();
    let mut out = Vec::with_capacity(total);
    for (pi, prompt) in p.prompts.iter().enumerate() {
        for i in 0..p.n as usize {
            let params = GenParams {
                seed: seeds[pi * p.n as usize + i],
                ..p.params.clone()
            };
            out.push(
                state
                    .model
                    .generate_stream_in(group, prompt.clone(), &params),
            );
        }
    }
    out
}

async fn respond(state: Arc<ServerState>, p: Plan) -> Response {
    let id_num = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (id, object) = match p.choice.kind {
        ChoiceKind::Chat => (format!("chatcmpl-{id_num:016x}"), "chat.completion"),
        ChoiceKind::Text => (format!("cmpl-{id_num:016x}"), "text_completion"),
    };
    let head = CompletionResponse {
        id,
        object: object.into(),
        created: unix_now(),
        model: state.model.name().to_string(),
        system_fingerprint: Some(params::system_fingerprint(
            state.model.name(),
            state.model.weights_version(),
        )),
        ..Default::default()
    };
    let receivers = start_choices(&state, &p);
    let renderers: Vec<ChoiceRenderer> = (0..receivers.len())
        .map(|i| ChoiceRenderer::new(i as u32, p.choice, state.model.shared_tokenizer()))
        .collect();
    if p.stream {
        let events = sse_events(receivers, renderers, p.choice.kind, head, p.include_usage);
        return Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let results = futures::future::join_all(receivers.into_iter().map(collect_text)).await;
    let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
    let mut choices = Vec::with_capacity(results.len());
    let per_prompt = p.n as usize;
    for ((index, r), renderer) in results.into_iter().enumerate().zip(renderers) {
        let o = match r {
            Ok(o) => o,
            Err(e) => {
                let message = crate::error_chain(&e);
                return api_error(StatusCode::INTERNAL_SERVER_ERROR, message, "server_error", None)
                    .into_response();
            }
        };
        if index % per_prompt == 0 {
            prompt_tokens += u64::from(o.prompt_tokens);
        }
        completion_tokens += u64::from(o.completion_tokens);
        choices.push(renderer.full(&o));
    }
    Json(CompletionResponse {
        choices,
        usage: Some(Usage::new(prompt_tokens, completion_tokens)),
        ..head
    })
    .into_response()
}

fn sse_events(
    receivers: Vec<tokio::sync::mpsc::UnboundedReceiver<TextEvent>>,
    mut renderers: Vec<ChoiceRenderer>,
    kind: ChoiceKind,
    head: CompletionResponse,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let object = match kind {
        ChoiceKind::Chat => "chat.completion.chunk",
        ChoiceKind::Text => "text_completion",
    };
    let chunk_of = move |choices: Vec<Choice>, usage: Option<Usage>| CompletionResponse {
        object: object.into(),
        choices,
        usage,
        ..head.clone()
    };
    let event = |body: &CompletionResponse| {
        Event::default().data(serde_json::to_string(body).expect("chunk serialises"))
    };
    // Chat streams open each choice with the assistant role, as OpenAI does.
    let openers: Vec<Event> = if kind == ChoiceKind::Chat {
        renderers
            .iter()
            .map(|r| event(&chunk_of(vec![r.opener()], None)))
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
    let body_chunk = chunk_of.clone();
    let body = merged.filter_map(move |(i, ev)| {
        let out = match ev {
            TextEvent::Logprobs(t) => {
                renderers[i].on_logprobs(t);
                None
            }
            TextEvent::Delta(t) => renderers[i]
                .on_delta(&t)
                .map(|c| event(&body_chunk(vec![c], None))),
            TextEvent::Done {
                finish_reason,
                stop_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut u = usage_in.lock().expect("usage lock");
                u.0 = u.0.max(u64::from(prompt_tokens));
                u.1 += u64::from(completion_tokens);
                u.2 += 1;
                let c = renderers[i].on_done(finish_reason, stop_reason.as_ref());
                Some(event(&body_chunk(vec![c], None)))
            }
            TextEvent::Error(e) => Some(Event::default().data(
                serde_json::to_string(&ErrorBody::new(crate::error_chain(&e), "server_error", None))
                    .expect("error serialises"),
            )),
        };
        futures::future::ready(out.map(Ok))
    });
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if include_usage {
            let (pt, ct, _) = *usage.lock().expect("usage lock");
            out.push(Ok(event(&chunk_of(Vec::new(), Some(Usage::new(pt, ct))))));
        }
        out.push(Ok(Event::default().data("[DONE]")));
        stream::iter(out)
    })
    .flatten();
    stream::iter(openers.into_iter().map(Ok))
        .chain(body)
        .chain(tail)
}
