//! The OpenAI wire format as serde structs: what the HTTP client sends and reads, and what
//! `distill serve` reads and sends. One definition on both sides means a field the server
//! writes is a field the client can read, checked by the compiler.
//!
//! Readers are lenient the way OpenAI-compatible servers are: unknown fields are ignored and
//! optional fields default, so the client reads SGLang, vLLM and the DeepSeek API as well as our
//! own server. `distill serve` does not rely on that leniency for requests: it checks every
//! request field first ([`crate::serve_params::parse_request`]) and answers 400 for a field it
//! does not implement, so nothing a client asks for is silently ignored.

use serde::{Deserialize, Serialize};

/// One chat message in a request. `content` may be a string or a list of text parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `user`, `assistant` (`developer` and `tool` are also sent by some clients).
    pub role: String,
    /// Message text; `null` or absent reads as empty.
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A message's content: plain text or OpenAI "content parts".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a string or a list of text parts")]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts such as `{"type": "text", "text": "…"}`.
    Parts(Vec<ContentPart>),
}

/// One content part; only `text` parts carry text we can use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`, `image_url`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The `prompt` of `/v1/completions`: text, several texts, token ids or several id lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a string, a list of strings, a list of token ids or a list of such lists"
)]
pub enum PromptInput {
    /// One text prompt.
    Text(String),
    /// Several text prompts (one completion set each).
    Texts(Vec<String>),
    /// One prompt as token ids.
    Ids(Vec<u32>),
    /// Several prompts as token ids.
    IdLists(Vec<Vec<u32>>),
}

/// `stop`: one string or a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum StopInput {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopInput {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopInput::One(s) => vec![s],
            StopInput::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields shared by both endpoints. Absent fields take the server's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingFields {
    /// Model name; a server serving another model answers 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Choices per prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Softmax temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k (vLLM/SGLang extension; -1 or 0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// New-token budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Newer spelling of `max_tokens`; wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopInput>,
    /// Seed; a signed 64-bit integer on the wire, as servers parse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Chat: `true` for per-token logprobs; completions: how many top alternatives per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<LogprobsField>,
    /// Chat: top alternatives per token (needs `logprobs: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// HF/vLLM repetition penalty (1 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// No stop condition before this many tokens (vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// Keep generating past EOS (vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Extra ids that end generation (vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_token_ids: Option<Vec<u32>>,
    /// Logprob tokens written as `token_id:<id>` instead of text (vLLM), so a client gets the
    /// exact generated ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_tokens_as_token_ids: Option<bool>,
}

/// `logprobs`: a flag on the chat endpoint, a count on the completions endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a boolean (chat) or a non-negative integer (completions)")]
pub enum LogprobsField {
    /// Chat's `logprobs: true|false`.
    Flag(bool),
    /// Completions' `logprobs: N`.
    Count(u32),
}

/// Chat `logprobs` of a choice: one entry per generated token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatLogprobs {
    /// The entries.
    #[serde(default)]
    pub content: Vec<ChatTokenLogprob>,
}

/// One chat logprob entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenLogprob {
    /// The token's text (or `token_id:<id>`).
    pub token: String,
    /// Its logprob.
    pub logprob: f32,
    /// UTF-8 bytes of `token`.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// The most likely alternatives at this position.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative of a chat logprob entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text (or `token_id:<id>`).
    pub token: String,
    /// Its logprob.
    pub logprob: f32,
    /// UTF-8 bytes of `token`.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// Completions `logprobs` of a choice (the legacy parallel-list shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    /// Token texts (or `token_id:<id>`).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Logprob of each token.
    #[serde(default)]
    pub token_logprobs: Vec<Option<f32>>,
    /// Per token, the top alternatives (and the chosen token) by text.
    #[serde(default)]
    pub top_logprobs: Vec<Option<std::collections::BTreeMap<String, f32>>>,
    /// Character offset of each token in the choice's text.
    #[serde(default)]
    pub text_offset: Vec<usize>,
}

/// `POST /v1/chat/completions` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Sampling fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `POST /v1/completions` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// What to continue.
    pub prompt: PromptInput,
    /// Sampling fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// Token counts of a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (counted once per prompt, not per choice).
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens over all choices.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    /// Usage with the total filled in.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// The assistant message of a chat choice, or the delta of a streamed chunk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// `assistant` (only in the first chunk of a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Answer text (with `<think>` inline unless the server splits reasoning off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Reasoning split off by SGLang/vLLM reasoning parsers and the DeepSeek API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Older vLLM spelling of `reasoning_content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl AssistantMessage {
    /// The reasoning under whichever name the server used.
    pub fn reasoning_text(&self) -> Option<&str> {
        self.reasoning_content
            .as_deref()
            .or(self.reasoning.as_deref())
    }
}

