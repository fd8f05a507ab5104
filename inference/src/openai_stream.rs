//! Reading what an OpenAI-compatible server answered: one JSON body or an SSE stream, into a
//! [`Completion`] — and deciding, from the answer alone, whether it is a finished sample, a
//! permanent failure, or a transient fault to retry.
//!
//! Third-party servers differ in what they leave out, and each omission must be visible rather
//! than silently recorded as a clean sample:
//! - a stream that ends (even with `data: [DONE]`) without any `finish_reason` was cut short —
//!   llama.cpp's server does this to a running stream when another request waits — so it is a
//!   transient fault, never a `stop`;
//! - `finish_reason: "abort"` (vLLM: the engine dropped the request) is transient too;
//! - a missing usage block (the server ignored `stream_options.include_usage`) leaves token
//!   counts unknown: streams count their content events instead (servers send one token per
//!   event), and [`UsageSource`] tells the caller so it can warn once.

use std::time::Duration;

use futures::StreamExt;

use crate::backend::{join_reasoning, split_reasoning, Completion, FinishReason};
use crate::wire::CompletionResponse;

/// How one attempt went.
pub(crate) enum Attempt {
    /// A finished sample and where its token counts came from.
    Done(Completion, UsageSource),
    /// Permanent failure: recorded, not retried.
    Permanent(String),
    /// Transient failure: retried after the backoff (or `Retry-After`).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
}

/// Where a completion's token counts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UsageSource {
    /// The server's `usage` block.
    Server,
    /// No usage block: `completion_tokens` counts the stream's content events (one token each
    /// on vLLM, SGLang and llama.cpp), `prompt_tokens` is 0 (unknown).
    CountedEvents,
    /// No usage block in a plain body: both counts are 0 (unknown).
    Missing,
}

pub(crate) fn transient(message: String, retry_after: Option<Duration>) -> Attempt {
    Attempt::Transient {
        message,
        retry_after,
    }
}

/// True when an error body describes a request the server can never accept, whatever its HTTP
/// status: llama-cpp-python answers a pydantic `1 validation error … [type=int_parsing …]`
/// with a 500, which retrying cannot fix.
pub(crate) fn is_validation_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("validation error") || m.contains("[type=") || m.contains("validationerror")
}

fn usage_of(v: &CompletionResponse) -> Option<(u32, u32)> {
    v.usage
        .map(|u| (u.prompt_tokens as u32, u.completion_tokens as u32))
}

/// Builds a completion from the parts a server returned: `reasoning_content` (or vLLM's older
/// `reasoning`) when the server split it off, otherwise `<think>` parsing of the content.
fn assemble(
    reasoning: Option<String>,
    content: String,
    finish: Option<&str>,
    usage: (u32, u32),
) -> Completion {
    let (reasoning, content, completion) = match reasoning.filter(|r| !r.is_empty()) {
        Some(r) => {
            let full = join_reasoning(&r, &content);
            (r, content, full)
        }
        None => {
            let (r, c) = split_reasoning(&content);
            (r, c, content)
        }
    };
    Completion {
        reasoning,
        content,
        completion,
        finish_reason: FinishReason::from_wire(finish),
        prompt_tokens: usage.0,
        completion_tokens: usage.1,
        latency_ms: 0,
        error: None,
        thinking: None,
    }
}

/// Parses a non-streamed chat or text completion body.
pub(crate) fn parse_response(v: &CompletionResponse) -> Result<(Completion, UsageSource), String> {
    let choice = v.choices.first().ok_or("response has no choices[0]")?;
    let finish = choice.finish_reason.as_deref();
    if finish == Some("abort") {
        return Err("the server aborted the request (finish_reason \"abort\")".into());
    }
    let (usage, source) = match usage_of(v) {
        Some(u) => (u, UsageSource::Server),
        None => ((0, 0), UsageSource::Missing),
    };
    let c = if let Some(msg) = &choice.message {
        let content = msg.content.clone().unwrap_or_default();
        let reasoning = msg.reasoning_text().map(str::to_string);
        assemble(reasoning, content, finish, usage)
    } else if let Some(text) = &choice.text {
        assemble(None, text.clone(), finish, usage)
    } else {
        return Err("choices[0] has neither `message` nor `text`".into());
    };
    Ok((c, source))
}

/// What a stream delivered so far.
#[derive(Default)]
struct StreamState {
    content: String,
    reasoning: String,
    finish: Option<String>,
    usage: Option<(u32, u32)>,
    /// Events that carried text (one token each on the servers we know).
    text_events: u32,
}

impl StreamState {
    /// Folds one `data:` event in; an `error` event is returned as the message.
    fn event(&mut self, v: &CompletionResponse) -> Result<(), String> {
        if let Some(e) = &v.error {
            return Err(format!("error event: {}", e.message));
        }
        if let Some(u) = usage_of(v) {
            self.usage = Some(u);
        }
        let Some(choice) = v.choices.first() else {
            return Ok(());
        };
        let before = self.content.len() + self.reasoning.len();
        if let Some(delta) = &choice.delta {
            if let Some(t) = &delta.content {
                self.content.push_str(t);
            }
            if let Some(t) = delta.reasoning_text() {
                self.reasoning.push_str(t);
            }
        } else if let Some(t) = &choice.text {
            self.content.push_str(t);
        }
        if self.content.len() + self.reasoning.len() > before {
            self.text_events += 1;
        }
        if let Some(f) = &choice.finish_reason {
            self.finish = Some(f.clone());
        }
        Ok(())
    }

