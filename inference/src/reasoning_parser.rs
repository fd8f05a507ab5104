//! `--reasoning-parser deepseek-r1`: the chat answer's `<think>…</think>` goes to
//! `message.reasoning_content` (and streamed `delta.reasoning_content`), the rest to
//! `content`, as vLLM's and SGLang's `deepseek-r1` parsers do.
//!
//! R1's chat template ends the prompt with `<think>\n`, so the model's output usually starts
//! inside the reasoning: everything before `</think>` is reasoning, a leading `<think>` (when the
//! model writes it) is dropped, and an output without `</think>` is all reasoning with no
//! content (vLLM's behaviour). Splitting works on text, holding back a tail that could be the
//! start of a tag, so streamed deltas never show part of a tag and their concatenation equals
//! the non-streamed split.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// The reasoning parsers `distill serve` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasoningParser {
    /// DeepSeek-R1 and its distills: `<think>` opened by the template, closed by the model.
    DeepSeekR1,
}

impl ReasoningParser {
    /// Parses the flag value (vLLM's and SGLang's spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "deepseek-r1" | "deepseek_r1" => Some(ReasoningParser::DeepSeekR1),
            _ => None,
        }
    }

    /// A splitter for one choice.
    pub fn stream(self) -> ReasoningStream {
        ReasoningStream {
            state: State::Start,
            held: String::new(),
        }
    }

    /// Splits a whole answer into (reasoning, content); empty parts are `None`.
    pub fn split(self, text: &str) -> (Option<String>, Option<String>) {
        let mut s = self.stream();
        let mut a = s.push(text);
        let b = s.finish();
        a.reasoning.push_str(&b.reasoning);
        a.content.push_str(&b.content);
        (non_empty(a.reasoning), non_empty(a.content))
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing decided yet: the text may begin with `<think>`.
    Start,
    Reasoning,
    Content,
}

/// The split of one piece of text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Reasoning text.
    pub reasoning: String,
    /// Answer text.
    pub content: String,
}

/// Incremental splitter of one choice's text.
#[derive(Clone, Debug)]
pub struct ReasoningStream {
    state: State,
    held: String,
}

impl ReasoningStream {
    /// Consumes a delta; returns what can be shown now.
    pub fn push(&mut self, delta: &str) -> Split {
        let mut out = Split::default();
        self.held.push_str(delta);
        loop {
            match self.state {
                State::Start => {
                    if self.held.starts_with(OPEN) {
                        self.held.drain(..OPEN.len());
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(self.held.as_str()) {
                        return out; // could still become `<think>`
                    } else {
                        self.state = State::Reasoning;
                    }
                }
                State::Reasoning => {
                    if let Some(pos) = self.held.find(CLOSE) {
                        out.reasoning.push_str(&self.held[..pos]);
                        self.held.drain(..pos + CLOSE.len());
                        self.state = State::Content;
                        continue;
                    }
                    let keep = partial_suffix(&self.held, CLOSE);
                    let cut = self.held.len() - keep;
                    out.reasoning.push_str(&self.held[..cut]);
                    self.held.drain(..cut);
                    return out;
                }
                State::Content => {
                    out.content.push_str(&self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// Flushes the held-back tail at the end of the text.
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Content => Split {
                content: held,
                ..Default::default()
            },
            State::Start | State::Reasoning => Split {
                reasoning: held,
                ..Default::default()
            },
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_vllm_deepseek_r1() {
        let p = ReasoningParser::DeepSeekR1;
        let s = |a: Option<&str>, b: Option<&str>| (a.map(String::from), b.map(String::from));
        assert_eq!(
            p.split("plan\n</think>\n\nThe answer is 4."),
            s(Some("plan\n"), Some("\n\nThe answer is 4."))
        );
        assert_eq!(p.split("<think>plan</think>4"), s(Some("plan"), Some("4")));
        assert_eq!(p.split("still thinking"), s(Some("still thinking"), None));
        assert_eq!(p.split("</think>only answer"), s(None, Some("only answer")));
        assert_eq!(p.split("a </thin b"), s(Some("a </thin b"), None));
        assert_eq!(p.split(""), s(None, None));
    }

    #[test]
    fn streamed_deltas_concatenate_to_the_split() {
        let p = ReasoningParser::DeepSeekR1;
        let text = "<think>é step </th1 </think>answer 🙂 </think> tail";
        for chunk in 1..6 {
            let chars: Vec<char> = text.chars().collect();
            let mut st = p.stream();
            let (mut r, mut c) = (String::new(), String::new());
            for piece in chars.chunks(chunk) {
                let o = st.push(&piece.iter().collect::<String>());
                assert!(
                    !o.reasoning.contains('<') || o.reasoning.contains("</th1"),
                    "{o:?}"
                );
                r.push_str(&o.reasoning);
                c.push_str(&o.content);
            }
            let o = st.finish();
            r.push_str(&o.reasoning);
            c.push_str(&o.content);
            let (wr, wc) = p.split(text);
            assert_eq!((Some(r), Some(c)), (wr, wc), "chunk {chunk}");
        }
    }
}
