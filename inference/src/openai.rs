//! The OpenAI-compatible HTTP backend: SGLang, vLLM, the DeepSeek API or `distill serve`.
//!
//! Built for long teacher runs against a shared cluster: requests are spread over several
//! replicas by least outstanding requests, a semaphore caps what is in flight, and every
//! transient fault (429, 5xx, connection resets, timeouts, truncated bodies) is retried with
//! exponential backoff and jitter, honouring `Retry-After`. A 4xx other than 429 is a property of
//! the request, not of the moment, so it becomes a recorded failed sample instead of a retry loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::backend::{
    join_reasoning, split_reasoning, Backend, BackendError, ChatRequest, Completion, FinishReason,
    Prompt,
};
use crate::wire::{
    ChatCompletionRequest, ChatMessageIn, CompletionRequest, CompletionResponse, ErrorBody,
    MessageContent, PromptInput, SamplingFields, StopInput, StreamOptions,
};
use crate::InferenceError;

/// Which endpoint chat prompts go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// `/chat/completions` (the server applies the chat template). Default.
    #[default]
    Chat,
    /// `/completions`: only text or token prompts are accepted.
    Completions,
}

/// Settings of the HTTP backend (`[openai]` table of a teacher config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URLs of the replicas, each ending in `/v1` (e.g. `http://127.0.0.1:30000/v1`).
    /// Requests go to the replica with the fewest outstanding requests. Default: one local
    /// server on port 8000.
    #[serde(default = "default_base_urls")]
    pub base_urls: Vec<String>,
    /// Model name sent as `model` and recorded as the teacher. Default `deepseek-ai/DeepSeek-R1`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself). Unset: no
    /// `Authorization` header.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Endpoint used for message prompts. Default `chat`.
    #[serde(default)]
    pub api: ApiKind,
    /// Stream responses (SSE). Off by default: one JSON body is cheaper for both sides; turn it
    /// on for proxies that cut idle connections during hour-long generations.
    #[serde(default)]
    pub stream: bool,
    /// Maximum requests in flight across all replicas. Default 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-attempt timeout in seconds, body included. Default 3600 (32k-token R1 traces at
    /// ~10 tok/s per sequence take almost an hour).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// TCP connect timeout in seconds. Default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: f64,
    /// Retries after the first attempt for transient faults. Default 10.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay in milliseconds, doubled per retry. Default 500.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    /// Largest backoff delay (and largest `Retry-After` honoured) in milliseconds. Default 60000.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Extra JSON fields merged into every request body (e.g. `chat_template_kwargs`,
    /// `top_k`, `repetition_penalty`, `separate_reasoning`). Default none.
    #[serde(default)]
    pub extra_body: serde_json::Map<String, Value>,
}

fn default_base_urls() -> Vec<String> {
    vec!["http://127.0.0.1:8000/v1".into()]
}
fn default_model() -> String {
    "deepseek-ai/DeepSeek-R1".into()
}
fn default_concurrency() -> usize {
    64
}
fn default_timeout() -> f64 {
    3600.0
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_max_retries() -> u32 {
    10
}
fn default_backoff_initial() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    60_000
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default())).expect("all fields have defaults")
    }
}

struct Replica {
    base_url: String,
    outstanding: AtomicUsize,
}

/// The OpenAI-compatible client. Cheap to share (`Arc`); all methods take `&self`.
pub struct OpenAiBackend {
    cfg: OpenAiConfig,
    client: reqwest::Client,
    replicas: Vec<Replica>,
    api_key: Option<String>,
    permits: Semaphore,
    rr: AtomicUsize,
}

