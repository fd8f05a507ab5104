//! Answer extraction and mathematical equivalence for model responses.
//!
//! Scores are the product's verdict on every student, so this crate decides — the way
//! Math-Verify and Qwen2.5-Math's grader do — whether a response's final answer equals the gold
//! answer. Everything is pure Rust, bounded in work (length and depth limits) and never panics;
//! no code is ever evaluated.
//!
//! # Extraction ([`extract_answer`])
//! Only the text after the last `</think>` counts (an unclosed `<think>` means the response was
//! truncated: no answer). Then Math-Verify 0.8's order, which published open-r1/lighteval
//! numbers were graded with: "final answer is X. I hope"; "final answer … is X" or the last
//! run of `\boxed{…}`; "answer: X"; "answer … X"; any math segment (`$…$`, `\[…\]`, …, joined
//! by "and"/"or"/","), plain arithmetic or number (decimal commas, thousands groups, `$12`,
//! `40%`). Within each step the match that ends last and parses wins.
//!
//! # Equivalence ([`grade_answer`], [`answers_equivalent`])
//! Answers are normalised (`\left`/`\right`/`\!`/`$`, `\dfrac`, thousands separators `1,000`
//! `1{,}000`, degrees, currency, trailing units and `\text{…}` units, "and"/"or" as commas,
//! percent words) and parsed into a small AST: exact rationals of any size (up to 2^16 bits),
//! `+ - * / ^`, `\frac` (also `\frac12` and mixed numbers `2\frac13`), `\sqrt`, `\pi`, `e`,
//! functions, factorials, `\binom`, `±`, percentages (`x\%` is x/100); sets (unordered), tuples
//! (ordered), intervals (ends matter; `(a, b)` also reads as an open interval), unions,
//! matrices, relations (`x = 3` ↔ `3`, inequalities ↔ intervals) and word answers
//! (case-insensitive). As in Math-Verify 0.8, `i` is a symbol (a standalone `i` makes the
//! answer's symbols complex, so `6-5i` ≠ `6-5 i`), `1.5e3` is 1.5·e·3 and `2\,220` is not 2220.
//! Scalars compare exactly over the rationals when possible; a decimal literal compares to 6
//! decimal places (but an exact integer stays exact); otherwise both sides are evaluated over
//! the complex numbers, at 8 deterministic points of both signs when variables occur. Floats
//! that cannot resolve a difference of one (overflow, values past 10^8) are "cannot decide",
//! which is "not equal".
//!
//! # Verdicts
//! [`Verdict::UnparseableGold`] when the gold cannot be understood — never counted as correct.

mod ast;
mod candidates;
mod compare;
mod equiv;
mod eval;
mod extract;
mod lexer;
mod matrix;
mod normalize;
mod parse;
mod parse_expr;
mod plain_values;
mod segments;
mod units;

pub use equiv::{answers_equivalent, cluster_answers, grade_answer, GoldAnswer};
pub use extract::{extract_answer, extract_final_boxes};

use serde::{Deserialize, Serialize};

/// Three-way outcome of grading; `UnparseableGold` keeps bad references from silently counting
/// as failures of the model (and an unparseable gold is never counted as correct).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The prediction is equivalent to the gold answer.
    Correct,
    /// The prediction is missing or not equivalent to the gold answer.
    Incorrect,
    /// The gold answer could not be understood, so nothing can be judged against it.
    UnparseableGold,
}

impl Verdict {
    /// The wire/Parquet spelling, identical to the serde form, so reports and records agree.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Incorrect => "incorrect",
            Verdict::UnparseableGold => "unparseable_gold",
        }
    }

    /// True only for `Correct`; metrics count this.
    pub fn is_correct(self) -> bool {
        self == Verdict::Correct
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of grading one full response: the verdict plus the answer text that was judged, kept
/// so per-sample records can show what the grader saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grade {
    /// Outcome against the gold answer.
    pub verdict: Verdict,
    /// The final answer extracted from the response, if any.
    pub extracted: Option<String>,
}

/// Grades a full model response (or a bare answer) against a gold answer.
///
/// The answer is taken with [`extract_answer`]; when the gold is a set/list and the final answer
/// region holds several distinct boxes, they are judged together as a set.
pub fn grade(gold: &str, response: &str) -> Grade {
    equiv::grade_response(gold, response)
}
