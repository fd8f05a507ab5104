//! Conversations → token ids and loss labels, the way the student will see them at inference.
//!
//! The prompt (every message but the last) is rendered with the **student's** chat template with
//! the generation prompt, exactly what `distill serve`/vLLM feed the model; the assistant turn is
//! appended as text (`<think>\n…\n</think>\n\n…`) followed by the token that ends an assistant turn
//! in that template (`<|im_end|>` for Qwen2.5-Instruct, `<|eot_id|>` for Llama-3.1-Instruct,
//! `<｜end▁of▁sentence｜>` for R1-distill models). Getting that token wrong trains students that
//! never stop. Where the generation prompt already opens the reasoning (R1's template ends with
//! `<｜Assistant｜><think>\n`), the overlapping prefix of the assistant text is not repeated.
//!
//! Prompt and response are tokenised separately (each with `add_special_tokens = false`; templates
//! place BOS themselves), so the prompt ids are byte-for-byte those of inference.
//!
//! Labels follow the Hugging Face convention: `labels[i]` is the token at position `i` (the loss
//! shifts by one, predicting `labels[i + 1]` from position `i`), and [`IGNORE_INDEX`] (-100) marks
//! positions not trained on — every prompt token. Assistant tokens, EOS included, are trained.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::{ChatMessage, DatasetError, TextTokenizer};

/// Label of positions excluded from the loss (PyTorch's `CrossEntropyLoss(ignore_index=-100)`).
pub const IGNORE_INDEX: i64 = -100;

/// Examples rendered and tokenised per batch call (bounds memory, lets the tokenizer parallelise).
const ENCODE_CHUNK: usize = 256;

/// One training conversation; the last message is the assistant turn that is trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Prompt messages followed by the assistant turn.
    pub messages: Vec<ChatMessage>,
    /// Where it came from (`file:line` or `file:row`), for error messages.
    pub origin: String,
}

/// One tokenised example: ids and HF-convention labels of the same length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftExample {
    /// Token ids: prompt then assistant turn then EOS.
    pub input_ids: Vec<u32>,
    /// `input_ids[i]` where trained, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
}

impl SftExample {
    /// Number of positions whose label is trained on.
    pub fn label_count(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// What to do with an example longer than `max_seq_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Skip it (and count it): a reasoning trace without its conclusion teaches rambling. Default.
    #[default]
    Drop,
    /// Keep its first `max_seq_len` tokens.
    Truncate,
}

/// How examples are built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftBuildConfig {
    /// Longest example in tokens. Default 16384 (R1-distillation recipes use 16k–32k).
    pub max_seq_len: usize,
    /// Over-long examples are dropped or truncated. Default `drop`.
    pub overflow: OverflowPolicy,
    /// Token appended after each assistant turn; absent = the template's turn terminator when it
    /// is a single special token, else the tokenizer's `eos_token`. Default absent.
    pub eos_token: Option<String>,
    /// Train on prompt tokens too (not the R1 recipe). Default `false`.
    pub train_on_prompt: bool,
}

impl Default for SftBuildConfig {
    fn default() -> Self {
        Self { max_seq_len: 16384, overflow: OverflowPolicy::Drop, eos_token: None, train_on_prompt: false }
    }
}

/// Counts of what building did, for logs and the training manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStats {
    /// Conversations given.
    pub input: usize,
    /// Examples produced.
    pub examples: usize,
    /// Dropped for exceeding `max_seq_len` (policy `drop`).
    pub dropped_too_long: usize,
    /// Truncated to `max_seq_len` (policy `truncate`).
    pub truncated: usize,
    /// Dropped because no trained token remained (prompt alone fills `max_seq_len`).
    pub dropped_no_labels: usize,
    /// Tokens in the produced examples.
    pub tokens: usize,
    /// Trained (label ≠ -100) tokens in the produced examples.
    pub label_tokens: usize,
    /// The id appended after each assistant turn; the trainer must make sure generation stops on
    /// it (it belongs in `generation_config.json`'s `eos_token_id`).
    pub eos_token_id: Option<u32>,
}

