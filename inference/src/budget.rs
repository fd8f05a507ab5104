//! Thinking budgets: s1's budget forcing (Muennighoff et al. 2025, "s1: Simple test-time
//! scaling") as a protocol over any generator that can continue a sequence.
//!
//! - A **maximum** (`max_thinking_tokens = N`): thinking stops at N tokens — the close marker
//!   (`</think>`) and the template's separator (`"\n\n"`) are appended and the model answers
//!   within what is left of `max_tokens`.
//! - A **minimum** (`min_thinking_tokens = M`): when the model closes its thinking before M
//!   tokens, the close is suppressed and the wait token (`"Wait"`) is appended instead, at most
//!   `max_waits` times; then an early close is accepted.
//!
//! The protocol ([`force_budget`]) only decides; a [`SegmentGenerator`] generates: the native
//! engine with token ids ([`crate::budget_native`]) or an OpenAI-compatible server through
//! continuation requests ([`crate::budget_openai`]). Forced tokens count towards `max_tokens`
//! and, while thinking, towards the thinking tokens.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, FinishReason};

/// The thinking-budget settings of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThinkingBudget {
    /// Stop thinking at this many tokens (forced close). `None`: no maximum.
    pub max_thinking_tokens: Option<u32>,
    /// Suppress a close before this many thinking tokens. `None`: no minimum.
    pub min_thinking_tokens: Option<u32>,
    /// Text appended in place of a suppressed close (s1: `"Wait"`).
    pub wait_token: String,
    /// Most suppressions per sample.
    pub max_waits: u32,
    /// The marker that ends thinking (R1: `</think>`).
    pub close: String,
    /// What a forced close appends after the marker, as the template's own output would
    /// (R1: `"\n\n"`).
    pub separator: String,
}

impl Default for ThinkingBudget {
    fn default() -> Self {
        ThinkingBudget {
            max_thinking_tokens: None,
            min_thinking_tokens: None,
            wait_token: "Wait".into(),
            max_waits: 4,
            close: "</think>".into(),
            separator: "\n\n".into(),
        }
    }
}

impl ThinkingBudget {
    /// True when a maximum or a minimum is set (otherwise forcing is a plain generation).
    pub fn is_active(&self) -> bool {
        self.max_thinking_tokens.is_some() || self.min_thinking_tokens.is_some()
    }
}

/// What budget forcing did to one sample (recorded per eval row).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingStats {
    /// Tokens before the close marker (forced wait tokens included).
    pub thinking_tokens: u32,
    /// Early closes replaced by the wait token.
    pub forced_waits: u32,
    /// Closes appended because the maximum was reached (0 or 1).
    pub forced_closes: u32,
}

/// How a generated segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The model emitted the close marker (asked for with `stop_at_close`); the marker is held
    /// back: not part of the sequence and not counted.
    Close,
    /// The model ended the sequence (EOS or a stop string).
    Stop,
    /// The segment's token limit was reached.
    Length,
}

/// One generated segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Tokens generated and appended to the sequence (EOS counted as generated).
    pub tokens: u32,
    /// Why it ended.
    pub end: SegmentEnd,
}

/// Why a segment could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SegmentFailure {
    /// Try the sample again later (nothing recorded).
    #[error(transparent)]
    Retry(#[from] BackendError),
    /// A permanent failure of this sample (recorded as a failed sample).
    #[error("{0}")]
    Permanent(String),
}

/// A sequence being generated in segments: the prompt plus everything generated or forced so
/// far. Implementations keep their own representation (token ids, text).
pub trait SegmentGenerator: Send {
    /// Continues the sequence by at most `max_new` tokens. With `stop_at_close`, ends as soon
    /// as the model emits the close marker ([`SegmentEnd::Close`]).
    fn generate(
        &mut self,
        max_new: u32,
        stop_at_close: bool,
    ) -> BoxFuture<'_, Result<Segment, SegmentFailure>>;

    /// Appends forced text (the wait token, the close marker and separator) to the sequence and
    /// returns how many tokens it added.
    fn append(&mut self, text: &str) -> Result<u32, SegmentFailure>;
}

/// The result of [`force_budget`]: what was forced, tokens used, and why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forced {
    /// Thinking tokens, waits and closes.
    pub stats: ThinkingStats,
    /// Completion tokens in all (generated and forced).
    pub completion_tokens: u32,
    /// `Stop` or `Length`.
    pub finish_reason: FinishReason,
}

