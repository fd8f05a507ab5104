//! The OpenAI-compatible HTTP backend: SGLang, vLLM, the DeepSeek API or `distill serve`.
//!
//! Built for long teacher runs against a shared cluster: requests are spread over several
//! replicas by least outstanding requests, a semaphore caps what is in flight, and every
//! transient fault (429, 5xx, connection resets, timeouts, truncated bodies) is retried with
//! exponential backoff and jitter, honouring `Retry-After`. A 4xx other than 429 is a property of
//! the request, not of the moment, so it becomes a recorded failed sample instead of a retry loop;
//! so does a 5xx whose body is a validation error (llama-cpp-python answers those with 500).
//! What a response means — finished, cut short, token counts known or not — is read in
//! `openai_stream`; before a run, [`OpenAiBackend::check_servers`] checks every replica's model
//! list and context size ([`crate::server_info`]). Seeds go out as 32-bit [`request_seed`]s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::backend::{Backend, BackendError, ChatRequest, Completion, Prompt, RunBounds};
use crate::openai_stream::{
    is_validation_error, parse_response, read_stream, transient, Attempt, UsageSource,
};
use crate::server_info::{self, Listing};
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
    /// Set once the "no usage block" warning was logged (it is logged once per backend).
    usage_warned: AtomicBool,
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
            Some(var) => Some(
                std::env::var(var).map_err(|source| InferenceError::MissingEnv {
                    key: "openai.api_key_env",
                    var: var.clone(),
                    source,
                })?,
            ),
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
            usage_warned: AtomicBool::new(false),
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
            seed: req.seed.map(|s| i64::from(request_seed(s))),
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
                (
                    "/completions",
                    serde_json::to_value(CompletionRequest { prompt, sampling }),
                )
            }
            (Prompt::Tokens(t), _) => {
                let prompt = PromptInput::Ids(t.clone());
                (
                    "/completions",
                    serde_json::to_value(CompletionRequest { prompt, sampling }),
                )
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
            // A 5xx whose body is a validation error (llama-cpp-python) will never succeed.
            let retryable = code == 429
                || code == 408
                || (status.is_server_error() && !is_validation_error(&message));
            return if retryable {
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
                Err(e) => transient(
                    format!("{url}: reading body: {}", crate::error_chain(&e)),
                    None,
                ),
                Ok(bytes) => match serde_json::from_slice::<CompletionResponse>(&bytes) {
                    Err(e) => transient(format!("{url}: invalid JSON body: {e}"), None),
                    Ok(v) => match parse_response(&v) {
                        Ok((c, source)) => Attempt::Done(c, source),
                        Err(m) => transient(format!("{url}: {m}"), None),
                    },
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
                Attempt::Done(mut c, usage) => {
                    self.note_usage(usage);
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

    /// Logs, once per backend, that the server sends no token usage and what is recorded
    /// instead.
    fn note_usage(&self, usage: UsageSource) {
        if usage == UsageSource::Server || self.usage_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        match usage {
            UsageSource::CountedEvents => tracing::warn!(
                model = %self.cfg.model,
                "the server sends no usage block (it ignores stream_options.include_usage): \
                 completion_tokens are counted from the stream's text events, prompt_tokens \
                 are recorded as 0 (unknown)"
            ),
            _ => tracing::warn!(
                model = %self.cfg.model,
                "the server sends no usage block: prompt_tokens and completion_tokens are \
                 recorded as 0 (unknown); set openai.stream = true to count completion tokens"
            ),
        }
    }

    /// Reads every replica's `/models` and checks the run against it: see [`server_info`].
    /// Unreachable replicas and unknown model names are errors; replicas without a usable
    /// listing are warned about. The smallest `max_model_len` reported bounds the run.
    pub async fn check_servers(&self, bounds: &RunBounds) -> Result<(), crate::InferenceError> {
        let timeout = Duration::from_secs_f64(
            (self.cfg.connect_timeout_s + 20.0).min(self.cfg.timeout_s.max(0.001)),
        );
        for r in &self.replicas {
            let url = &r.base_url;
            let listing =
                server_info::fetch_listing(&self.client, url, self.api_key.as_deref(), timeout)
                    .await?;
            let models = match listing {
                Listing::Models(m) => m,
                Listing::Unavailable(why) => {
                    tracing::warn!(url = %url, reason = %why,
                        "cannot read the server's model list: model name and context size unchecked");
                    continue;
                }
            };
            let Some(card) = server_info::find_model(url, &models, &self.cfg.model)? else {
                tracing::warn!(url = %url, model = %self.cfg.model,
                    "the server lists no models: the model name is unchecked");
                continue;
            };
            match card.max_model_len {
                Some(len) => server_info::check_fits(
                    url,
                    &self.cfg.model,
                    len,
                    bounds.max_tokens,
                    bounds.longest_prompt_bytes,
                )?,
                None => tracing::info!(url = %url, "the server does not report max_model_len"),
            }
        }
        Ok(())
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

    fn preflight<'a>(
        &'a self,
        bounds: &'a RunBounds,
    ) -> BoxFuture<'a, Result<(), crate::InferenceError>> {
        Box::pin(self.check_servers(bounds))
    }
}

/// The 32-bit seed sent for a sample's 63-bit `seed`. Servers keep only 32 bits of a seed
/// (llama.cpp's is a `uint32`; vLLM and SGLang accept more but many setups truncate), so the
/// low bits alone would give samples whose seeds differ only above bit 31 the same stream: the
/// seed is mixed (SplitMix64's finaliser) and folded to 32 bits instead. Stable across
/// versions and machines, so a recorded row's request can be rebuilt from its `seed` column.
pub fn request_seed(seed: u64) -> u32 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z ^ (z >> 32)) as u32
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn request_seeds_fit_32_bits_and_stay_distinct_above_bit_31() {
        let a = 0x1234_5678u64;
        let b = a + (1 << 32);
        assert_ne!(
            request_seed(a),
            request_seed(b),
            "low 32 bits equal, seeds must differ"
        );
        let seeds: std::collections::HashSet<u32> = (0..10_000u64)
            .map(|i| request_seed(datasets::records::sample_seed(0, &["p"], i as u32)))
            .collect();
        assert!(seeds.len() >= 9_990, "{} distinct of 10000", seeds.len());
        let cfg = OpenAiConfig::default();
        let backend = OpenAiBackend::new(cfg).unwrap();
        let req = ChatRequest {
            prompt: Prompt::Text("x".into()),
            max_tokens: 1,
            temperature: 0.0,
            top_p: 1.0,
            seed: Some(u64::MAX >> 1),
            stop: vec![],
        };
        let (_, body) = backend.body(&req).unwrap();
        let sent = body["seed"].as_u64().unwrap();
        assert!(sent <= u64::from(u32::MAX), "{sent}");
        assert_eq!(sent, u64::from(request_seed(u64::MAX >> 1)));
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
