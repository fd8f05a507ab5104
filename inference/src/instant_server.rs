//! An OpenAI-compatible responder that answers every completion request at once with a fixed
//! R1-style body. `distill bench client` measures the HTTP client's own overhead against it
//! (what the client costs per request when the server costs nothing).

use std::future::Future;
use std::net::SocketAddr;

use axum::routing::post;
use axum::Router;

use crate::wire::{AssistantMessage, Choice, CompletionResponse, Usage};

/// A response of the instant server: fixed id, model and creation time.
fn response(object: &str, choices: Vec<Choice>, usage: Option<Usage>) -> CompletionResponse {
    let id = if object == "text_completion" { "cmpl-instant" } else { "chatcmpl-instant" };
    CompletionResponse {
        id: id.into(),
        object: object.into(),
        created: 0,
        model: "instant".into(),
        choices,
        usage,
        error: None,
        system_fingerprint: None,
    }
}

/// A chat choice (`message`) or a streamed chat chunk's choice (`delta`).
fn chat_choice(message: AssistantMessage, streamed: bool, finish_reason: Option<&str>) -> Choice {
    let (message, delta) = if streamed { (None, Some(message)) } else { (Some(message), None) };
    Choice { index: 0, message, delta, finish_reason: finish_reason.map(str::to_string), ..Default::default() }
}

fn json(body: &CompletionResponse) -> String {
    serde_json::to_string(body).expect("wire structs serialise")
}

/// The fixed chat completion body (reasoning in `<think>`, boxed answer, usage).
pub fn instant_chat_body() -> String {
    let message = AssistantMessage {
        role: Some("assistant".into()),
        content: Some("<think>\nAdd the numbers: 2 + 2 = 4.\n</think>\n\nThe answer is \\boxed{4}.".into()),
        ..Default::default()
    };
    json(&response("chat.completion", vec![chat_choice(message, false, Some("stop"))], Some(Usage::new(24, 20))))
}

/// Router answering `/v1/chat/completions` and `/v1/completions` instantly.
pub fn instant_router() -> Router {
    let chat = instant_chat_body();
    let choice = Choice {
        text: Some("2 + 2 = 4\n</think>\n\n\\boxed{4}".into()),
        finish_reason: Some("stop".into()),
        ..Default::default()
    };
    let text = json(&response("text_completion", vec![choice], Some(Usage::new(24, 12))));
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
    let ev = |choices: Vec<Choice>, usage: Option<Usage>| format!("data: {}\n\n", json(&response("chat.completion.chunk", choices, usage)));
    let delta = |m: AssistantMessage| vec![chat_choice(m, true, None)];
    let mut out = ev(delta(AssistantMessage { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() }), None);
    for piece in ["Add the numbers: ", "2 + 2 = 4."] {
        out += &ev(delta(AssistantMessage { reasoning_content: Some(piece.into()), ..Default::default() }), None);
    }
    for piece in ["The answer is ", "\\boxed{4}."] {
        out += &ev(delta(AssistantMessage { content: Some(piece.into()), ..Default::default() }), None);
    }
    out += &ev(vec![chat_choice(AssistantMessage::default(), true, Some("stop"))], None);
    out += &ev(Vec::new(), Some(Usage::new(24, 20)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_back_as_wire_structs() {
        let chat: CompletionResponse = serde_json::from_str(&instant_chat_body()).unwrap();
        let m = chat.choices[0].message.as_ref().unwrap();
        assert!(m.content.as_deref().unwrap().ends_with("\\boxed{4}."));
        assert_eq!((chat.object.as_str(), chat.usage), ("chat.completion", Some(Usage::new(24, 20))));
        let chunks: Vec<CompletionResponse> = instant_chat_stream()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let reasoning: String = chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.delta.as_ref()?.reasoning_text()).collect();
        assert_eq!(reasoning, "Add the numbers: 2 + 2 = 4.");
        assert_eq!(chunks.last().unwrap().usage, Some(Usage::new(24, 20)));
        assert!(instant_chat_stream().ends_with("data: [DONE]\n\n"));
    }
}