/// Runs s1 budget forcing on `g` within `max_tokens` new tokens: thinking in segments that stop
/// at the close marker or at the thinking maximum, waits for early closes, a forced close at the
/// maximum, then the answer.
pub async fn force_budget<G: SegmentGenerator + ?Sized>(
    g: &mut G,
    budget: &ThinkingBudget,
    max_tokens: u32,
) -> Result<Forced, SegmentFailure> {
    let mut stats = ThinkingStats::default();
    let mut used = 0u32;
    let done = |stats, used, finish_reason| {
        Ok(Forced {
            stats,
            completion_tokens: used,
            finish_reason,
        })
    };
    let close_forced = format!("{}{}", budget.close, budget.separator);
    loop {
        let room = max_tokens.saturating_sub(used);
        let left = budget
            .max_thinking_tokens
            .map(|n| n.saturating_sub(stats.thinking_tokens));
        if room == 0 {
            return done(stats, used, FinishReason::Length);
        }
        if left == Some(0) {
            // The marker is appended even when it overshoots the last of the room by a few
            // tokens: a half-written marker would be neither thinking nor answer.
            used += g.append(&close_forced)?;
            stats.forced_closes += 1;
            break;
        }
        let asked = left.map_or(room, |l| l.min(room));
        let seg = g.generate(asked, true).await?;
        used += seg.tokens;
        stats.thinking_tokens += seg.tokens;
        match seg.end {
            SegmentEnd::Close => {
                let early = budget
                    .min_thinking_tokens
                    .is_some_and(|m| stats.thinking_tokens < m);
                if early && stats.forced_waits < budget.max_waits {
                    let n = g.append(&budget.wait_token)?;
                    used += n;
                    stats.thinking_tokens += n;
                    stats.forced_waits += 1;
                    continue;
                }
                // The model's own close stands; it goes on with its own separator.
                used += g.append(&budget.close)?;
                break;
            }
            SegmentEnd::Stop => return done(stats, used, FinishReason::Stop),
            // The thinking maximum: the next turn forces the close. A segment cut short of what
            // was asked hit the context limit instead: nothing more fits.
            SegmentEnd::Length if left.is_some() && seg.tokens == asked => continue,
            SegmentEnd::Length => return done(stats, used, FinishReason::Length),
        }
    }
    let room = max_tokens.saturating_sub(used);
    if room == 0 {
        return done(stats, used, FinishReason::Length);
    }
    let seg = g.generate(room, false).await?;
    used += seg.tokens;
    let finish = if seg.end == SegmentEnd::Length {
        FinishReason::Length
    } else {
        FinishReason::Stop
    };
    done(stats, used, finish)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic generator over characters (one char = one token): it replays a script of
    /// model output, where `|` stands for the close marker and `$` for EOS; forced text is
    /// appended as is. After a forced append the script resumes where it left off.
    pub(crate) struct Scripted {
        script: Vec<char>,
        pos: usize,
        pub(crate) text: String,
        pub(crate) calls: Vec<(u32, bool)>,
    }

    impl Scripted {
        pub(crate) fn new(script: &str) -> Self {
            Scripted {
                script: script.chars().collect(),
                pos: 0,
                text: String::new(),
                calls: Vec::new(),
            }
        }
    }

    impl SegmentGenerator for Scripted {
        fn generate(
            &mut self,
            max_new: u32,
            stop_at_close: bool,
        ) -> BoxFuture<'_, Result<Segment, SegmentFailure>> {
            self.calls.push((max_new, stop_at_close));
            Box::pin(async move {
                let mut tokens = 0;
                while tokens < max_new {
                    let Some(&c) = self.script.get(self.pos) else {
                        return Ok(Segment {
                            tokens,
                            end: SegmentEnd::Stop,
                        });
                    };
                    self.pos += 1;
                    match c {
                        '|' if stop_at_close => {
                            return Ok(Segment {
                                tokens,
                                end: SegmentEnd::Close,
                            })
                        }
                        '|' => self.text.push_str("</think>"),
                        '$' => {
                            return Ok(Segment {
                                tokens: tokens + 1,
                                end: SegmentEnd::Stop,
                            })
                        }
                        c => self.text.push(c),
                    }
                    tokens += 1;
                }
                Ok(Segment {
                    tokens,
                    end: SegmentEnd::Length,
                })
            })
        }

        fn append(&mut self, text: &str) -> Result<u32, SegmentFailure> {
            self.text.push_str(text);
            Ok(text.chars().count() as u32)
        }
    }

    fn run(script: &str, budget: &ThinkingBudget, max_tokens: u32) -> (Scripted, Forced) {
        let mut g = Scripted::new(script);
        let out = futures::executor::block_on(force_budget(&mut g, budget, max_tokens)).unwrap();
        (g, out)
    }

    fn budget(max: Option<u32>, min: Option<u32>) -> ThinkingBudget {
        ThinkingBudget {
            max_thinking_tokens: max,
            min_thinking_tokens: min,
            wait_token: "W".into(),
            max_waits: 2,
            ..Default::default()
        }
    }

    #[test]
    fn forced_close_lands_exactly_at_the_maximum() {
        let (g, out) = run("abcdefghij|xy$", &budget(Some(4), None), 100);
        assert_eq!(g.text, "abcd</think>\n\nefghij</think>xy");
        assert_eq!(
            out.stats,
            ThinkingStats {
                thinking_tokens: 4,
                forced_waits: 0,
                forced_closes: 1
            }
        );
        // 4 thinking + 10 forced chars + 9 answer tokens (6 letters, the close, x, y) + EOS.
        assert_eq!(out.completion_tokens, 4 + 10 + 10);
        assert_eq!(out.finish_reason, FinishReason::Stop);
        assert_eq!(g.calls, [(4, true), (86, false)]);
    }

    #[test]
    fn a_close_before_the_maximum_is_the_models_own() {
        let (g, out) = run("ab|cd$", &budget(Some(10), None), 100);
        assert_eq!(g.text, "ab</think>cd");
        assert_eq!(
            out.stats,
            ThinkingStats {
                thinking_tokens: 2,
                forced_waits: 0,
                forced_closes: 0
            }
        );
        assert_eq!(out.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn an_early_close_becomes_the_wait_token_up_to_max_waits() {
        // Closes after 2, 3 and 4 tokens with a minimum of 10: two waits, then the close stands.
        let (g, out) = run("ab|c|d|ans$", &budget(None, Some(10)), 100);
        assert_eq!(g.text, "abWcWd</think>ans");
        assert_eq!(
            out.stats,
            ThinkingStats {
                thinking_tokens: 6,
                forced_waits: 2,
                forced_closes: 0
            }
        );
        // Past the minimum, a close is accepted without a wait.
        let (g, out) = run("abc|d|x$", &budget(None, Some(4)), 100);
        assert_eq!(g.text, "abcWd</think>x");
        assert_eq!(out.stats.forced_waits, 1);
    }

    #[test]
    fn waits_count_towards_the_maximum() {
        let (g, out) = run("ab|cdefgh|z$", &budget(Some(5), Some(4)), 100);
        assert_eq!(g.text, "abWcd</think>\n\nefgh</think>z");
        assert_eq!(
            out.stats,
            ThinkingStats {
                thinking_tokens: 5,
                forced_waits: 1,
                forced_closes: 1
            }
        );
    }

    /// A generator whose context is full: every segment ends at once with `Length`.
    struct Full;

    impl SegmentGenerator for Full {
        fn generate(&mut self, _: u32, _: bool) -> BoxFuture<'_, Result<Segment, SegmentFailure>> {
            Box::pin(async {
                Ok(Segment {
                    tokens: 0,
                    end: SegmentEnd::Length,
                })
            })
        }
        fn append(&mut self, _: &str) -> Result<u32, SegmentFailure> {
            Ok(1)
        }
    }

    #[test]
    fn a_full_context_ends_the_sample_instead_of_looping() {
        let out = futures::executor::block_on(force_budget(&mut Full, &budget(Some(5), None), 100))
            .unwrap();
        assert_eq!(
            (
                out.finish_reason,
                out.completion_tokens,
                out.stats.forced_closes
            ),
            (FinishReason::Length, 0, 0)
        );
    }

    #[test]
    fn max_tokens_bounds_everything() {
        // max_tokens ends thinking before the thinking maximum: no forced close.
        let (g, out) = run("abcdefgh|x$", &budget(Some(100), None), 5);
        assert_eq!(
            (g.text.as_str(), out.finish_reason),
            ("abcde", FinishReason::Length)
        );
        assert_eq!(out.stats.forced_closes, 0);
        // The forced close uses the last of the room: no answer tokens left.
        let (g, out) = run("abcdefgh|x$", &budget(Some(3), None), 13);
        assert_eq!(
            (g.text.as_str(), out.finish_reason),
            ("abc</think>\n\n", FinishReason::Length)
        );
        assert_eq!(out.completion_tokens, 13);
        // EOS while thinking ends the sample.
        let (_, out) = run("ab$", &budget(Some(3), Some(3)), 10);
        assert_eq!(
            (out.finish_reason, out.stats.thinking_tokens),
            (FinishReason::Stop, 3)
        );
    }
}