/// How one attempt went.
enum Attempt {
    Done(Completion),
    /// Permanent failure: recorded, not retried.
    Permanent(String),
    /// Transient failure: retried after the backoff (or `Retry-After`).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl OpenAiBackend {
    /// Builds the client; reads the API key from the configured environment variable (an error
    /// names the variable when it is unset, so a run does not start unauthenticated).
    pub fn new(cfg: OpenAiConfig) -> Result<Self, InferenceError> {
        if cfg.base_urls.is_empty() {
            return Err(InferenceError::Config("openai.base_urls is empty".into()));
        }
        if cfg.concurrency == 0 {
            return Err(InferenceError::Config(
                "openai.concurrency must be at least 1".into(),
            ));
        }
        let api_key = match &cfg.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|source| InferenceError::MissingEnv {
                key: "openai.api_key_env",
                var: var.clone(),
                source,
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_s.max(0.001)))
            .pool_max_idle_per_host(cfg.concurrency)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(InferenceError::Http)?;
        let replicas = cfg
            .base_urls
            .iter()
            .map(|u| Replica {
                base_url: u.trim_end_matches('/').to_string(),
                outstanding: AtomicUsize::new(0),
            })
            .collect();
        Ok(Self {
            permits: Semaphore::new(cfg.concurrency),
            cfg,
            client,
            replicas,
            api_key,
            rr: AtomicUsize::new(0),
        })
    }

    /// The configuration in use (for manifests).
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// Outstanding requests per replica, in `base_urls` order (for tests and progress logs).
    pub fn outstanding(&self) -> Vec<usize> {
        self.replicas
            .iter()
            .map(|r| r.outstanding.load(Ordering::Relaxed))
            .collect()
    }

    /// Least outstanding requests; ties broken round-robin so idle replicas share load.
    fn pick(&self) -> usize {
        let n = self.replicas.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| self.replicas[i].outstanding.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// The request body and endpoint for `req`: the typed wire request, then `extra_body`
    /// merged over it (so a config can add or override any field).
    fn body(&self, req: &ChatRequest) -> Result<(&'static str, Value), String> {
        let sampling = SamplingFields {
            model: Some(self.cfg.model.clone()),
            max_tokens: Some(req.max_tokens),
            temperature: Some(req.temperature),
            top_p: Some(req.top_p),
            // JSON readers on the server side often parse into i64: keep the seed in range.
            seed: req.seed.map(|s| (s & (i64::MAX as u64)) as i64),
            stop: (!req.stop.is_empty()).then(|| StopInput::Many(req.stop.clone())),
            stream: self.cfg.stream.then_some(true),
            stream_options: self.cfg.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            ..Default::default()
        };
        let (path, body) = match (&req.prompt, self.cfg.api) {
            (Prompt::Messages(m), ApiKind::Chat) => {
                let messages = m
                    .iter()
                    .map(|m| ChatMessageIn {
                        role: m.role.clone(),
                        content: Some(MessageContent::Text(m.content.clone())),
                    })
                    .collect();
                let body = ChatCompletionRequest { messages, sampling };
                ("/chat/completions", serde_json::to_value(body))
            }
            (Prompt::Messages(_), ApiKind::Completions) => {
                return Err("message prompts need api = \"chat\"".into())
            }
            (Prompt::Text(t), _) => {
                let prompt = PromptInput::Text(t.clone());
                ("/completions", serde_json::to_value(CompletionRequest { prompt, sampling }))
            }
            (Prompt::Tokens(t), _) => {
                let prompt = PromptInput::Ids(t.clone());
                ("/completions", serde_json::to_value(CompletionRequest { prompt, sampling }))
            }
        };
        let mut body = body.map_err(|e| format!("cannot encode the request: {e}"))?;
        if let Value::Object(map) = &mut body {
            for (k, v) in &self.cfg.extra_body {
                map.insert(k.clone(), v.clone());
            }
        }
        Ok((path, body))
    }

    async fn attempt(&self, replica: usize, path: &str, body: &Value) -> Attempt {
        let url = format!("{}{}", self.replicas[replica].base_url, path);
        let mut rb = self
            .client
            .post(&url)
            .timeout(Duration::from_secs_f64(self.cfg.timeout_s.max(0.001)))
            .json(body);
        if let Some(key) = &self.api_key {
            rb = rb.bearer_auth(key);
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return transient(format!("{url}: {}", crate::error_chain(&e)), None),
        };
        let status = resp.status();
        if !status.is_success() {
            let retry_after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let message = format!("HTTP {}: {}", status.as_u16(), ErrorBody::message_of(&text));
            let code = status.as_u16();
            return if code == 429 || code == 408 || status.is_server_error() {
                transient(format!("{url}: {message}"), retry_after)
            } else {
                Attempt::Permanent(message)
            };
        }
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        // A server that ignores `stream: true` answers with one JSON body: read that instead.
        if self.cfg.stream && is_sse {
            read_stream(&url, resp).await
        } else {
            match resp.bytes().await {
                Err(e) => transient(format!("{url}: reading body: {}", crate::error_chain(&e)), None),
                Ok(bytes) => match serde_json::from_slice::<CompletionResponse>(&bytes) {
                    Err(e) => transient(format!("{url}: invalid JSON body: {e}"), None),
                    Ok(v) => parse_response(&v)
                        .map(Attempt::Done)
                        .unwrap_or_else(|m| transient(format!("{url}: {m}"), None)),
                },
            }
        }
    }

    async fn complete_inner(&self, req: ChatRequest) -> Result<Completion, BackendError> {
        let started = Instant::now();
        let (path, body) = match self.body(&req) {
            Ok(x) => x,
            Err(m) => return Ok(Completion::failed(m, 0)),
        };
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| BackendError::Shutdown)?;
                let replica = self.pick();
                self.replicas[replica]
                    .outstanding
                    .fetch_add(1, Ordering::Relaxed);
                let _guard = Outstanding(&self.replicas[replica].outstanding);
                self.attempt(replica, path, &body).await
            };
            let elapsed = started.elapsed().as_millis() as u64;
            match outcome {
                Attempt::Done(mut c) => {
                    c.latency_ms = elapsed;
                    return Ok(c);
                }
                Attempt::Permanent(m) => {
                    tracing::warn!(error = %m, "request failed permanently; recording the sample as failed");
                    return Ok(Completion::failed(m, elapsed));
                }
                Attempt::Transient {
                    message,
                    retry_after,
                } => {
                    if attempts > self.cfg.max_retries {
                        return Err(BackendError::RetriesExhausted {
                            attempts,
                            last: message,
                        });
                    }
                    let delay = self.backoff(attempts, retry_after);
                    tracing::debug!(attempt = attempts, ?delay, error = %message, "transient fault, retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Full-jitter-ish exponential backoff: uniform in [d/2, d] with d = initial·2^(n-1) capped;
    /// a server's `Retry-After` is a floor (capped at `backoff_max_ms`).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = self.cfg.backoff_max_ms as f64;
        let d = (self.cfg.backoff_initial_ms as f64
            * 2f64.powi(attempt.saturating_sub(1).min(30) as i32))
        .min(max);
        let jittered = d * rand::rng().random_range(0.5..=1.0);
        let floor = retry_after
            .map(|r| (r.as_millis() as f64).min(max))
            .unwrap_or(0.0);
        Duration::from_millis(jittered.max(floor) as u64)
    }
}

/// Decrements a replica's outstanding count however the attempt ends (including cancellation).
struct Outstanding<'a>(&'a AtomicUsize);
impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backend for OpenAiBackend {
    fn model_name(&self) -> &str {
        &self.cfg.model
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        Box::pin(self.complete_inner(request))
    }
}