/// The id that ends an assistant turn for this tokenizer (see [`SftBuildConfig::eos_token`]).
pub fn assistant_end_token(tok: &TextTokenizer, explicit: Option<&str>) -> Result<u32, DatasetError> {
    if let Some(t) = explicit {
        return tok
            .token_to_id(t)
            .ok_or_else(|| DatasetError::Invalid(format!("eos_token: `{t}` is not in the vocabulary")));
    }
    let fallback = tok.eos_token_id().or_else(|| tok.eos_token_ids().first().copied());
    if let Some(terminator) = template_terminator(tok)? {
        if fallback.is_some_and(|e| e != terminator) && !tok.eos_token_ids().contains(&terminator) {
            tracing::warn!(
                terminator = ?tok.id_to_token(terminator),
                eos = ?fallback.and_then(|e| tok.id_to_token(e)),
                "the chat template ends assistant turns with a token that is not an EOS id; \
                 training on the template's terminator — add it to generation_config eos_token_id"
            );
        }
        return Ok(terminator);
    }
    fallback.ok_or_else(|| {
        DatasetError::Invalid(format!(
            "{}: no eos_token and the chat template has no end-of-turn token; set eos_token",
            tok.dir().display()
        ))
    })
}

/// The special token a chat template writes right after an assistant message, if any.
fn template_terminator(tok: &TextTokenizer) -> Result<Option<u32>, DatasetError> {
    const MARK: &str = "zqxj7distillmarker";
    let rendered =
        tok.apply_chat_template(&[ChatMessage::user("ping"), ChatMessage::assistant(MARK)], false)?;
    let Some(at) = rendered.rfind(MARK) else { return Ok(None) };
    let rest = &rendered[at + MARK.len()..];
    let Some(&first) = tok.encode(rest, false)?.first() else { return Ok(None) };
    // A special token decodes to nothing when special tokens are skipped.
    let is_special = tok.decode(&[first], true)?.is_empty();
    Ok(is_special.then_some(first))
}

/// `response` without the prefix that `prompt` already ends with, when that prefix opens the
/// reasoning (R1's generation prompt ends with `<think>\n`). Incidental overlaps such as a shared
/// newline are left alone.
pub fn strip_prompt_overlap<'a>(prompt: &str, response: &'a str) -> &'a str {
    let max = prompt.len().min(response.len());
    for k in (1..=max).rev() {
        if response.is_char_boundary(k) && prompt.ends_with(&response[..k]) {
            return if response[..k].contains("<think>") { &response[k..] } else { response };
        }
    }
    response
}

/// Renders a conversation into `(prompt text, assistant text)` for this tokenizer.
pub fn render(conv: &Conversation, tok: &TextTokenizer) -> Result<(String, String), DatasetError> {
    let Some((last, prompt)) = conv.messages.split_last() else {
        return Err(DatasetError::Invalid(format!("{}: empty conversation", conv.origin)));
    };
    if last.role != "assistant" {
        return Err(DatasetError::Invalid(format!(
            "{}: the last message must be the assistant turn to train on, found role `{}`",
            conv.origin, last.role
        )));
    }
    let prompt_text = tok
        .apply_chat_template(prompt, true)
        .map_err(|e| DatasetError::Invalid(format!("{}: {e}", conv.origin)))?;
    let response = strip_prompt_overlap(&prompt_text, &last.content).to_string();
    Ok((prompt_text, response))
}

