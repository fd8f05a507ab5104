//! Per-request limits of `distill serve`, checked before any work is queued: how many prompts
//! one `/v1/completions` request may carry and how many tokens one request may ask the engine
//! to generate, plus tokenization off the async workers. Without them a 2.5 MB body of 500k
//! one-token prompts took RSS from 0.14 to 3.3 GB and held the engine for minutes.

use axum::http::StatusCode;

use crate::backend::Prompt;
use crate::native::NativeModel;
use crate::server::{api_error, ApiError, ServerLimits};
use crate::wire::PromptInput;

fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
    )
}

/// Prompts → ids on the blocking pool: templating and tokenizing a multi-megabyte prompt takes
/// seconds, which must not stall a runtime worker (and every connection it serves).
pub(crate) async fn tokenize(
    model: &NativeModel,
    prompts: Vec<Prompt>,
) -> Result<Vec<Vec<u32>>, String> {
    let model = model.clone();
    let work = move || {
        prompts
            .iter()
            .map(|p| model.prompt_ids(p).map_err(|e| crate::error_chain(&e)))
            .collect()
    };
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(format!("the tokenizer task failed: {e}")))
}

/// Refuses a `/v1/completions` request with more prompts than [`ServerLimits::max_prompts`]
/// before any of them is tokenized.
pub(crate) fn check_prompt_count(
    limits: &ServerLimits,
    prompt: &PromptInput,
) -> Result<(), ApiError> {
    let count = match prompt {
        PromptInput::Text(_) | PromptInput::Ids(_) => 1,
        PromptInput::Texts(a) => a.len(),
        PromptInput::IdLists(a) => a.len(),
    };
    if count > limits.max_prompts {
        return Err(invalid(
            format!(
                "this request has {count} prompts; this server takes at most {} per request",
                limits.max_prompts
            ),
            Some("prompt"),
        ));
    }
    Ok(())
}

/// Bounds the tokens one request can make the engine generate (prompts × n × max_tokens), so
/// one client cannot queue hours of work.
pub(crate) fn check_request_work(
    limits: &ServerLimits,
    prompts: usize,
    n: u32,
    max_tokens: usize,
) -> Result<(), ApiError> {
    let work = (prompts as u64)
        .saturating_mul(u64::from(n))
        .saturating_mul(max_tokens as u64);
    if work > limits.max_request_tokens {
        return Err(invalid(
            format!(
                "this request may generate {work} tokens ({prompts} prompts × n {n} × max_tokens \
                 {max_tokens}); this server's per-request limit is {}: lower max_tokens or n, or \
                 split the request",
                limits.max_request_tokens
            ),
            Some("max_tokens"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_prompts_times_n_times_max_tokens_without_overflow() {
        let limits = ServerLimits {
            max_request_tokens: 100,
            max_prompts: 2,
            ..Default::default()
        };
        assert!(check_request_work(&limits, 2, 2, 25).is_ok());
        let e = check_request_work(&limits, 2, 2, 26).unwrap_err();
        assert_eq!(e.param, Some("max_tokens"));
        assert!(check_request_work(&limits, usize::MAX, u32::MAX, usize::MAX).is_err());
        let two = PromptInput::Texts(vec!["a".into(), "b".into()]);
        assert!(check_prompt_count(&limits, &two).is_ok());
        let three = PromptInput::IdLists(vec![vec![1], vec![2], vec![3]]);
        assert_eq!(
            check_prompt_count(&limits, &three).unwrap_err().param,
            Some("prompt")
        );
    }
}