fn transient(message: String, retry_after: Option<Duration>) -> Attempt {
    Attempt::Transient {
        message,
        retry_after,
    }
}

/// `Retry-After` in seconds (integer or fractional); HTTP-date values are ignored (backoff
/// applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn usage_of(v: &CompletionResponse) -> (u32, u32) {
    v.usage
        .map(|u| (u.prompt_tokens as u32, u.completion_tokens as u32))
        .unwrap_or((0, 0))
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
pub(crate) fn parse_response(v: &CompletionResponse) -> Result<Completion, String> {
    let choice = v.choices.first().ok_or("response has no choices[0]")?;
    let finish = choice.finish_reason.as_deref();
    if let Some(msg) = &choice.message {
        let content = msg.content.clone().unwrap_or_default();
        let reasoning = msg.reasoning_text().map(str::to_string);
        Ok(assemble(reasoning, content, finish, usage_of(v)))
    } else if let Some(text) = &choice.text {
        Ok(assemble(None, text.clone(), finish, usage_of(v)))
    } else {
        Err("choices[0] has neither `message` nor `text`".into())
    }
}

/// Reads an SSE stream to the end. A stream that ends without `[DONE]` or a finish reason was
/// cut off: that is a transient fault (the whole request is redone).
async fn read_stream(url: &str, resp: reqwest::Response) -> Attempt {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let (mut content, mut reasoning) = (String::new(), String::new());
    let mut finish: Option<String> = None;
    let mut usage = (0u32, 0u32);
    let mut done = false;
    'outer: while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return transient(format!("{url}: stream broke: {}", crate::error_chain(&e)), None),
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                break 'outer;
            }
            let v: CompletionResponse = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => return transient(format!("{url}: bad SSE event: {e}"), None),
            };
            if let Some(e) = &v.error {
                return transient(format!("{url}: error event: {}", e.message), None);
            }
            if v.usage.is_some() {
                usage = usage_of(&v);
            }
            if let Some(choice) = v.choices.first() {
                if let Some(delta) = &choice.delta {
                    if let Some(t) = &delta.content {
                        content.push_str(t);
                    }
                    if let Some(t) = delta.reasoning_text() {
                        reasoning.push_str(t);
                    }
                } else if let Some(t) = &choice.text {
                    content.push_str(t);
                }
                if let Some(f) = &choice.finish_reason {
                    finish = Some(f.clone());
                }
            }
        }
    }
    if !done && finish.is_none() {
        return transient(format!("{url}: stream ended before [DONE]"), None);
    }
    Attempt::Done(assemble(Some(reasoning), content, finish.as_deref(), usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_response(v: &Value) -> Result<Completion, String> {
        super::parse_response(&serde_json::from_value(v.clone()).map_err(|e| e.to_string())?)
    }

    #[test]
    fn parses_reasoning_content_and_think_tags() {
        let v = json!({"choices":[{"message":{"content":"\\boxed{4}","reasoning_content":"2+2"},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7}});
        let c = parse_response(&v).unwrap();
        assert_eq!(
            (c.reasoning.as_str(), c.content.as_str()),
            ("2+2", "\\boxed{4}")
        );
        assert_eq!(c.completion, "2+2\n</think>\n\n\\boxed{4}");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (5, 7));
        let v = json!({"choices":[{"message":{"content":"<think>\nhm\n</think>\n\nx"},
            "finish_reason":"length"}]});
        let c = parse_response(&v).unwrap();
        assert_eq!((c.reasoning.as_str(), c.content.as_str()), ("hm", "x"));
        assert_eq!(c.completion, "<think>\nhm\n</think>\n\nx");
        assert_eq!(c.finish_reason, FinishReason::Length);
        let v = json!({"choices":[{"text":"abc","finish_reason":"stop"}]});
        assert_eq!(parse_response(&v).unwrap().content, "abc");
        assert!(parse_response(&json!({"choices":[]})).is_err());
    }

    #[test]
    fn error_bodies_and_retry_after() {
        assert_eq!(
            ErrorBody::message_of(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(ErrorBody::message_of("plain"), "plain");
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "1.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let cfg = OpenAiConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..Default::default()
        };
        let b = OpenAiBackend::new(cfg).unwrap();
        for _ in 0..20 {
            let d1 = b.backoff(1, None).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d5 = b.backoff(5, None).as_millis();
            assert!((500..=1000).contains(&d5), "{d5}");
            assert_eq!(
                b.backoff(1, Some(Duration::from_millis(700))).as_millis(),
                700
            );
            assert_eq!(
                b.backoff(1, Some(Duration::from_secs(100))).as_millis(),
                1000
            );
        }
    }

    #[test]
    fn least_outstanding_pick() {
        let cfg = OpenAiConfig {
            base_urls: vec![
                "http://127.0.0.1:1/v1".into(),
                "http://127.0.0.1:2/v1".into(),
            ],
            ..Default::default()
        };
        let b = OpenAiBackend::new(cfg).unwrap();
        b.replicas[0].outstanding.store(3, Ordering::Relaxed);
        for _ in 0..5 {
            assert_eq!(b.pick(), 1);
        }
        b.replicas[1].outstanding.store(3, Ordering::Relaxed);
        let picks: std::collections::HashSet<_> = (0..6).map(|_| b.pick()).collect();
        assert_eq!(picks.len(), 2, "ties alternate");
    }

    #[test]
    fn missing_api_key_env_is_named() {
        let cfg = OpenAiConfig {
            api_key_env: Some("DISTILL_TEST_SURELY_UNSET_KEY".into()),
            ..Default::default()
        };
        let err = OpenAiBackend::new(cfg).err().unwrap().to_string();
        assert!(err.contains("DISTILL_TEST_SURELY_UNSET_KEY"), "{err}");
        assert!(err.contains("openai.api_key_env"), "{err}");
    }
}
