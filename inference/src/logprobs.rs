//! Per-token logprobs on the wire: the chat shape (`choices[i].logprobs.content[{token,
//! logprob, bytes, top_logprobs}]`) and the completions shape (`tokens`, `token_logprobs`,
//! `top_logprobs`, `text_offset`).
//!
//! Values are logprobs of the **raw** model distribution, `log_softmax(logits)` before
//! temperature, repetition penalty, top-k/top-p and min_tokens masking — vLLM's default
//! (`--logprobs-mode raw_logprobs`) and what GRPO's old logprobs at temperature 1 are. One
//! entry per generated id, EOS and the id completing a stop string included (as vLLM reports
//! them). `-inf` is written as -9999.0, as vLLM does, since JSON has no infinity.

use std::collections::BTreeMap;
use std::sync::Arc;

use datasets::TextTokenizer;

use crate::wire::{ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob};

/// The logprob of one generated id and its top alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The generated id.
    pub id: u32,
    /// Its raw logprob.
    pub logprob: f32,
    /// The requested number of most likely ids with their raw logprobs.
    pub top: Vec<(u32, f32)>,
}

fn finite(lp: f32) -> f32 {
    if lp.is_nan() {
        -9999.0
    } else {
        lp.max(-9999.0)
    }
}

/// Renders logprobs of one choice, keeping the text offset across streamed pieces.
pub struct LogprobsWriter {
    tokenizer: Arc<TextTokenizer>,
    tokens_as_ids: bool,
    offset: usize,
}

impl LogprobsWriter {
    /// A writer for one choice; `tokens_as_ids` writes `token_id:<id>` (vLLM's
    /// `return_tokens_as_token_ids`).
    pub fn new(tokenizer: Arc<TextTokenizer>, tokens_as_ids: bool) -> Self {
        LogprobsWriter {
            tokenizer,
            tokens_as_ids,
            offset: 0,
        }
    }

    /// One id as text: its own decode (special tokens shown), or `token_id:<id>`.
    pub fn token(&self, id: u32) -> String {
        if self.tokens_as_ids {
            format!("token_id:{id}")
        } else {
            self.tokenizer.decode(&[id], false).unwrap_or_default()
        }
    }

    /// The chat shape of `tokens`.
    pub fn chat(&mut self, tokens: &[TokenLogprob]) -> ChatLogprobs {
        let entry = |id: u32, lp: f32| {
            let token = self.token(id);
            let bytes = Some(token.as_bytes().to_vec());
            (token, finite(lp), bytes)
        };
        let content = tokens
            .iter()
            .map(|t| {
                let (token, logprob, bytes) = entry(t.id, t.logprob);
                let top_logprobs = t
                    .top
                    .iter()
                    .map(|&(id, lp)| {
                        let (token, logprob, bytes) = entry(id, lp);
                        TopLogprob {
                            token,
                            logprob,
                            bytes,
                        }
                    })
                    .collect();
                ChatTokenLogprob {
                    token,
                    logprob,
                    bytes,
                    top_logprobs,
                }
            })
            .collect();
        ChatLogprobs { content }
    }

    /// The completions shape of `tokens`; the top maps hold the alternatives and the chosen
    /// token (vLLM returns up to `logprobs + 1` entries).
    pub fn completion(&mut self, tokens: &[TokenLogprob]) -> CompletionLogprobs {
        let mut out = CompletionLogprobs::default();
        for t in tokens {
            let token = self.token(t.id);
            let mut top: BTreeMap<String, f32> = t
                .top
                .iter()
                .map(|&(id, lp)| (self.token(id), finite(lp)))
                .collect();
            top.insert(token.clone(), finite(t.logprob));
            out.text_offset.push(self.offset);
            self.offset += token.chars().count();
            out.tokens.push(token);
            out.token_logprobs.push(Some(finite(t.logprob)));
            out.top_logprobs.push(Some(top));
        }
        out
    }
}

/// Reads `token_id:<id>` back (the client side of `return_tokens_as_token_ids`).
pub fn parse_token_id(token: &str) -> Option<u32> {
    token.strip_prefix("token_id:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::byte_tokenizer::write_byte_tokenizer;

    #[test]
    fn both_shapes_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path()).unwrap();
        let tok = Arc::new(TextTokenizer::from_dir(dir.path()).unwrap());
        let ids = tok.encode("hi", false).unwrap();
        let toks: Vec<TokenLogprob> = ids
            .iter()
            .map(|&id| TokenLogprob {
                id,
                logprob: -0.5,
                top: vec![(id, -0.5), (ids[0], f32::NEG_INFINITY)],
            })
            .collect();
        let mut w = LogprobsWriter::new(tok.clone(), false);
        let c = w.chat(&toks);
        assert_eq!(c.content[0].token, "h");
        assert_eq!(c.content[1].bytes.as_deref(), Some(&b"i"[..]));
        assert_eq!(c.content[1].top_logprobs[1].logprob, -9999.0);
        let mut w = LogprobsWriter::new(tok.clone(), false);
        let a = w.completion(&toks[..1]);
        let b = w.completion(&toks[1..]);
        assert_eq!((a.text_offset[0], b.text_offset[0]), (0, 1));
        assert_eq!(b.tokens, vec!["i".to_string()]);
        let mut w = LogprobsWriter::new(tok.clone(), true);
        let t = w.completion(&toks).tokens;
        assert_eq!(parse_token_id(&t[1]), Some(ids[1]));
    }
}
