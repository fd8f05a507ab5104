//! What `distill serve` accepts in a request and what it fills in, the vLLM way:
//!
//! - [`parse_request`]: every top-level field is checked against the fields this server
//!   implements before the body is deserialised. An unknown or unimplemented field is a 400
//!   naming it (OpenAI-compatible servers that ignore such fields let a client believe, say,
//!   `presence_penalty` applied); fields we do not implement are accepted only with their
//!   neutral value (`presence_penalty: 0`, `echo: false`, …). Type and range errors name the
//!   field (`max_tokens must be ≥ 1, got -1`, "missing field `messages`") instead of a generic
//!   "invalid JSON body".
//! - [`SamplingDefaults`]: the checkpoint's `generation_config.json` sampling values
//!   (temperature, top_p, top_k, repetition_penalty, max_new_tokens) for requests that omit
//!   them, as vLLM's default `--generation-config auto` does (vLLM applies them whatever
//!   `do_sample` says, and so do we).
//! - [`choice_seed`]: per-choice seeds that never coincide across requests.
//! - [`system_fingerprint`]: names the served weights, changing on every reload.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::native::GenParams;
use crate::wire::{LogprobsField, SamplingFields};

/// Largest `top_logprobs` / completions `logprobs` (vLLM's default `max_logprobs`).
pub const MAX_LOGPROBS: u32 = 20;

/// A request field at fault: the message and, when it is one of ours, the field name.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Human-readable message naming the field.
    pub message: String,
    /// The field (`param` of the OpenAI error body).
    pub param: Option<&'static str>,
}

impl FieldError {
    fn new(message: impl Into<String>, param: Option<&'static str>) -> Self {
        FieldError {
            message: message.into(),
            param,
        }
    }
}

/// The endpoint a body is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// What a field's value must look like.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Checked by deserialisation (messages, prompt).
    Serde,
    Str,
    Number,
    Bool,
    /// An integer ≥ the bound.
    Int(i64),
    /// A string or a list of strings.
    StrOrList,
    IntList,
    Object,
    /// Accepted only with a value that changes nothing (the field is not implemented).
    Neutral(fn(&Value) -> bool, &'static str),
}

fn is_zero(v: &Value) -> bool {
    v.as_f64() == Some(0.0)
}
fn is_one(v: &Value) -> bool {
    v.as_f64() == Some(1.0)
}
fn is_false(v: &Value) -> bool {
    v == &Value::Bool(false)
}
fn is_true(v: &Value) -> bool {
    v == &Value::Bool(true)
}
fn is_empty(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
        || v.as_array().is_some_and(|a| a.is_empty())
        || v.as_str().is_some_and(str::is_empty)
}
fn is_anything(_: &Value) -> bool {
    true
}
fn is_text_format(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("text")
}
fn is_no_tool(v: &Value) -> bool {
    v.as_str() == Some("none")
}

/// Fields of both endpoints.
const COMMON: &[(&str, Kind)] = &[
    ("model", Kind::Str),
    ("n", Kind::Int(1)),
    ("temperature", Kind::Number),
    ("top_p", Kind::Number),
    ("top_k", Kind::Int(-1)),
    ("max_tokens", Kind::Int(1)),
    ("max_completion_tokens", Kind::Int(1)),
    ("stop", Kind::StrOrList),
    ("seed", Kind::Int(i64::MIN)),
    ("stream", Kind::Bool),
    ("stream_options", Kind::Object),
    ("repetition_penalty", Kind::Number),
    ("min_tokens", Kind::Int(0)),
    ("ignore_eos", Kind::Bool),
    ("stop_token_ids", Kind::IntList),
    ("return_tokens_as_token_ids", Kind::Bool),
    // Metadata with no effect on generation.
    ("user", Kind::Neutral(is_anything, "any value")),
    // Not implemented: accepted only when they change nothing.
    ("frequency_penalty", Kind::Neutral(is_zero, "0")),
    ("presence_penalty", Kind::Neutral(is_zero, "0")),
    ("min_p", Kind::Neutral(is_zero, "0")),
    ("logit_bias", Kind::Neutral(is_empty, "{}")),
    ("echo", Kind::Neutral(is_false, "false")),
    ("skip_special_tokens", Kind::Neutral(is_true, "true")),
    (
        "spaces_between_special_tokens",
        Kind::Neutral(is_true, "true"),
    ),
    (
        "include_stop_str_in_output",
        Kind::Neutral(is_false, "false"),
    ),
];

