//! A Hugging Face tokenizer directory, loaded the way `transformers` loads it: `tokenizer.json`
//! for the text↔ids mapping, `tokenizer_config.json` for the chat template and special tokens,
//! and `generation_config.json` (when present, e.g. in a checkpoint) for the EOS ids generation
//! must stop on.
//!
//! BOS note: `encode(text, true)` applies the post-processor of `tokenizer.json` and nothing
//! else, as transformers 5 does. DeepSeek's files say `add_bos_token: true` but carry no BOS
//! post-processor; transformers 4.x added a BOS there, 5.x does not. Chat templates emit the BOS
//! themselves, so prompts must be encoded with `add_special_tokens = false`
//! ([`TextTokenizer::encode_chat`] does that).

use crate::chat::{ChatMessage, ChatTemplate};
use crate::DatasetError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Files that make up a tokenizer in a HF model directory; copied verbatim into checkpoints so
/// that the saved model opens with the same tokenizer in transformers/vLLM.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
];

/// Tokenizer + chat template + special tokens of one model. Cheap to share (`Send + Sync`):
/// servers keep one behind an `Arc`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat: Option<ChatTemplate>,
    dir: PathBuf,
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
    pad: Option<(String, u32)>,
    eos_ids: Vec<u32>,
    model_max_length: Option<usize>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("eos_ids", &self.eos_ids)
            .field("has_chat_template", &self.chat.is_some())
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, DatasetError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| DatasetError::file(path, format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DatasetError::io(path, e)),
    }
}

/// A special-token entry of `tokenizer_config.json`: a string, or an `AddedToken` dict with
/// `content`, or null.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// An id entry of `generation_config.json`/`config.json`: an integer or a list of integers.
fn id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => Vec::new(),
    }
}

fn chat_template_source(
    dir: &Path,
    config: Option<&Value>,
) -> Result<Option<String>, DatasetError> {
    // transformers >= 4.43 may save the template as its own file, which then wins.
    let jinja = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&jinja) {
        Ok(s) => return Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DatasetError::io(&jinja, e)),
    }
    let json_path = dir.join("chat_template.json");
    if let Some(v) = read_json(&json_path)? {
        if let Some(s) = v.get("chat_template").and_then(Value::as_str) {
            return Ok(Some(s.to_string()));
        }
    }
    let cfg_path = dir.join("tokenizer_config.json");
    match config.and_then(|c| c.get("chat_template")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // A list of named templates: use "default" as transformers does.
        Some(Value::Array(list)) => {
            for t in list {
                if t.get("name").and_then(Value::as_str) == Some("default") {
                    if let Some(s) = t.get("template").and_then(Value::as_str) {
                        return Ok(Some(s.to_string()));
                    }
                }
            }
            Err(DatasetError::file(
                cfg_path,
                "key `chat_template`: a list without a template named \"default\"",
            ))
        }
        Some(_) => Err(DatasetError::file(
            cfg_path,
            "key `chat_template`: expected a string or a list of {name, template}",
        )),
    }
}

impl TextTokenizer {
    /// Load `dir/tokenizer.json` (required), `dir/tokenizer_config.json` and
    /// `dir/generation_config.json` (both optional). A special token named in the config but
    /// absent from the vocabulary is an error naming the key.
    pub fn from_dir(dir: &Path) -> Result<Self, DatasetError> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(DatasetError::file(
                &tok_path,
                "not found (a HF tokenizer.json is required)",
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| DatasetError::file(&tok_path, e.to_string()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let mut config = read_json(&cfg_path)?;
        // Older checkpoints keep bos/eos/pad only in special_tokens_map.json; fill the gaps.
        let map_path = dir.join("special_tokens_map.json");
        if let Some(Value::Object(map)) = read_json(&map_path)? {
            let cfg = config.get_or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(c) = cfg {
                for (k, v) in map {
                    if c.get(&k).is_none_or(Value::is_null) {
                        c.insert(k, v);
                    }
                }
            }
        }
        let gen_path = dir.join("generation_config.json");
        let gen = read_json(&gen_path)?;

        let lookup = |key: &str| -> Result<Option<(String, u32)>, DatasetError> {
            match token_string(config.as_ref().and_then(|c| c.get(key))) {
                None => Ok(None),
                Some(tok) => match inner.token_to_id(&tok) {
                    Some(id) => Ok(Some((tok, id))),
                    None => Err(DatasetError::file(
                        &cfg_path,
                        format!("key `{key}`: token {tok:?} is not in tokenizer.json"),
                    )),
                },
            }
        };
        let by_id = |id: u32| inner.id_to_token(id).map(|t| (t, id));
        let gen_ids = |key: &str| id_list(gen.as_ref().and_then(|g| g.get(key)));

        let bos = match lookup("bos_token")? {
            Some(b) => Some(b),
            None => gen_ids("bos_token_id").first().and_then(|&i| by_id(i)),
        };
        let eos = match lookup("eos_token")? {
            Some(e) => Some(e),
            None => gen_ids("eos_token_id").first().and_then(|&i| by_id(i)),
        };
        let pad = match lookup("pad_token")? {
            Some(p) => Some(p),
            None => gen_ids("pad_token_id").first().and_then(|&i| by_id(i)),
        };
        // Generation stops on the tokenizer's EOS and on every id generation_config lists
        // (Llama 3.1 Instruct: <|eot_id|> plus <|end_of_text|> and <|eom_id|>).
        let mut eos_ids: Vec<u32> = eos.iter().map(|(_, id)| *id).collect();
        for id in gen_ids("eos_token_id") {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let model_max_length = config
            .as_ref()
            .and_then(|c| c.get("model_max_length"))
            .and_then(Value::as_u64)
            .filter(|&n| n < 1 << 40) // transformers writes 1e30 for "no limit"
            .map(|n| n as usize);

        let chat = match chat_template_source(dir, config.as_ref())? {
            None => None,
            Some(src) => {
                // transformers renders with its special-tokens map as variables.
                let mut vars = serde_json::Map::new();
                for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
                    if let Some(t) = token_string(config.as_ref().and_then(|c| c.get(key))) {
                        vars.insert(key.to_string(), Value::from(t));
                    }
                }
                if let Some(Value::Array(list)) = config
                    .as_ref()
                    .and_then(|c| c.get("additional_special_tokens"))
                {
                    let names: Vec<Value> = list
                        .iter()
                        .filter_map(|v| token_string(Some(v)))
                        .map(Value::from)
                        .collect();
                    vars.insert("additional_special_tokens".into(), Value::Array(names));
                }
                for (key, tok) in [("bos_token", &bos), ("eos_token", &eos)] {
                    if let (false, Some((t, _))) = (vars.contains_key(key), tok) {
                        vars.insert(key.to_string(), Value::from(t.clone()));
                    }
                }
                Some(ChatTemplate::with_variables(&src, vars).map_err(|e| {
                    DatasetError::file(&cfg_path, format!("key `chat_template`: {e}"))
                })?)
            }
        };
        Ok(TextTokenizer {
            inner,
            chat,
            dir: dir.to_path_buf(),
            bos,
            eos,
            pad,
            eos_ids,
            model_max_length,
        })
    }

    /// Text → ids. `add_special_tokens` applies tokenizer.json's post-processor (e.g. Llama's
    /// BOS); use `false` for text that came out of a chat template.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, DatasetError> {
        self.inner
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| DatasetError::Tokenizer(format!("encode: {e}")))
    }

