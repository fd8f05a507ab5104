//! What a serving replica says about itself (`GET {base_url}/models`), read once before a run.
//!
//! A sampling run against a server that cannot answer it must stop before the first sample,
//! not record thousands of failed rows: so at start every replica is asked for its model list
//! and
//! - an unreachable URL (connection refused, DNS, no answer in time) is an error at once, naming
//!   the URL and the cause, instead of retrying each sample for seconds as a transient fault;
//! - a configured model name the replica does not list is an error listing what it serves (a
//!   server that answers any name would otherwise record rows under the wrong teacher);
//! - the context size (`max_model_len`, reported by vLLM, SGLang and `distill serve`) bounds
//!   `max_tokens`: a run whose requests cannot fit is refused up front (see
//!   [`check_fits`]; distill refuses rather than clamping, so `max_tokens` always means what the
//!   run's manifest says).
//!
//! A replica that lists no models, has no `/models` route or answers it with something else
//! is only warned about: model name and context size then stay unchecked.

use std::time::Duration;

use serde_json::Value;

use crate::InferenceError;

/// One model a replica lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedModel {
    /// The name clients send as `model`.
    pub id: String,
    /// Context capacity in tokens (prompt + completion), when the server reports it.
    pub max_model_len: Option<u64>,
}

/// What one replica's `/models` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// The models it lists (possibly none).
    Models(Vec<ServedModel>),
    /// No usable list (no such route, an error status, a body of another shape): why.
    Unavailable(String),
}

/// The context length a model card reports: `max_model_len` (vLLM, SGLang, `distill serve`),
/// else `context_length` or `max_context_length` (other OpenAI-compatible servers).
fn context_of(card: &Value) -> Option<u64> {
    ["max_model_len", "context_length", "max_context_length"]
        .iter()
        .find_map(|k| card.get(*k).and_then(Value::as_u64))
}

/// Parses an OpenAI `/models` body (`{"data": [{"id": …}, …]}`); `None` when it has no `data`
/// list.
pub fn parse_listing(body: &Value) -> Option<Vec<ServedModel>> {
    let data = body.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|card| {
                Some(ServedModel {
                    id: card.get("id")?.as_str()?.to_string(),
                    max_model_len: context_of(card),
                })
            })
            .collect(),
    )
}

/// Asks `base_url` (ending in `/v1`) for its models. Errors only for what makes the replica
/// unusable: unreachable, or refusing the credentials.
pub async fn fetch_listing(
    client: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
    timeout: Duration,
) -> Result<Listing, InferenceError> {
    let url = format!("{base_url}/models");
    let mut rb = client.get(&url).timeout(timeout);
    if let Some(key) = api_key {
        rb = rb.bearer_auth(key);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() || e.is_timeout() => {
            return Err(InferenceError::Unreachable {
                url: base_url.to_string(),
                source: e,
            })
        }
        Err(e) => return Ok(Listing::Unavailable(crate::error_chain(&e))),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        let body = resp.text().await.unwrap_or_default();
        return Err(InferenceError::Config(format!(
            "{url} refused the credentials (HTTP {}): {}; check openai.api_key_env",
            status.as_u16(),
            crate::wire::ErrorBody::message_of(&body)
        )));
    }
    if !status.is_success() {
        return Ok(Listing::Unavailable(format!("HTTP {}", status.as_u16())));
    }
    let body: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return Ok(Listing::Unavailable(crate::error_chain(&e))),
    };
    Ok(match parse_listing(&body) {
        Some(models) => Listing::Models(models),
        None => Listing::Unavailable("the body has no `data` list".into()),
    })
}

/// The smallest number of tokens a prompt of `bytes` UTF-8 bytes can take: no tokenizer in
/// common use averages more than 8 bytes per token on text, so `bytes / 8` (at least 1)
/// under-counts, and a run refused with it could never have fit.
pub fn min_prompt_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(8).max(1)
}

/// Refuses a run whose longest prompt (`prompt_bytes`) plus `max_tokens` cannot fit a context
/// of `max_model_len` tokens on `url`. The count is a lower bound ([`min_prompt_tokens`]), so
/// a refused run would have failed every such request with HTTP 400; requests that pass may
/// still be refused one by one and are then recorded as failed samples.
pub fn check_fits(
    url: &str,
    model: &str,
    max_model_len: u64,
    max_tokens: u32,
    prompt_bytes: usize,
) -> Result<(), InferenceError> {
    let prompt = min_prompt_tokens(prompt_bytes);
    let need = u64::from(max_tokens) + prompt;
    if need > max_model_len {
        return Err(InferenceError::Config(format!(
            "max_tokens {max_tokens} plus the longest prompt (at least {prompt} tokens) needs \
             {need} tokens, but `{model}` on {url} has max_model_len {max_model_len}: lower \
             max_tokens to at most {} or serve the model with a longer context",
            max_model_len.saturating_sub(prompt)
        )));
    }
    Ok(())
}

/// The configured model in a replica's listing; an error naming what it serves when absent.
/// An empty listing returns `Ok(None)` (nothing to check against).
pub fn find_model<'a>(
    url: &str,
    models: &'a [ServedModel],
    model: &str,
) -> Result<Option<&'a ServedModel>, InferenceError> {
    if models.is_empty() {
        return Ok(None);
    }
    match models.iter().find(|m| m.id == model) {
        Some(m) => Ok(Some(m)),
        None => {
            let served: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
            Err(InferenceError::Config(format!(
                "model `{model}` is not served by {url}; it serves: {} (set openai.model / \
                 --model to one of them)",
                served.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listings_of_vllm_sglang_and_plain_servers() {
        let vllm = json!({"object":"list","data":[{"id":"m","object":"model","max_model_len":4096,
            "owned_by":"vllm","root":"m","parent":null}]});
        assert_eq!(
            parse_listing(&vllm).unwrap(),
            vec![ServedModel {
                id: "m".into(),
                max_model_len: Some(4096)
            }]
        );
        let plain = json!({"data":[{"id":"a"},{"id":"b","context_length":8192}]});
        let got = parse_listing(&plain).unwrap();
        assert_eq!(got[0].max_model_len, None);
        assert_eq!(got[1].max_model_len, Some(8192));
        assert!(parse_listing(&json!({"models": []})).is_none());
    }

    #[test]
    fn unknown_model_names_what_is_served() {
        let models = vec![ServedModel {
            id: "served".into(),
            max_model_len: None,
        }];
        let err = find_model("http://h/v1", &models, "nope")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`nope`") && err.contains("served") && err.contains("http://h/v1"),
            "{err}"
        );
        assert!(find_model("u", &[], "any").unwrap().is_none());
        assert!(find_model("u", &models, "served").unwrap().is_some());
    }

    #[test]
    fn runs_that_cannot_fit_are_refused() {
        let err = check_fits("u", "m", 4096, 32768, 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_model_len 4096") && err.contains("32768"),
            "{err}"
        );
        assert!(check_fits("u", "m", 4096, 4000, 80).is_ok());
        // 4000 + 800 bytes / 8 = 4100 > 4096.
        assert!(check_fits("u", "m", 4096, 4000, 800).is_err());
    }
}