/// Fields of `/v1/chat/completions` only.
const CHAT: &[(&str, Kind)] = &[
    ("messages", Kind::Serde),
    ("logprobs", Kind::Bool),
    ("top_logprobs", Kind::Int(0)),
    ("add_generation_prompt", Kind::Neutral(is_true, "true")),
    ("continue_final_message", Kind::Neutral(is_false, "false")),
    ("tools", Kind::Neutral(is_empty, "[]")),
    ("tool_choice", Kind::Neutral(is_no_tool, "\"none\"")),
    (
        "parallel_tool_calls",
        Kind::Neutral(is_anything, "any value"),
    ),
    (
        "response_format",
        Kind::Neutral(is_text_format, "{\"type\": \"text\"}"),
    ),
];

/// Fields of `/v1/completions` only.
const COMPLETIONS: &[(&str, Kind)] = &[
    ("prompt", Kind::Serde),
    ("logprobs", Kind::Int(0)),
    ("best_of", Kind::Neutral(is_one, "1")),
    ("suffix", Kind::Neutral(is_empty, "\"\"")),
];

/// Checks `bytes` field by field, then deserialises it. Errors name the field.
pub fn parse_request<T: DeserializeOwned>(
    bytes: &[u8],
    endpoint: Endpoint,
) -> Result<T, FieldError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| FieldError::new(format!("invalid JSON body: {e}"), None))?;
    let Value::Object(map) = &value else {
        return Err(FieldError::new(
            "the request body must be a JSON object",
            None,
        ));
    };
    let specific = match endpoint {
        Endpoint::Chat => CHAT,
        Endpoint::Completions => COMPLETIONS,
    };
    for (key, v) in map {
        let Some(&(name, kind)) = specific.iter().chain(COMMON).find(|(n, _)| n == key) else {
            return Err(FieldError::new(
                format!("unknown or unsupported request field `{key}`: distill serve does not implement it"),
                None,
            ));
        };
        check_field(name, kind, v)?;
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let param = [CHAT, COMPLETIONS, COMMON]
            .iter()
            .flat_map(|t| t.iter())
            .map(|(n, _)| *n)
            .find(|n| {
                path == *n
                    || path.starts_with(&format!("{n}["))
                    || path.starts_with(&format!("{n}."))
            });
        let inner = e.inner().to_string();
        // A missing top-level field is reported at path "."; name it as the param.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
            .and_then(|f| {
                [CHAT, COMPLETIONS]
                    .iter()
                    .flat_map(|t| t.iter())
                    .map(|(n, _)| *n)
                    .find(|n| *n == f)
            });
        let message = if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        };
        FieldError::new(message, param.or(missing))
    })
}

fn check_field(name: &'static str, kind: Kind, v: &Value) -> Result<(), FieldError> {
    if v.is_null() {
        return Ok(()); // null = absent, as OpenAI servers read it
    }
    let bad = |what: String| Err(FieldError::new(format!("{name} {what}"), Some(name)));
    match kind {
        Kind::Serde => Ok(()),
        Kind::Str if !v.is_string() => bad("must be a string".into()),
        Kind::Number if !v.is_number() => bad("must be a number".into()),
        Kind::Bool if !v.is_boolean() => bad("must be true or false".into()),
        Kind::Object if !v.is_object() => bad("must be an object".into()),
        Kind::Int(min) => match v.as_i64() {
            Some(i) if i >= min => Ok(()),
            Some(i) => bad(format!("must be ≥ {min}, got {i}")),
            None if v.as_u64().is_some() => Ok(()),
            None => bad(format!("must be an integer, got {v}")),
        },
        Kind::StrOrList => {
            let ok = v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if ok {
                Ok(())
            } else {
                bad("must be a string or a list of strings".into())
            }
        }
        Kind::IntList => {
            let ok = v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x.as_u64().is_some_and(|i| i <= u32::MAX as u64))
            });
            if ok {
                Ok(())
            } else {
                bad("must be a list of token ids".into())
            }
        }
        Kind::Neutral(ok, neutral) => {
            if ok(v) {
                Ok(())
            } else {
                bad(format!("is not implemented by distill serve; only {neutral} (or null) is accepted, got {v}"))
            }
        }
        _ => Ok(()),
    }
}

/// Sampling defaults from `generation_config.json`, used where a request omits the field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingDefaults {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k` (0 = off).
    pub top_k: Option<usize>,
    /// `repetition_penalty`.
    pub repetition_penalty: Option<f32>,
    /// `max_new_tokens` → the default `max_tokens`.
    pub max_tokens: Option<u32>,
}

