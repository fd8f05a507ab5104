//! The one text generator: how a prompt becomes ids and how generated ids become text.
//!
//! Every path that turns model output into text — `distill model generate`, `distill serve`,
//! the native teacher backend and native evaluation — goes through [`prompt_ids`],
//! [`eos_ids`] and [`TextStream`], so EOS handling, incremental detokenisation and stop strings
//! behave the same everywhere. [`TextStream`] costs O(1) tokenizer calls per token on windows
//! of a few ids, and stop-string matching only looks at the held-back tail, so a generation of
//! n tokens costs O(n) — the previous `model generate` re-decoded every id after each token.

use datasets::stop::{Detokenize, StopStringMatcher};
use datasets::{ChatMessage, DatasetError, IncrementalDecoder, TextTokenizer};

use crate::backend::{FinishReason, Prompt};

/// Prompt → ids: messages through the model's chat template (with the generation prompt),
/// text with the tokenizer's special tokens (BOS) as `/v1/completions` does, ids as given.
pub fn prompt_ids(tokenizer: &TextTokenizer, prompt: &Prompt) -> Result<Vec<u32>, DatasetError> {
    match prompt {
        Prompt::Messages(m) => {
            let msgs: Vec<ChatMessage> = m
                .iter()
                .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
                .collect();
            tokenizer.encode_chat(&msgs, true)
        }
        Prompt::Text(t) => tokenizer.encode(t, true),
        Prompt::Tokens(ids) => Ok(ids.clone()),
    }
}

/// Every id that ends generation: the checkpoint's `generation_config` EOS ids, then the
/// tokenizer's EOS ids not already listed (R1 distills declare them in different places).
pub fn eos_ids(generation_eos: &[u32], tokenizer: Option<&TextTokenizer>) -> Vec<u32> {
    let mut eos = generation_eos.to_vec();
    for &id in tokenizer.map(TextTokenizer::eos_token_ids).unwrap_or_default() {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    eos
}

/// The finish reason of a generation: a matched stop string or an engine stop (EOS) is `stop`,
/// a spent budget is `length`.
pub fn finish_reason(stop_string_matched: bool, engine: models::FinishReason) -> FinishReason {
    match (stop_string_matched, engine) {
        (true, _) | (false, models::FinishReason::Stop) => FinishReason::Stop,
        (false, models::FinishReason::Length) => FinishReason::Length,
    }
}

/// Text produced by one step of a [`TextStream`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextStep {
    /// Text safe to show now (never part of a stop string).
    pub text: String,
    /// A stop string matched: generation must end (the stop string is not in any text).
    pub stopped: bool,
    /// The stop string that matched in this step.
    pub stop_string: Option<String>,
}

/// Generated ids → text, one id at a time: EOS ids produce no text, pieces come out whole
/// (no half UTF-8 characters), and text that could begin a stop string is held back until it
/// is known not to be one. The concatenation of every step equals decoding the whole sequence
/// (without EOS) cut at the first stop string.
#[derive(Clone, Debug)]
pub struct TextStream {
    decoder: IncrementalDecoder,
    matcher: StopStringMatcher,
    eos: Vec<u32>,
    generated: u32,
    min_tokens: u32,
}

impl TextStream {
    /// A stream for one completion; `eos` ids are dropped from the text, `stops` end it.
    pub fn new<S: AsRef<str>>(eos: Vec<u32>, stops: &[S]) -> Self {
        TextStream {
            decoder: IncrementalDecoder::new(true),
            matcher: StopStringMatcher::new(stops),
            eos,
            generated: 0,
            min_tokens: 0,
        }
    }

    /// Stop strings are not looked for in the text of the first `n` ids (vLLM's
    /// `min_tokens`: no stop condition applies before `n` tokens).
    pub fn with_min_tokens(mut self, n: usize) -> Self {
        self.min_tokens = n.min(u32::MAX as usize) as u32;
        self
    }

    /// Ids consumed so far (EOS and the id completing a stop string included).
    pub fn generated(&self) -> u32 {
        self.generated
    }

    /// True once a stop string has matched.
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Consumes one generated id.
    pub fn push<D: Detokenize + ?Sized>(
        &mut self,
        tok: &D,
        id: u32,
    ) -> Result<TextStep, DatasetError> {
        if self.matcher.is_stopped() {
            return Ok(TextStep {
                text: String::new(),
                stopped: true,
                stop_string: None,
            });
        }
        self.generated += 1;
        if self.eos.contains(&id) {
            return Ok(TextStep::default());
        }
        let piece = self.decoder.push(tok, id)?;
        if self.generated <= self.min_tokens {
            // Nothing is held back yet (every earlier piece bypassed the matcher too).
            return Ok(TextStep {
                text: piece,
                ..Default::default()
            });
        }
        let out = self.matcher.push(&piece);
        Ok(TextStep {
            text: out.emit,
            stopped: out.stopped.is_some(),
            stop_string: out.stopped,
        })
    }