    /// Many texts → ids, in parallel.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>, DatasetError> {
        let inputs: Vec<&str> = texts.to_vec();
        self.inner
            .encode_batch_fast(inputs, add_special_tokens)
            .map(|encs| encs.iter().map(|e| e.get_ids().to_vec()).collect())
            .map_err(|e| DatasetError::Tokenizer(format!("encode: {e}")))
    }

    /// Ids → text. `skip_special_tokens` drops tokens marked special (BOS/EOS/chat markers;
    /// R1's `<think>` is not special and stays).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, DatasetError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| DatasetError::Tokenizer(format!("decode: {e}")))
    }

    /// Render `messages` with the model's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, DatasetError> {
        self.chat_template()?
            .render(messages, add_generation_prompt)
    }

    /// Render with extra template variables (`tools`, `date_string`, …).
    pub fn apply_chat_template_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, Value>,
    ) -> Result<String, DatasetError> {
        self.chat_template()?
            .render_with(messages, add_generation_prompt, extra)
    }

    /// Render and encode (without adding special tokens: the template already placed them).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, DatasetError> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }

    /// The compiled chat template, or an error naming the directory when it has none.
    pub fn chat_template(&self) -> Result<&ChatTemplate, DatasetError> {
        self.chat.as_ref().ok_or_else(|| {
            DatasetError::file(
                self.dir.join("tokenizer_config.json"),
                "no `chat_template` (base model?); pass plain prompts instead",
            )
        })
    }

    /// Whether the directory has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// Every id generation should stop on; the tokenizer's own EOS first.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The tokenizer's EOS token id (what SFT appends after an assistant turn).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|(_, id)| *id)
    }

    /// The EOS token text.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_ref().map(|(t, _)| t.as_str())
    }

    /// Padding id (from tokenizer_config `pad_token` or generation_config `pad_token_id`).
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad.as_ref().map(|(_, id)| *id)
    }

    /// BOS id, when the model has one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|(_, id)| *id)
    }

    /// The BOS token text.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|(t, _)| t.as_str())
    }

    /// Vocabulary size including added tokens (the smallest embedding size that fits).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token string (incl. added/special tokens).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// `model_max_length` from tokenizer_config, unless it is transformers' "unlimited" marker.
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }

    /// The directory this tokenizer was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The underlying `tokenizers` object, for callers that need offsets or other details.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Copy the tokenizer files of `src` (those of [`TOKENIZER_FILES`] that exist) into `dst`, each
/// atomically; returns the names copied. Checkpoint writers call this so saved models open with
/// the tokenizer they were trained with.
pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<Vec<String>, DatasetError> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let from = src.join(name);
        if !from.is_file() {
            continue;
        }
        let bytes = std::fs::read(&from).map_err(|e| DatasetError::io(&from, e))?;
        crate::atomic::write_atomic(&dst.join(name), &bytes)?;
        copied.push(name.to_string());
    }
    if !copied.iter().any(|n| n == "tokenizer.json") {
        return Err(DatasetError::file(src.join("tokenizer.json"), "not found"));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<TextTokenizer>();
    }

    #[test]
    fn special_token_shapes() {
        let v: Value = serde_json::json!({"a": "<s>", "b": {"content": "</s>"}, "c": null});
        assert_eq!(token_string(v.get("a")).as_deref(), Some("<s>"));
        assert_eq!(token_string(v.get("b")).as_deref(), Some("</s>"));
        assert_eq!(token_string(v.get("c")), None);
        let g: Value = serde_json::json!({"x": 5, "y": [1, 2]});
        assert_eq!(id_list(g.get("x")), vec![5]);
        assert_eq!(id_list(g.get("y")), vec![1, 2]);
        assert!(id_list(g.get("z")).is_empty());
    }
}
