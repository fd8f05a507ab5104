//! An OpenAI-compatible responder that answers every completion request at once with a fixed
//! R1-style body. `distill bench client` measures the HTTP client's own overhead against it
//! (what the client costs per request when the server costs nothing).

use std::future::Future;
use std::net::SocketAddr;

use axum::routing::post;
use axum::Router;
use serde_json::json;

/// The fixed chat completion body (reasoning in `<think>`, boxed answer, usage).
pub fn instant_chat_body() -> String {
    json!({
        "id": "chatcmpl-instant", "object": "chat.completion", "created": 0, "model": "instant",
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "<think>\nAdd the numbers: 2 + 2 = 4.\n</think>\n\nThe answer is \\boxed{4}."},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 24, "completion_tokens": 20, "total_tokens": 44}
    })
    .to_string()
}

/// Router answering `/v1/chat/completions` and `/v1/completions` instantly.
pub fn instant_router() -> Router {
    let chat = instant_chat_body();
    let text = json!({
        "id": "cmpl-instant", "object": "text_completion", "created": 0, "model": "instant",
        "choices": [{"index": 0, "text": "2 + 2 = 4\n</think>\n\n\\boxed{4}", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 24, "completion_tokens": 12, "total_tokens": 36}
    })
    .to_string();
    let sse = instant_chat_stream();
    let respond = move |body: String, sse: String| {
        move |req: axum::body::Bytes| {
            let (body, sse) = (body.clone(), sse.clone());
            async move {
                // Substring test instead of a JSON parse: the server must cost next to nothing.
                let stream = req.windows(14).any(|w| w == b"\"stream\":true");
                if stream {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                        sse,
                    )
                } else {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }
        }
    };
    Router::new()
        .route("/v1/chat/completions", post(respond(chat, sse.clone())))
        .route("/v1/completions", post(respond(text, sse)))
}

/// The same answer as an SSE stream (reasoning and content deltas, usage, `[DONE]`).
pub fn instant_chat_stream() -> String {
    let ev = |v: serde_json::Value| format!("data: {v}\n\n");
    let mut out = String::new();
    out += &ev(
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    );
    for piece in ["Add the numbers: ", "2 + 2 = 4."] {
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": null}]}),
        );
    }
    for piece in ["The answer is ", "\\boxed{4}."] {
        out += &ev(
            json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}),
        );
    }
    out += &ev(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    out += &ev(
        json!({"choices": [], "usage": {"prompt_tokens": 24, "completion_tokens": 20, "total_tokens": 44}}),
    );
    out += "data: [DONE]\n\n";
    out
}

/// Binds `addr` (use port 0 for any free port) and serves [`instant_router`] until `shutdown`.
/// Returns the bound address once listening, and the serving future to run.
pub async fn bind_instant(
    addr: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let fut = async move {
        axum::serve(listener, instant_router())
            .with_graceful_shutdown(shutdown)
            .await
    };
    Ok((local, fut))
}
