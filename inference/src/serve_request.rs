//! Request validation of `distill serve`: the parsed, authorised body of a chat or completions
//! request turned into a [`Plan`] (prompt ids × n choices with their sampling parameters), or
//! the precise 400/404 that says which field is wrong.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::backend::Message;
use crate::native::GenParams;
use crate::serve_choice::{ChoiceKind, ChoiceOptions};
use crate::serve_limits::check_request_work;
use crate::serve_params::{self as params, Endpoint};
use crate::wire::{ChatMessageIn, MessageContent, SamplingFields, StopInput};
use crate::server::{api_error, bad_request, check_auth, ApiError, ServerState};

/// Validated request: prompts (as ids) × n choices with their parameters.
pub(crate) struct Plan {
    pub(crate) prompts: Vec<Vec<u32>>,
    pub(crate) n: u32,
    pub(crate) params: GenParams,
    pub(crate) seed: Option<u64>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) choice: ChoiceOptions,
}

/// The request body after the API-key check (an unauthorised request is not even parsed).
pub(crate) fn authorized_body<T: DeserializeOwned>(
    state: &ServerState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<T, ApiError> {
    check_auth(state, headers)?;
    parse_body(body, endpoint)
}

fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
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
    params::parse_request(&bytes, endpoint).map_err(|e| bad_request(e.message, e.param))
}

pub(crate) fn message_text(m: &ChatMessageIn, i: usize) -> Result<Message, ApiError> {
    let role = m.role.as_str();
    if !matches!(role, "system" | "user" | "assistant" | "developer" | "tool") {
        return Err(bad_request(
            format!("messages[{i}].role `{role}` is not supported"),
            Some("messages"),
        ));
    }
    let content = match &m.content {
        Some(MessageContent::Text(s)) => s.clone(),
        Some(MessageContent::Parts(parts)) => {
            let mut s = String::new();
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => s.push_str(t),
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
        None => String::new(),
    };
    let role = if role == "developer" { "system" } else { role };
    Ok(Message {
        role: role.into(),
        content,
    })
}

fn stop_list(v: &Option<StopInput>) -> Result<Vec<String>, ApiError> {
    let stops = v.clone().map(StopInput::into_vec).unwrap_or_default();
    if stops.len() > 16 {
        return Err(bad_request(
            "stop must be a string or a list of at most 16 strings",
            Some("stop"),
        ));
    }
    Ok(stops)
}

pub(crate) fn plan(
    state: &ServerState,
    prompts: Vec<Vec<u32>>,
    c: &SamplingFields,
    endpoint: Endpoint,
) -> Result<Plan, ApiError> {
    let limits = &state.limits;
    let defaults = state.model.defaults();
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
    let temperature = c.temperature.or(defaults.temperature).unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad_request(
            "temperature must be between 0 and 2",
            Some("temperature"),
        ));
    }
    let top_p = c.top_p.or(defaults.top_p).unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad_request("top_p must be in (0, 1]", Some("top_p")));
    }
    let top_k = match c.top_k.or(defaults.top_k.map(|k| k as i64)) {
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
        Some(0) => return Err(bad_request("max_tokens must be ≥ 1", Some("max_tokens"))),
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
        None => room
            .min(limits.max_tokens as usize)
            .min(defaults.max_tokens.map_or(usize::MAX, |m| m.max(1) as usize)),
    };
    check_request_work(limits, prompts.len(), n, max_tokens)?;
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
    let include_usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let extra = params::extra_params(c, endpoint, defaults, max_tokens)
        .map_err(|e| bad_request(e.message, e.param))?;
    let mut params = GenParams {
        max_tokens,
        temperature,
        top_p,
        top_k,
        seed: 0,
        stop: stop_list(&c.stop)?,
        ..Default::default()
    };
    extra.apply(&mut params);
    let choice = ChoiceOptions {
        kind: match endpoint {
            Endpoint::Chat => ChoiceKind::Chat,
            Endpoint::Completions => ChoiceKind::Text,
        },
        reasoning: state.options.reasoning_parser,
        logprobs: extra.logprobs.is_some(),
        tokens_as_ids: extra.tokens_as_ids,
    };
    Ok(Plan {
        prompts,
        n,
        params,
        seed: c.seed.map(|s| s as u64),
        stream: c.stream.unwrap_or(false),
        include_usage,
        choice,
    })
}
