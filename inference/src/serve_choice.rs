//! One choice of a `distill serve` response on the wire: the chat message (with
//! `reasoning_content` split off by a reasoning parser) or the completion text, per-token
//! logprobs in the endpoint's shape, `finish_reason` and vLLM's `stop_reason`, whole or as
//! streamed deltas.

use std::sync::Arc;

use datasets::TextTokenizer;

use crate::backend::FinishReason;
use crate::logprobs::{LogprobsWriter, TokenLogprob};
use crate::native::{StopReason, TextOutput};
use crate::reasoning_parser::{ReasoningParser, ReasoningStream, Split};
use crate::wire::{AssistantMessage, Choice};

/// Which endpoint's shape a choice takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceKind {
    /// `message` / `delta` of `/v1/chat/completions`.
    Chat,
    /// `text` of `/v1/completions`.
    Text,
}

/// What a request asked of its choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChoiceOptions {
    /// The endpoint's shape.
    pub kind: ChoiceKind,
    /// Split `<think>` off into `reasoning_content` (chat only).
    pub reasoning: Option<ReasoningParser>,
    /// Write per-token logprobs.
    pub logprobs: bool,
    /// Logprob tokens as `token_id:<id>`.
    pub tokens_as_ids: bool,
}

/// Renders one choice, keeping the streaming state (reasoning split, logprobs not yet sent).
pub struct ChoiceRenderer {
    index: u32,
    opts: ChoiceOptions,
    writer: LogprobsWriter,
    reasoning: Option<ReasoningStream>,
    pending: Vec<TokenLogprob>,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl ChoiceRenderer {
    /// A renderer for choice `index`.
    pub fn new(index: u32, opts: ChoiceOptions, tokenizer: Arc<TextTokenizer>) -> Self {
        let reasoning = match opts.kind {
            ChoiceKind::Chat => opts.reasoning.map(ReasoningParser::stream),
            ChoiceKind::Text => None,
        };
        ChoiceRenderer {
            index,
            opts,
            writer: LogprobsWriter::new(tokenizer, opts.tokens_as_ids),
            reasoning,
            pending: Vec::new(),
        }
    }

    fn logprobs(&mut self, tokens: &[TokenLogprob]) -> Option<serde_json::Value> {
        if !self.opts.logprobs {
            return None;
        }
        let v = match self.opts.kind {
            ChoiceKind::Chat => serde_json::to_value(self.writer.chat(tokens)),
            ChoiceKind::Text => serde_json::to_value(self.writer.completion(tokens)),
        };
        Some(v.expect("logprobs serialise"))
    }

    fn body(&self, split: Split, role: bool, streamed: bool) -> Choice {
        let finish = |c: Choice| Choice {
            index: self.index,
            ..c
        };
        match self.opts.kind {
            ChoiceKind::Chat => {
                // A streamed delta carries only what it has; a whole answer without a
                // reasoning parser always has `content` (possibly empty), with one it is
                // null when the model wrote no answer after `</think>` (as vLLM).
                let content = if streamed || self.opts.reasoning.is_some() {
                    non_empty(split.content)
                } else {
                    Some(split.content)
                };
                let msg = AssistantMessage {
                    role: role.then(|| "assistant".to_string()),
                    content,
                    reasoning_content: non_empty(split.reasoning),
                    ..Default::default()
                };
                finish(Choice {
                    message: (!streamed).then(|| msg.clone()),
                    delta: streamed.then_some(msg),
                    ..Default::default()
                })
            }
            ChoiceKind::Text => finish(Choice {
                text: Some(split.content),
                ..Default::default()
            }),
        }
    }

    fn split(&mut self, text: &str, end: bool) -> Split {
        match &mut self.reasoning {
            Some(r) => {
                let mut s = r.push(text);
                if end {
                    let t = r.finish();
                    s.reasoning.push_str(&t.reasoning);
                    s.content.push_str(&t.content);
                }
                s
            }
            None => Split {
                content: text.to_string(),
                ..Default::default()
            },
        }
    }

    /// The whole, non-streamed choice.
    pub fn full(mut self, out: &TextOutput) -> Choice {
        let split = self.split(&out.text, true);
        let logprobs = self.logprobs(&out.tokens);
        Choice {
            logprobs,
            finish_reason: Some(out.finish_reason.as_str().to_string()),
            stop_reason: out.stop_reason.as_ref().map(StopReason::to_json),
            ..self.body(split, true, false)
        }
    }

    /// The chat stream's opening chunk (`role: assistant`, empty content).
    pub fn opener(&self) -> Choice {
        let mut c = self.body(Split::default(), true, true);
        if let Some(d) = c.delta.as_mut() {
            d.content = Some(String::new());
        }
        c
    }

    /// Logprobs of ids whose text comes in a later delta.
    pub fn on_logprobs(&mut self, tokens: Vec<TokenLogprob>) {
        self.pending.extend(tokens);
    }

    /// A streamed text delta; `None` when there is nothing to send yet (text held back).
    pub fn on_delta(&mut self, text: &str) -> Option<Choice> {
        let split = self.split(text, false);
        if split.content.is_empty() && split.reasoning.is_empty() && self.pending.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut self.pending);
        let logprobs = self.logprobs(&pending);
        Some(Choice {
            logprobs,
            ..self.body(split, false, true)
        })
    }

    /// The streamed final chunk: held-back text, remaining logprobs, why it ended.
    pub fn on_done(&mut self, finish: FinishReason, stop_reason: Option<&StopReason>) -> Choice {
        let split = self.split("", true);
        let pending = std::mem::take(&mut self.pending);
        let logprobs = if pending.is_empty() {
            None
        } else {
            self.logprobs(&pending)
        };
        Choice {
            logprobs,
            finish_reason: Some(finish.as_str().to_string()),
            stop_reason: stop_reason.map(StopReason::to_json),
            ..self.body(split, false, true)
        }
    }
}
