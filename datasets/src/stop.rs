//! Streaming text out of a token stream: [`IncrementalDecoder`] turns ids into text pieces as
//! they are generated (for SSE streaming and stop strings) without ever emitting half a UTF-8
//! character, and [`StopStringMatcher`] holds back text that might be the start of a stop string
//! so that a stop string never reaches the client, as the OpenAI API specifies.

use crate::tokenizer::TextTokenizer;
use crate::DatasetError;

/// Ids → text, the one operation incremental decoding needs. [`TextTokenizer`] implements it;
/// tests wrap it to count calls (streaming must stay linear in the number of tokens).
pub trait Detokenize {
    /// Decodes `ids` (dropping special tokens when `skip_special_tokens`).
    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, DatasetError>;
}

impl Detokenize for TextTokenizer {
    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, DatasetError> {
        self.decode(ids, skip_special_tokens)
    }
}

/// Incremental detokeniser (the prefix/read-offset scheme of TGI and vLLM): each new id is
/// decoded together with a few previous ids, so byte-level merges and multi-token characters
/// (emoji, CJK in byte-fallback vocabularies) come out whole. The concatenation of everything
/// returned by [`push`](Self::push) and [`finish`](Self::finish) equals decoding all ids at once
/// for byte-level BPE tokenizers (Qwen, Llama 3, DeepSeek).
#[derive(Debug, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl IncrementalDecoder {
    /// A decoder for a fresh completion.
    pub fn new(skip_special_tokens: bool) -> Self {
        IncrementalDecoder {
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            skip_special_tokens,
        }
    }

    /// Add one generated id; returns the text it completes (possibly empty, e.g. when it is the
    /// first byte of a multi-byte character).
    pub fn push<D: Detokenize + ?Sized>(&mut self, tok: &D, id: u32) -> Result<String, DatasetError> {
        self.ids.push(id);
        let prefix = tok.decode_ids(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = tok.decode_ids(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
            if let Some(new) = full.strip_prefix(prefix.as_str()) {
                let out = new.to_string();
                self.prefix_offset = self.read_offset;
                self.read_offset = self.ids.len();
                return Ok(out);
            }
        }
        Ok(String::new())
    }

    /// Text still held back at the end of generation (an incomplete character decodes to U+FFFD,
    /// as a full decode would).
    pub fn finish<D: Detokenize + ?Sized>(&mut self, tok: &D) -> Result<String, DatasetError> {
        let prefix = tok.decode_ids(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = tok.decode_ids(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(full
            .strip_prefix(prefix.as_str())
            .map(str::to_string)
            .unwrap_or_default())
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// Result of feeding text to a [`StopStringMatcher`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopPush {
    /// Text that is now safe to emit (cannot be part of a stop string).
    pub emit: String,
    /// The stop string that matched, if generation must stop now (it is not in `emit`).
    pub stopped: Option<String>,
}

/// Finds stop strings in streamed text. Feed each decoded piece; emit what it returns; stop when
/// `stopped` is set; call [`finish`](Self::finish) at the end to flush the held-back tail.
#[derive(Debug, Clone)]
pub struct StopStringMatcher {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopStringMatcher {
    /// Matcher for `stops` (empty strings are ignored).
    pub fn new<S: AsRef<str>>(stops: &[S]) -> Self {
        StopStringMatcher {
            stops: stops
                .iter()
                .map(|s| s.as_ref().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            pending: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has matched already (further input is ignored).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feed the next piece of text.
    pub fn push(&mut self, text: &str) -> StopPush {
        if self.stopped {
            return StopPush::default();
        }
        self.pending.push_str(text);
        if let Some((pos, stop)) = find_stop(&self.pending, &self.stops) {
            let emit = self.pending[..pos].to_string();
            let stop = stop.to_string();
            self.pending.clear();
            self.stopped = true;
            return StopPush {
                emit,
                stopped: Some(stop),
            };
        }
        let hold = self.held_back_len();
        let cut = self.pending.len() - hold;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopPush {
            emit,
            stopped: None,
        }
    }

    /// The text held back at the end of the stream (it turned out not to be a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of some stop string.
    fn held_back_len(&self) -> usize {
        let p = &self.pending;
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(p.len());
            for len in (best + 1..=max).rev() {
                let start = p.len() - len;
                if p.is_char_boundary(start) && stop.starts_with(&p[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

/// The earliest occurrence of any of `stops` in `text`: (byte position, stop string). For
/// non-streamed completions: the response is `text[..pos]`.
pub fn find_stop<'a, S: AsRef<str>>(text: &str, stops: &'a [S]) -> Option<(usize, &'a str)> {
    stops
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s).map(|p| (p, s)))
        .min_by_key(|(p, s)| (*p, usize::MAX - s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut m = StopStringMatcher::new(stops);
        let mut out = String::new();
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.emit);
            if r.stopped.is_some() {
                return (out, r.stopped);
            }
        }
        out.push_str(&m.finish());
        (out, None)
    }

    #[test]
    fn stop_split_across_pieces_is_held_back_and_removed() {
        let (out, stop) = run(&["</answer>"], &["The x </an", "swer> tail"]);
        assert_eq!(out, "The x ");
        assert_eq!(stop.as_deref(), Some("</answer>"));
    }

    #[test]
    fn false_prefix_is_released() {
        let mut m = StopStringMatcher::new(&["STOP"]);
        let r = m.push("abc ST");
        assert_eq!(r.emit, "abc ");
        let r = m.push("ART ok");
        assert_eq!(r.emit, "START ok");
        assert_eq!(m.finish(), "");
        let (out, stop) = run(&["STOP"], &["ends with ST"]);
        assert_eq!((out.as_str(), stop), ("ends with ST", None));
    }

    #[test]
    fn earliest_stop_wins_and_unicode_is_safe() {
        let (out, stop) = run(&["b", "a"], &["xx", "ab"]);
        assert_eq!((out.as_str(), stop.as_deref()), ("xx", Some("a")));
        let (out, stop) = run(&["é!"], &["café", "é", "!"]);
        assert_eq!((out.as_str(), stop.as_deref()), ("café", Some("é!")));
        assert_eq!(find_stop("a\n\nb", &["\n\n", "b"]), Some((1, "\n\n")));
        assert_eq!(find_stop::<&str>("abc", &[]), None);
    }
}