    /// Ends the stream: the held-back tail (an incomplete character decodes to U+FFFD, as a
    /// full decode would), unless it completes a stop string.
    pub fn finish<D: Detokenize + ?Sized>(&mut self, tok: &D) -> Result<TextStep, DatasetError> {
        if self.matcher.is_stopped() {
            return Ok(TextStep {
                text: String::new(),
                stopped: true,
                stop_string: None,
            });
        }
        let tail = self.decoder.finish(tok)?;
        let mut out = self.matcher.push(&tail);
        if out.stopped.is_none() {
            out.emit.push_str(&self.matcher.finish());
        }
        Ok(TextStep {
            text: out.emit,
            stopped: out.stopped.is_some(),
            stop_string: out.stopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::byte_tokenizer::{write_byte_tokenizer, EOS_ID};

    /// Counts tokenizer calls and the ids they decode.
    struct Counting<'a> {
        inner: &'a TextTokenizer,
        calls: Cell<usize>,
        ids: Cell<usize>,
    }

    impl Detokenize for Counting<'_> {
        fn decode_ids(&self, ids: &[u32], skip: bool) -> Result<String, DatasetError> {
            self.calls.set(self.calls.get() + 1);
            self.ids.set(self.ids.get() + ids.len());
            self.inner.decode(ids, skip)
        }
    }

    fn tokenizer() -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path()).unwrap();
        let tok = TextTokenizer::from_dir(dir.path()).unwrap();
        (dir, tok)
    }

    fn stream_all<D: Detokenize>(tok: &D, ids: &[u32], stops: &[&str]) -> (String, bool) {
        let mut s = TextStream::new(vec![EOS_ID], stops);
        let mut text = String::new();
        for &id in ids {
            let step = s.push(tok, id).unwrap();
            text.push_str(&step.text);
            if step.stopped {
                return (text, true);
            }
        }
        let step = s.finish(tok).unwrap();
        text.push_str(&step.text);
        (text, step.stopped)
    }

    #[test]
    fn streamed_text_equals_whole_decode_cut_at_the_stop_string() {
        let (_d, tok) = tokenizer();
        let body = "Héllo wörld 🙂 2+2=4 </answer> ignored tail é";
        let mut ids = tok.encode(body, false).unwrap();
        ids.push(EOS_ID);
        let whole = tok.decode(&ids, true).unwrap();
        for stops in [vec![], vec!["</answer>"], vec!["wör", "🙂"], vec!["never"], vec!["é"]] {
            let (text, stopped) = stream_all(&tok, &ids, &stops);
            let expected = match datasets::stop::find_stop(&whole, &stops) {
                Some((pos, _)) => &whole[..pos],
                None => whole.as_str(),
            };
            assert_eq!(text, expected, "stops {stops:?}");
            assert_eq!(stopped, datasets::stop::find_stop(&whole, &stops).is_some());
        }
        // A multi-byte character cut off at the end decodes to U+FFFD, as a whole decode does.
        let cut = &ids[..tok.encode("Hé", false).unwrap().len() - 1];
        assert_eq!(stream_all(&tok, cut, &[]).0, tok.decode(cut, true).unwrap());
    }

    #[test]
    fn decoding_cost_is_linear_in_the_generated_length() {
        let (_d, tok) = tokenizer();
        for n in [200usize, 2000] {
            let text: String = "ab é 🙂 ".chars().cycle().take(n).collect();
            let ids = tok.encode(&text, false).unwrap();
            let counting = Counting {
                inner: &tok,
                calls: Cell::new(0),
                ids: Cell::new(0),
            };
            let (out, _) = stream_all(&counting, &ids, &["<never-matches>"]);
            assert_eq!(out, text);
            let (calls, decoded) = (counting.calls.get(), counting.ids.get());
            // Two decodes per id (plus two at the end), each over a window of a few ids.
            assert!(calls <= 2 * ids.len() + 2, "{calls} calls for {} ids", ids.len());
            assert!(decoded <= 10 * ids.len(), "{decoded} ids decoded for {} ids", ids.len());
        }
    }

    #[test]
    fn min_tokens_delays_stop_strings_and_the_match_is_reported() {
        let (_d, tok) = tokenizer();
        let ids = tok.encode("ab ab ab", false).unwrap();
        let run = |min: usize| {
            let mut s = TextStream::new(vec![EOS_ID], &["b"]).with_min_tokens(min);
            let mut text = String::new();
            for &id in &ids {
                let step = s.push(&tok, id).unwrap();
                text.push_str(&step.text);
                if step.stopped {
                    return (text, step.stop_string);
                }
            }
            (text, None)
        };
        assert_eq!(run(0), ("a".to_string(), Some("b".to_string())));
        assert_eq!(run(3), ("ab a".to_string(), Some("b".to_string())));
    }

    #[test]
    fn eos_ends_text_and_reasons_follow_the_engine() {
        let (_d, tok) = tokenizer();
        let mut s = TextStream::new(vec![EOS_ID], &[] as &[&str]);
        assert_eq!(s.push(&tok, EOS_ID).unwrap(), TextStep::default());
        assert_eq!(s.generated(), 1);
        assert_eq!(finish_reason(true, models::FinishReason::Length), FinishReason::Stop);
        assert_eq!(finish_reason(false, models::FinishReason::Length), FinishReason::Length);
        assert_eq!(eos_ids(&[7, EOS_ID], Some(&tok)), vec![7, EOS_ID]);
        assert_eq!(eos_ids(&[7], Some(&tok)), vec![7, EOS_ID]);
    }
}