impl SamplingDefaults {
    /// `temperature 0.6, top_p 0.95` — for logs; empty when there are none.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.temperature {
            parts.push(format!("temperature {t}"));
        }
        if let Some(p) = self.top_p {
            parts.push(format!("top_p {p}"));
        }
        if let Some(k) = self.top_k {
            parts.push(format!("top_k {k}"));
        }
        if let Some(r) = self.repetition_penalty {
            parts.push(format!("repetition_penalty {r}"));
        }
        if let Some(m) = self.max_tokens {
            parts.push(format!("max_tokens {m}"));
        }
        parts.join(", ")
    }

    /// The sampling values a checkpoint's generation config declares.
    pub fn from_generation_config(g: &models::GenerationConfig) -> Self {
        let raw = |k: &str| g.raw.get(k).and_then(Value::as_f64);
        SamplingDefaults {
            temperature: g.temperature.map(|t| t as f32),
            top_p: g.top_p.map(|p| p as f32),
            top_k: g.top_k,
            repetition_penalty: raw("repetition_penalty").map(|r| r as f32),
            max_tokens: g
                .raw
                .get("max_new_tokens")
                .and_then(Value::as_u64)
                .map(|m| m.min(u32::MAX as u64) as u32),
        }
    }
}

/// The request's logprob, penalty and stop fields in [`GenParams`] form, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraParams {
    /// See [`GenParams::repetition_penalty`].
    pub repetition_penalty: f32,
    /// See [`GenParams::min_tokens`].
    pub min_tokens: usize,
    /// See [`GenParams::ignore_eos`].
    pub ignore_eos: bool,
    /// See [`GenParams::stop_token_ids`].
    pub stop_token_ids: Vec<u32>,
    /// See [`GenParams::logprobs`].
    pub logprobs: Option<usize>,
    /// Logprob tokens as `token_id:<id>`.
    pub tokens_as_ids: bool,
}

impl ExtraParams {
    /// Writes these into `p`.
    pub fn apply(&self, p: &mut GenParams) {
        p.repetition_penalty = self.repetition_penalty;
        p.min_tokens = self.min_tokens;
        p.ignore_eos = self.ignore_eos;
        p.stop_token_ids = self.stop_token_ids.clone();
        p.logprobs = self.logprobs;
    }
}

/// Reads the fields beyond OpenAI's core set, with `defaults` for the repetition penalty.
pub fn extra_params(
    c: &SamplingFields,
    endpoint: Endpoint,
    defaults: &SamplingDefaults,
    max_tokens: usize,
) -> Result<ExtraParams, FieldError> {
    let repetition_penalty = c
        .repetition_penalty
        .or(defaults.repetition_penalty)
        .unwrap_or(1.0);
    if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
        return Err(FieldError::new(
            format!("repetition_penalty must be > 0, got {repetition_penalty}"),
            Some("repetition_penalty"),
        ));
    }
    let min_tokens = c.min_tokens.unwrap_or(0) as usize;
    if min_tokens > max_tokens {
        return Err(FieldError::new(
            format!("min_tokens ({min_tokens}) must be ≤ max_tokens ({max_tokens})"),
            Some("min_tokens"),
        ));
    }
    let logprobs = match (endpoint, c.logprobs, c.top_logprobs) {
        (Endpoint::Chat, Some(LogprobsField::Flag(true)), top) => Some(top.unwrap_or(0)),
        (Endpoint::Chat, None | Some(LogprobsField::Flag(false)), Some(t)) if t > 0 => {
            return Err(FieldError::new(
                "top_logprobs needs logprobs: true",
                Some("top_logprobs"),
            ))
        }
        (Endpoint::Chat, None | Some(LogprobsField::Flag(false)), _) => None,
        (Endpoint::Completions, Some(LogprobsField::Count(n)), _) => Some(n),
        (Endpoint::Completions, None, _) => None,
        (_, Some(_), _) => {
            let want = match endpoint {
                Endpoint::Chat => "true or false",
                Endpoint::Completions => "an integer",
            };
            return Err(FieldError::new(
                format!("logprobs must be {want} on this endpoint"),
                Some("logprobs"),
            ));
        }
    };
    if let Some(n) = logprobs {
        if n > MAX_LOGPROBS {
            let param = if endpoint == Endpoint::Chat {
                "top_logprobs"
            } else {
                "logprobs"
            };
            return Err(FieldError::new(
                format!("{param} must be ≤ {MAX_LOGPROBS}, got {n}"),
                Some(param),
            ));
        }
    }
    Ok(ExtraParams {
        repetition_penalty,
        min_tokens,
        ignore_eos: c.ignore_eos.unwrap_or(false),
        stop_token_ids: c.stop_token_ids.clone().unwrap_or_default(),
        logprobs: logprobs.map(|n| n as usize),
        tokens_as_ids: c.return_tokens_as_token_ids.unwrap_or(false),
    })
}

