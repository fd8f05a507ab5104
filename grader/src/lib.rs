//! Answer extraction and mathematical equivalence for model responses.
//!
//! Scores are the product's verdict on every student, so this crate decides — the way
//! Math-Verify and Qwen2.5-Math's grader do — whether a response's final answer equals the gold
//! answer. Everything is pure Rust, bounded in work (length and depth limits) and never panics;
//! no code is ever evaluated.

mod ast;
mod compare;
mod equiv;
mod eval;
mod extract;
mod lexer;
mod normalize;
mod parse;
mod prose;

pub use equiv::{answers_equivalent, cluster_answers, grade_answer};
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