/// Tokenises conversations into examples under `cfg` (order preserved; dropped ones counted).
pub fn build_examples(
    rows: &[Conversation],
    tok: &TextTokenizer,
    cfg: &SftBuildConfig,
) -> Result<(Vec<SftExample>, BuildStats), DatasetError> {
    if cfg.max_seq_len == 0 {
        return Err(DatasetError::Invalid("max_seq_len must be at least 1".into()));
    }
    let eos = assistant_end_token(tok, cfg.eos_token.as_deref())?;
    let mut stats = BuildStats { input: rows.len(), eos_token_id: Some(eos), ..BuildStats::default() };
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ENCODE_CHUNK) {
        let rendered: Vec<(String, String)> = chunk.iter().map(|c| render(c, tok)).collect::<Result<_, _>>()?;
        let prompts: Vec<&str> = rendered.iter().map(|(p, _)| p.as_str()).collect();
        let responses: Vec<&str> = rendered.iter().map(|(_, r)| r.as_str()).collect();
        let prompt_ids = tok.encode_batch(&prompts, false)?;
        let response_ids = tok.encode_batch(&responses, false)?;
        for (p, mut r) in prompt_ids.into_iter().zip(response_ids) {
            r.push(eos);
            let mut labels: Vec<i64> = if cfg.train_on_prompt {
                p.iter().map(|&t| i64::from(t)).collect()
            } else {
                vec![IGNORE_INDEX; p.len()]
            };
            labels.extend(r.iter().map(|&t| i64::from(t)));
            let mut input_ids = p;
            input_ids.extend(r);
            if let Some(ex) = apply_length_policy(SftExample { input_ids, labels }, cfg, &mut stats) {
                out.push(ex);
            }
        }
    }
    Ok((out, stats))
}

/// Applies `max_seq_len`/`overflow` to one example, counting in `stats` (also used for
/// pre-tokenised data). Returns `None` when the example is dropped.
pub fn apply_length_policy(mut ex: SftExample, cfg: &SftBuildConfig, stats: &mut BuildStats) -> Option<SftExample> {
    if ex.input_ids.len() > cfg.max_seq_len {
        match cfg.overflow {
            OverflowPolicy::Drop => {
                stats.dropped_too_long += 1;
                return None;
            }
            OverflowPolicy::Truncate => {
                ex.input_ids.truncate(cfg.max_seq_len);
                ex.labels.truncate(cfg.max_seq_len);
                stats.truncated += 1;
            }
        }
    }
    // Position 0 is never a target under the shifted loss, so it does not count as trained.
    if ex.labels.iter().skip(1).all(|&l| l == IGNORE_INDEX) {
        stats.dropped_no_labels += 1;
        return None;
    }
    stats.examples += 1;
    stats.tokens += ex.input_ids.len();
    stats.label_tokens += ex.label_count();
    Some(ex)
}

/// Shuffles in place, deterministically for a seed (ChaCha8, identical on every platform).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    items.shuffle(&mut rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_stripped_only_when_present() {
        assert_eq!(strip_prompt_overlap("<｜Assistant｜><think>\n", "<think>\nhi\n</think>\n\nx"), "hi\n</think>\n\nx");
        assert_eq!(strip_prompt_overlap("<|im_start|>assistant\n", "<think>\nhi"), "<think>\nhi");
        assert_eq!(strip_prompt_overlap("", "abc"), "abc");
        assert_eq!(strip_prompt_overlap("assistant\n", "\nabc"), "\nabc");
    }

    #[test]
    fn length_policy_counts() {
        let ex = SftExample { input_ids: vec![1, 2, 3, 4, 5], labels: vec![-100, -100, 3, 4, 5] };
        let mut stats = BuildStats::default();
        let drop_cfg = SftBuildConfig { max_seq_len: 4, ..SftBuildConfig::default() };
        assert!(apply_length_policy(ex.clone(), &drop_cfg, &mut stats).is_none());
        assert_eq!(stats.dropped_too_long, 1);
        let trunc = SftBuildConfig { max_seq_len: 4, overflow: OverflowPolicy::Truncate, ..SftBuildConfig::default() };
        let got = apply_length_policy(ex.clone(), &trunc, &mut stats).unwrap();
        assert_eq!(got.labels, [-100, -100, 3, 4]);
        assert_eq!(stats.truncated, 1);
        let tiny = SftBuildConfig { max_seq_len: 2, overflow: OverflowPolicy::Truncate, ..SftBuildConfig::default() };
        assert!(apply_length_policy(ex, &tiny, &mut stats).is_none());
        assert_eq!(stats.dropped_no_labels, 1);
        assert_eq!((stats.examples, stats.tokens, stats.label_tokens), (1, 4, 2));
    }

    #[test]
    fn shuffle_is_deterministic_per_seed() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        let mut c = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        shuffle(&mut c, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
    }
}
