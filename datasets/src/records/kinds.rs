//! The closed vocabularies of run records — verdict, finish reason, run status — as enums that
//! are stored as the same strings the files always held (`correct`, `length`, `complete`, …),
//! so comparisons are checked by the compiler and old files read unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored string that is not one of an enum's spellings (the reader names file and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownValue {
    /// Which vocabulary (`verdict`, `finish_reason`, `status`).
    pub kind: &'static str,
    /// The string found.
    pub value: String,
}

macro_rules! string_enum {
    ($name:ident, $kind:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $name {
            /// The stored spelling (identical to the serde form).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_string() }),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Why generation ended, as the OpenAI API spells it. The one finish reason of distill: the
/// inference backends report it, trace and eval records store it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// EOS or a stop string: the model finished its answer.
    Stop,
    /// `max_tokens` reached: the trace is truncated.
    Length,
    /// The server filtered the output.
    ContentFilter,
    /// No text came back: the request failed permanently (the record's `error` says why).
    Error,
}

string_enum!(FinishReason, "finish_reason", {
    Stop => "stop", Length => "length", ContentFilter => "content_filter", Error => "error",
});

impl FinishReason {
    /// Parses what a server sent; unknown reasons (some servers send `eos`, `abort`, null) map
    /// to the closest meaning so one odd server cannot fail a run.
    pub fn from_wire(s: Option<&str>) -> Self {
        match s {
            Some("length") | Some("max_tokens") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            Some("error") | Some("abort") => FinishReason::Error,
            _ => FinishReason::Stop,
        }
    }
}

/// The grade of one sample: the grader's three outcomes plus `error` for samples whose request
/// failed permanently (traces record those; eval records grade them `incorrect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Equivalent to the gold answer.
    Correct,
    /// Missing or not equivalent.
    Incorrect,
    /// The gold answer could not be parsed.
    UnparseableGold,
    /// No response to grade (permanent request failure).
    Error,
}

string_enum!(Verdict, "verdict", {
    Correct => "correct", Incorrect => "incorrect", UnparseableGold => "unparseable_gold",
    Error => "error",
});

impl Verdict {
    /// True only for `Correct`.
    pub fn is_correct(self) -> bool {
        self == Verdict::Correct
    }
}

impl From<grader::Verdict> for Verdict {
    fn from(v: grader::Verdict) -> Self {
        match v {
            grader::Verdict::Correct => Verdict::Correct,
            grader::Verdict::Incorrect => Verdict::Incorrect,
            grader::Verdict::UnparseableGold => Verdict::UnparseableGold,
        }
    }
}

/// How far a resumable run got, as its manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// An invocation is working on it (or was killed without a chance to say otherwise).
    Running,
    /// Every sample is on disk.
    Complete,
    /// Some samples failed transiently; a rerun finishes them.
    Incomplete,
    /// Ctrl-C (or the caller's stop signal) ended the invocation early.
    Interrupted,
}

string_enum!(RunStatus, "status", {
    Running => "running", Complete => "complete", Incomplete => "incomplete",
    Interrupted => "interrupted",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_strings_round_trip_and_match_serde() {
        for f in [FinishReason::Stop, FinishReason::Length, FinishReason::ContentFilter, FinishReason::Error] {
            assert_eq!(f.as_str().parse::<FinishReason>().unwrap(), f);
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        for v in [Verdict::Correct, Verdict::Incorrect, Verdict::UnparseableGold, Verdict::Error] {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        for s in [RunStatus::Running, RunStatus::Complete, RunStatus::Incomplete, RunStatus::Interrupted] {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(grader::Verdict::UnparseableGold.as_str(), Verdict::from(grader::Verdict::UnparseableGold).as_str());
        let err = "maybe".parse::<Verdict>().unwrap_err().to_string();
        assert_eq!(err, "unknown verdict `maybe`");
    }

    #[test]
    fn wire_finish_reasons_are_lenient() {
        assert_eq!(FinishReason::from_wire(Some("length")), FinishReason::Length);
        assert_eq!(FinishReason::from_wire(Some("max_tokens")), FinishReason::Length);
        assert_eq!(FinishReason::from_wire(Some("abort")), FinishReason::Error);
        assert_eq!(FinishReason::from_wire(None), FinishReason::Stop);
    }
}
