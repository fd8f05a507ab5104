//! Chat templates rendered the way Hugging Face `transformers` renders them.
//!
//! `apply_chat_template` in transformers compiles the Jinja `chat_template` of
//! `tokenizer_config.json` in an environment with `trim_blocks=True, lstrip_blocks=True`, the
//! `loopcontrols` extension, a `tojson` filter that is plain `json.dumps` (no HTML escaping,
//! `ensure_ascii=False`), and the globals `raise_exception` and `strftime_now`; the special tokens
//! (`bos_token`, `eos_token`, …) are passed as variables. We reproduce exactly that with
//! minijinja (+ minijinja-contrib's Python string methods), so that prompts built here are
//! byte-identical to what the model was trained with.

use crate::DatasetError;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One chat turn as the OpenAI API and HF chat templates see it. Reasoning models keep their
/// reasoning inside `content` as `<think>…</think>` (templates decide what to keep of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or `tool`).
    pub role: String,
    /// The message text. When deserialising, OpenAI's other shapes are accepted too: `null`
    /// (an empty string) and a list of content parts, whose `text` parts are concatenated.
    #[serde(deserialize_with = "content_from_openai")]
    pub content: String,
}

fn content_from_openai<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Array(parts) => {
            let mut out = String::new();
            for part in parts {
                match (part.get("type").and_then(|t| t.as_str()), part.get("text")) {
                    (Some("text"), Some(serde_json::Value::String(t))) => out.push_str(t),
                    (kind, _) => {
                        return Err(D::Error::custom(format!(
                            "unsupported content part type {:?} (only text parts are supported)",
                            kind.unwrap_or("<missing>")
                        )))
                    }
                }
            }
            Ok(out)
        }
        other => Err(D::Error::custom(format!(
            "message content must be a string, null or a list of text parts, got {other}"
        ))),
    }
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The instruction DeepSeek-R1's evaluation appends to every math problem (R1 paper, §3.1; the
/// same text open-r1 uses), so that teacher sampling, gold traces and evaluation all ask the same
/// question.
pub const R1_MATH_INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// The R1-protocol user prompt for a math problem: the problem, a newline, the instruction.
pub fn r1_math_prompt(problem: &str) -> String {
    format!("{problem}\n{R1_MATH_INSTRUCTION}")
}

/// A compiled chat template plus the special-token variables it is rendered with.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    variables: BTreeMap<String, Value>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("variables", &self.variables)
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compile `source`. `special_tokens` are exposed to the template as variables, e.g.
    /// `("bos_token", "<s>")`, as transformers does.
    pub fn new(source: &str, special_tokens: &[(String, String)]) -> Result<Self, DatasetError> {
        Self::with_variables(
            source,
            special_tokens
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect(),
        )
    }

    /// Compile `source` with arbitrary constant variables (e.g. `additional_special_tokens` as a
    /// list, as transformers passes the whole special-tokens map).
    pub fn with_variables(
        source: &str,
        variables: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, DatasetError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| DatasetError::Template(format_error(&e)))?;
        let variables = variables
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
            .collect();
        Ok(ChatTemplate { env, variables })
    }

    /// Render `messages`; with `add_generation_prompt` the text ends where the assistant's reply
    /// begins (for R1 models: `<｜Assistant｜><think>\n`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, DatasetError> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// Render with extra template variables (e.g. `tools`, `date_string`, `documents`), which
    /// override the special-token variables of the same name.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, DatasetError> {
        let mut ctx = self.variables.clone();
        // transformers always passes these (as None when not given); templates test
        // `tools is none` as well as `tools is defined`.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        for (k, v) in extra {
            ctx.insert(k.clone(), Value::from_serialize(v));
        }
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| DatasetError::Template(format_error(&e)))?;
        tmpl.render(Value::from(ctx))
            .map_err(|e| DatasetError::Template(format_error(&e)))
    }
}