/// The seed of choice `index` of a request seeded with `seed`: a SplitMix64 hash of both, so
/// choice 1 of seed 5 is unrelated to choice 0 of seed 6 (with `seed + index` they were the
/// same sample), while choice 0 keeps a fixed function of the seed alone.
pub fn choice_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `system_fingerprint`: the served name and how many times its weights were reloaded, so a
/// client can tell which weights produced a response.
pub fn system_fingerprint(model: &str, weights_version: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain(env!("CARGO_PKG_VERSION").bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("fp_distill_{:08x}_w{weights_version}", h as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ChatCompletionRequest, CompletionRequest};

    fn chat(body: &str) -> Result<ChatCompletionRequest, FieldError> {
        parse_request(body.as_bytes(), Endpoint::Chat)
    }

    #[test]
    fn errors_name_the_field() {
        let m = r#""messages": [{"role": "user", "content": "hi"}]"#;
        let e = chat(&format!("{{{m}, \"max_tokens\": -1}}")).unwrap_err();
        assert_eq!(e.param, Some("max_tokens"));
        assert!(
            e.message.contains("max_tokens must be ≥ 1"),
            "{}",
            e.message
        );
        let e = chat(r#"{"model": "x"}"#).unwrap_err();
        assert!(
            e.message.contains("missing field `messages`"),
            "{}",
            e.message
        );
        let e = chat(&format!("{{{m}, \"presence_penalty\": 0.5}}")).unwrap_err();
        assert_eq!(e.param, Some("presence_penalty"));
        assert!(e.message.contains("not implemented"), "{}", e.message);
        chat(&format!(
            "{{{m}, \"presence_penalty\": 0, \"user\": \"u\", \"logprobs\": null}}"
        ))
        .unwrap();
        let e = chat(&format!("{{{m}, \"best_of\": 2}}")).unwrap_err();
        assert!(e.message.contains("`best_of`"), "{}", e.message);
        let e = chat(&format!("{{{m}, \"temperature\": \"hot\"}}")).unwrap_err();
        assert_eq!(e.param, Some("temperature"));
        let e = chat(r#"{"messages": [{"content": "hi"}]}"#).unwrap_err();
        assert_eq!(e.param, Some("messages"));
        assert!(
            e.message.contains("messages[0]") && e.message.contains("role"),
            "{}",
            e.message
        );
        let e = parse_request::<CompletionRequest>(
            br#"{"prompt": "x", "logprobs": true}"#,
            Endpoint::Completions,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("logprobs"));
        assert!(chat("[1]").unwrap_err().message.contains("JSON object"));
    }

    #[test]
    fn logprob_fields_per_endpoint() {
        let d = SamplingDefaults::default();
        let f = |v: serde_json::Value| serde_json::from_value::<SamplingFields>(v).unwrap();
        let x = extra_params(
            &f(serde_json::json!({"logprobs": true, "top_logprobs": 3})),
            Endpoint::Chat,
            &d,
            8,
        )
        .unwrap();
        assert_eq!(x.logprobs, Some(3));
        assert!(extra_params(
            &f(serde_json::json!({"top_logprobs": 3})),
            Endpoint::Chat,
            &d,
            8
        )
        .is_err());
        let x = extra_params(
            &f(serde_json::json!({"logprobs": 2})),
            Endpoint::Completions,
            &d,
            8,
        )
        .unwrap();
        assert_eq!(x.logprobs, Some(2));
        assert!(extra_params(
            &f(serde_json::json!({"logprobs": 21})),
            Endpoint::Completions,
            &d,
            8
        )
        .is_err());
        assert!(extra_params(
            &f(serde_json::json!({"min_tokens": 9})),
            Endpoint::Completions,
            &d,
            8
        )
        .is_err());
        let d = SamplingDefaults {
            repetition_penalty: Some(1.3),
            ..Default::default()
        };
        assert_eq!(
            extra_params(&f(serde_json::json!({})), Endpoint::Chat, &d, 8)
                .unwrap()
                .repetition_penalty,
            1.3
        );
    }

    #[test]
    fn choice_seeds_do_not_overlap_across_requests() {
        let a: Vec<u64> = (0..4).map(|i| choice_seed(5, i)).collect();
        let b: Vec<u64> = (0..4).map(|i| choice_seed(6, i)).collect();
        assert!(a.iter().all(|s| !b.contains(s)), "{a:?} {b:?}");
        assert_eq!(choice_seed(5, 0), choice_seed(5, 0));
    }

    #[test]
    fn defaults_come_from_generation_config() {
        let raw = serde_json::json!({"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.1, "max_new_tokens": 64});
        let g = models::GenerationConfig {
            temperature: Some(0.6),
            top_p: Some(0.95),
            top_k: Some(20),
            raw,
            ..Default::default()
        };
        let d = SamplingDefaults::from_generation_config(&g);
        assert_eq!(d.temperature, Some(0.6));
        assert_eq!(d.top_k, Some(20));
        assert_eq!(d.repetition_penalty, Some(1.1));
        assert_eq!(d.max_tokens, Some(64));
    }
}