    /// The attempt's outcome once the stream ended (`done`: `[DONE]` was seen).
    fn finish(self, url: &str, done: bool) -> Attempt {
        match self.finish.as_deref() {
            None => {
                let how = if done {
                    "with [DONE] but without a finish_reason"
                } else {
                    "before [DONE] and without a finish_reason"
                };
                return transient(format!("{url}: stream ended {how} (cut short)"), None);
            }
            Some("abort") => {
                return transient(
                    format!("{url}: the server aborted the stream (finish_reason \"abort\")"),
                    None,
                )
            }
            Some(_) => {}
        }
        let (usage, source) = match self.usage {
            Some(u) => (u, UsageSource::Server),
            None => ((0, self.text_events), UsageSource::CountedEvents),
        };
        let c = assemble(
            Some(self.reasoning),
            self.content,
            self.finish.as_deref(),
            usage,
        );
        Attempt::Done(c, source)
    }
}

/// Reads an SSE stream to the end. A stream that ends without a finish reason was cut off,
/// `[DONE]` or not: that is a transient fault (the whole request is redone).
pub(crate) async fn read_stream(url: &str, resp: reqwest::Response) -> Attempt {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut state = StreamState::default();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return transient(
                    format!("{url}: stream broke: {}", crate::error_chain(&e)),
                    None,
                )
            }
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                return state.finish(url, true);
            }
            let v: CompletionResponse = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => return transient(format!("{url}: bad SSE event: {e}"), None),
            };
            if let Err(m) = state.event(&v) {
                return transient(format!("{url}: {m}"), None);
            }
        }
    }
    state.finish(url, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: &Value) -> Result<Completion, String> {
        let body = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        parse_response(&body).map(|(c, _)| c)
    }

    fn stream_of(events: &[Value], done: bool) -> Attempt {
        let mut s = StreamState::default();
        for e in events {
            if let Err(m) = s.event(&serde_json::from_value(e.clone()).unwrap()) {
                return transient(m, None);
            }
        }
        s.finish("u", done)
    }

    #[test]
    fn parses_reasoning_content_and_think_tags() {
        let v = json!({"choices":[{"message":{"content":"\\boxed{4}","reasoning_content":"2+2"},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7}});
        let c = parse(&v).unwrap();
        assert_eq!(
            (c.reasoning.as_str(), c.content.as_str()),
            ("2+2", "\\boxed{4}")
        );
        assert_eq!(c.completion, "2+2\n</think>\n\n\\boxed{4}");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (5, 7));
        let v = json!({"choices":[{"message":{"content":"<think>\nhm\n</think>\n\nx"},
            "finish_reason":"length"}]});
        let c = parse(&v).unwrap();
        assert_eq!((c.reasoning.as_str(), c.content.as_str()), ("hm", "x"));
        assert_eq!(c.completion, "<think>\nhm\n</think>\n\nx");
        assert_eq!(c.finish_reason, FinishReason::Length);
        let v = json!({"choices":[{"text":"abc","finish_reason":"stop"}]});
        assert_eq!(parse(&v).unwrap().content, "abc");
        assert!(parse(&json!({"choices":[]})).is_err());
    }

    #[test]
    fn done_without_a_finish_reason_is_transient_not_stop() {
        let delta =
            |t: &str| json!({"choices":[{"index":0,"delta":{"content":t},"finish_reason":null}]});
        let got = stream_of(&[delta("The answer"), delta(" is")], true);
        match got {
            Attempt::Transient { message, .. } => {
                assert!(message.contains("without a finish_reason"), "{message}")
            }
            _ => panic!("a stream without a finish reason must be retried"),
        }
        let abort = json!({"choices":[{"index":0,"delta":{},"finish_reason":"abort"}]});
        assert!(matches!(
            stream_of(&[delta("x"), abort], true),
            Attempt::Transient { .. }
        ));
    }

    #[test]
    fn streams_without_usage_count_their_text_events() {
        let delta =
            |t: &str| json!({"choices":[{"index":0,"delta":{"content":t},"finish_reason":null}]});
        let end = json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
        let Attempt::Done(c, src) = stream_of(
            &[delta(""), delta("a"), delta("b"), delta("c"), end.clone()],
            true,
        ) else {
            panic!("finished stream")
        };
        assert_eq!(src, UsageSource::CountedEvents);
        assert_eq!((c.prompt_tokens, c.completion_tokens), (0, 3));
        let usage = json!({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":9}});
        let Attempt::Done(c, src) = stream_of(&[delta("a"), end.clone(), usage], true) else {
            panic!("finished stream")
        };
        assert_eq!(src, UsageSource::Server);
        assert_eq!((c.prompt_tokens, c.completion_tokens), (4, 9));
        let v = json!({"choices":[{"message":{"content":"x"},"finish_reason":"stop"}]});
        let (_, src) = parse_response(&serde_json::from_value(v).unwrap()).unwrap();
        assert_eq!(src, UsageSource::Missing);
    }

    #[test]
    fn validation_bodies_are_recognised() {
        let llama_cpp =
            "1 validation error for CreateChatCompletionRequest\nseed\n  Input should be a \
                         valid integer, unable to parse string as an integer [type=int_parsing, \
                         input_value='x', input_type=str]";
        assert!(is_validation_error(llama_cpp));
        assert!(!is_validation_error("CUDA out of memory"));
        assert!(!is_validation_error("overloaded"));
    }
}