fn format_error(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(fmt)` as transformers provides it (local time there; UTC here, so renders are
/// reproducible across machines). Supports the directives chat templates use.
fn strftime_now(format: String) -> Result<String, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime_utc(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn strftime_utc(format: &str, secs: i64) -> Result<String, Error> {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let (hh, mm, ss) = (tod / 3600, (tod / 60) % 60, tod % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[(m - 1) as usize];
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('F') => out.push_str(&format!("{y}-{m:02}-{d:02}")),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.unwrap_or(' ')
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// sort_keys=sort_keys)` — Python's separators (`", "`, `": "`), keys in insertion order, no HTML
/// escaping (minijinja's built-in escapes `<`, `>`, `&`, `'`, which would change tool prompts).
fn tojson_filter(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dump_python_json(&value, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn push_newline_indent(out: &mut String, indent: usize, level: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent * level));
}

fn dump_python_json(
    v: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    level: usize,
    out: &mut String,
) -> Result<(), Error> {
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64() {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                if f.is_finite() {
                    out.push_str(&serde_json::to_string(&f).unwrap_or_else(|_| f.to_string()));
                } else if f.is_nan() {
                    out.push_str("NaN");
                } else if f > 0.0 {
                    out.push_str("Infinity");
                } else {
                    out.push_str("-Infinity");
                }
            }
        }
        ValueKind::String => {
            out.push_str(&serde_json::to_string(v.as_str().unwrap_or_default()).unwrap())
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                if let Some(ind) = indent {
                    push_newline_indent(out, ind, level + 1);
                }
                let key = match k.as_str() {
                    Some(s) => s.to_string(),
                    None => k.to_string(),
                };
                out.push_str(&serde_json::to_string(&key).unwrap());
                out.push_str(": ");
                dump_python_json(&v.get_item(k)?, indent, sort_keys, level + 1, out)?;
            }
            if let Some(ind) = indent {
                push_newline_indent(out, ind, level);
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                if let Some(ind) = indent {
                    push_newline_indent(out, ind, level + 1);
                }
                dump_python_json(item, indent, sort_keys, level + 1, out)?;
            }
            if let Some(ind) = indent {
                push_newline_indent(out, ind, level);
            }
            out.push(']');
        }
        _ => out.push_str(&serde_json::to_string(&v.to_string()).unwrap()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ [] | tojson }}",
            &[],
        )
        .unwrap();
        let mut extra = serde_json::Map::new();
        extra.insert(
            "x".into(),
            serde_json::json!({"name": "f<x>", "a": [1, 2.5, true, null], "é": "ü"}),
        );
        let s = t.render_with(&[], false, &extra).unwrap();
        let parts: Vec<&str> = s.split('|').collect();
        // serde_json's Map may sort keys; compare against what Python would print for that order.
        let keys: Vec<String> = extra["x"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 3);
        assert!(parts[0].contains(r#""name": "f<x>""#), "{}", parts[0]);
        assert!(
            parts[0].contains(r#""a": [1, 2.5, true, null]"#),
            "{}",
            parts[0]
        );
        assert!(parts[0].contains(r#""é": "ü""#), "{}", parts[0]);
        assert!(parts[1].starts_with("{\n  \""), "{}", parts[1]);
        assert!(parts[1].contains("\"a\": [\n    1,\n    2.5,\n    true,\n    null\n  ]"));
        assert_eq!(parts[2], "[]");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", &[]).unwrap();
        let err = t.render(&[], false).unwrap_err().to_string();
        assert!(err.contains("no system role"), "{err}");
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26 00:00:00 UTC, a Friday.
        let secs = 1_721_952_000;
        assert_eq!(strftime_utc("%d %b %Y", secs).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime_utc("%A %B %e %F", secs).unwrap(),
            "Friday July 26 2024-07-26"
        );
        assert_eq!(
            strftime_utc("%H:%M:%S %%", secs + 3723).unwrap(),
            "01:02:03 %"
        );
        assert!(strftime_utc("%Q", secs).is_err());
    }

    #[test]
    fn python_string_methods_and_trim_blocks() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n  {{ m.content.split('</think>')[-1].strip() }}\n{% endfor %}",
            &[],
        )
        .unwrap();
        let s = t
            .render(&[ChatMessage::assistant("<think>x</think>  ok ")], false)
            .unwrap();
        assert_eq!(s, "  ok\n");
    }

    #[test]
    fn tools_and_documents_default_to_none_like_transformers() {
        let t = ChatTemplate::new(
            "{{ tools is defined }} {{ tools is none }} {{ documents is none }}",
            &[],
        )
        .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "True True True");
    }

    #[test]
    fn openai_content_shapes_deserialize() {
        let m: Vec<ChatMessage> = serde_json::from_str(
            r#"[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "name": "x"},
                {"role": "user", "content": "plain"}]"#,
        )
        .unwrap();
        assert_eq!(m[0].content, "ab");
        assert_eq!(m[1].content, "");
        assert_eq!(m[2], ChatMessage::user("plain"));
        let bad: Result<ChatMessage, _> = serde_json::from_str(
            r#"{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("image_url"));
    }

    #[test]
    fn r1_prompt_layout() {
        assert_eq!(
            r1_math_prompt("1+1?"),
            "1+1?\nPlease reason step by step, and put your final answer within \\boxed{}."
        );
    }
}