/// One choice of a response or of a streamed chunk. Chat choices carry `message` (or `delta`
/// when streamed), text completions carry `text`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position among the choices (prompt-major, then `n`).
    #[serde(default)]
    pub index: u32,
    /// Chat answer (non-streamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<AssistantMessage>,
    /// Chat delta (streamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<AssistantMessage>,
    /// Text completion (or its streamed piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// [`ChatLogprobs`] or [`CompletionLogprobs`] when requested, else `null`.
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop`, `length`, …; `null` until a streamed choice ends.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// vLLM's `stop_reason`: the stop string or stop token id that ended the choice; `null`
    /// for EOS, `length`, and servers that do not send it.
    #[serde(default)]
    pub stop_reason: Option<serde_json::Value>,
}

/// A completion response, or one chunk of a streamed one (then `choices` hold deltas and only
/// the last chunk may carry `usage`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// Response id (`chatcmpl-…`, `cmpl-…`).
    #[serde(default)]
    pub id: String,
    /// `chat.completion`, `chat.completion.chunk` or `text_completion`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Served model name.
    #[serde(default)]
    pub model: String,
    /// The choices.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Identifies the serving configuration (model and weights version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// An error reported inside a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// OpenAI's error object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The request field at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// Error code (unused here, always `null`).
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

/// An error response body: `{"error": {...}}`. Some servers answer `{"message": …}` or
/// `{"detail": …}` instead; [`ErrorBody::message_of`] reads all three.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The OpenAI error object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// Plain `message` (non-OpenAI servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// FastAPI-style `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ErrorBody {
    /// An OpenAI-shaped error body.
    pub fn new(message: String, kind: &str, param: Option<&str>) -> Self {
        ErrorBody {
            error: Some(ErrorDetail {
                message,
                kind: kind.to_string(),
                param: param.map(str::to_string),
                code: None,
            }),
            message: None,
            detail: None,
        }
    }

    /// The message of an error body, else the body itself (shortened to 500 characters).
    pub fn message_of(body: &str) -> String {
        if let Ok(b) = serde_json::from_str::<ErrorBody>(body) {
            if let Some(m) = b.error.map(|e| e.message).or(b.message).or(b.detail) {
                return m;
            }
        }
        body.chars().take(500).collect()
    }
}

/// `GET /v1/models` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served models.
    pub data: Vec<ModelCard>,
}

/// One served model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The name clients send as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Owner label.
    pub owned_by: String,
    /// Context capacity per sequence (vLLM extension).
    pub max_model_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_every_prompt_and_stop_form() {
        let r: CompletionRequest =
            serde_json::from_value(json!({"prompt": [[1, 2], [3]], "stop": "x", "user": "u"}))
                .unwrap();
        assert_eq!(r.prompt, PromptInput::IdLists(vec![vec![1, 2], vec![3]]));
        assert_eq!(r.sampling.stop.unwrap().into_vec(), vec!["x".to_string()]);
        let r: CompletionRequest = serde_json::from_value(json!({"prompt": [5, 6]})).unwrap();
        assert_eq!(r.prompt, PromptInput::Ids(vec![5, 6]));
        let r: CompletionRequest = serde_json::from_value(json!({"prompt": ["a", "b"]})).unwrap();
        assert_eq!(r.prompt, PromptInput::Texts(vec!["a".into(), "b".into()]));
        let err = serde_json::from_value::<CompletionRequest>(json!({"prompt": [-1]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("list of token ids"), "{err}");
        let c: ChatCompletionRequest = serde_json::from_value(json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": null}]}))
        .unwrap();
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.messages[1].content, None);
    }

    #[test]
    fn responses_round_trip_and_skip_absent_fields() {
        let resp = CompletionResponse {
            id: "chatcmpl-1".into(),
            object: "chat.completion".into(),
            choices: vec![Choice {
                message: Some(AssistantMessage {
                    role: Some("assistant".into()),
                    content: Some("x".into()),
                    ..Default::default()
                }),
                finish_reason: Some("stop".into()),
                ..Default::default()
            }],
            usage: Some(Usage::new(3, 4)),
            ..Default::default()
        };
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["choices"][0]["logprobs"], serde_json::Value::Null);
        assert!(v["choices"][0].get("text").is_none());
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(serde_json::from_value::<CompletionResponse>(v).unwrap(), resp);
    }

    #[test]
    fn error_messages_in_every_shape() {
        let body = serde_json::to_string(&ErrorBody::new("bad model".into(), "x", None)).unwrap();
        assert_eq!(ErrorBody::message_of(&body), "bad model");
        assert_eq!(ErrorBody::message_of(r#"{"detail": "nope"}"#), "nope");
        assert_eq!(ErrorBody::message_of("plain"), "plain");
    }
}
