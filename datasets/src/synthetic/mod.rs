//! The synthetic quickstart task: a verifiable multi-step arithmetic task small enough that a
//! tiny Llama-shaped model trained from scratch on a laptop CPU learns it in minutes, so that
//! `distill quickstart` can run every stage of the real pipeline (teacher training, sampling,
//! filtering, SFT, evaluation) end to end.
//!
//! A problem is a left-to-right chain of additions and subtractions of small numbers, e.g.
//! `Compute 7 + 5 - 3 + 8.` (with a larger `max_value`); the gold trace rewrites the expression
//! one operation per line, so that every step only needs the line above it (copy the tail,
//! combine the first two numbers):
//!
//! ```text
//! <think>
//! 7 + 5 - 3 + 8
//! = 12 - 3 + 8
//! = 9 + 8
//! = 17
//! </think>
//!
//! The answer is \boxed{17}.
//! ```
//!
//! Answers are plain integers (the `grader` checks them like any benchmark answer), prompts use
//! the R1 evaluation instruction ([`crate::chat::r1_math_prompt`]) so that sampling and
//! evaluation with default settings ask exactly what the teacher was trained on.

mod arith;
mod tokenizer_train;

pub use arith::{generate, trace_for};
pub use tokenizer_train::{train_tokenizer, TokenizerTrainConfig, SYNTHETIC_CHAT_TEMPLATE};

use crate::chat::{r1_math_prompt, ChatMessage};
use crate::problems::{write_problems_jsonl, Problem};
use crate::DatasetError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Knobs of the synthetic task. The defaults keep every value a single digit (90 distinct
/// one-step facts, ~33-token traces): a 3-layer, 192-wide Llama trained from scratch for 500
/// steps on 2 CPU cores (~8 min) then samples 99.6% correct traces at temperature 0.6 (2391 of
/// 2400, measured with the quickstart). With max_value = 99 (values reach ~36) it sampled 25%
/// correct after 300 steps: the number of arithmetic facts, not trace length, is what is hard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// RNG seed; the same config always yields the same splits (default 0).
    pub seed: u64,
    /// Training problems (default 4000).
    pub n_train: usize,
    /// Held-out test problems, disjoint from train by expression (default 100).
    pub n_test: usize,
    /// Fewest operations per problem (default 2).
    pub min_ops: usize,
    /// Most operations per problem (default 3).
    pub max_ops: usize,
    /// Operands are drawn from 1..=max_operand (default 9).
    pub max_operand: u32,
    /// Every intermediate value stays within 0..=max_value (default 9).
    pub max_value: u32,
    /// Operators to use: any of `+`, `-`, `*` (default "+-").
    pub operators: String,
    /// `source` column of the generated problems (default "synthetic-arith").
    pub source: String,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            seed: 0,
            n_train: 4000,
            n_test: 100,
            min_ops: 2,
            max_ops: 3,
            max_operand: 9,
            max_value: 9,
            operators: "+-".into(),
            source: "synthetic-arith".into(),
        }
    }
}

/// One generated problem with its gold R1-format completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticExample {
    /// Id, statement, integer answer and source, as any benchmark problem.
    pub problem: Problem,
    /// Gold completion: `<think>\n…steps…\n</think>\n\nThe answer is \boxed{N}.`
    pub trace: String,
}

impl SyntheticExample {
    /// The user prompt (problem + R1 instruction), as sampling and evaluation build it.
    pub fn prompt(&self) -> String {
        r1_math_prompt(&self.problem.problem)
    }

    /// The conversation for SFT: user prompt, assistant gold trace.
    pub fn messages(&self) -> Vec<ChatMessage> {
        vec![
            ChatMessage::user(self.prompt()),
            ChatMessage::assistant(self.trace.clone()),
        ]
    }
}

/// Train and test splits of the synthetic task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSplits {
    /// Training problems with gold traces.
    pub train: Vec<SyntheticExample>,
    /// Held-out problems (never in train).
    pub test: Vec<SyntheticExample>,
}

/// Paths written by [`SyntheticSplits::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticFiles {
    /// `train.jsonl`: problems (id, problem, answer, source).
    pub train_problems: PathBuf,
    /// `test.jsonl`: held-out problems.
    pub test_problems: PathBuf,
    /// `train_gold.jsonl`: messages layout (`messages` = user + gold assistant) plus id/problem/
    /// answer/source, for SFT of the teacher.
    pub train_gold: PathBuf,
    /// `test_gold.jsonl`: the same for the test split (reference only; never train on it).
    pub test_gold: PathBuf,
}

#[derive(Serialize)]
struct GoldRow<'a> {
    id: &'a str,
    problem: &'a str,
    answer: &'a str,
    source: Option<&'a str>,
    messages: Vec<ChatMessage>,
}

fn write_gold(path: &Path, examples: &[SyntheticExample]) -> Result<(), DatasetError> {
    let rows: Vec<GoldRow> = examples
        .iter()
        .map(|e| GoldRow {
            id: &e.problem.id,
            problem: &e.problem.problem,
            answer: &e.problem.answer,
            source: e.problem.source.as_deref(),
            messages: e.messages(),
        })
        .collect();
    crate::jsonl::write_jsonl(path, &rows)
}

impl SyntheticSplits {
    /// Write both splits into `dir` (each file atomically).
    pub fn write(&self, dir: &Path) -> Result<SyntheticFiles, DatasetError> {
        let files = SyntheticFiles {
            train_problems: dir.join("train.jsonl"),
            test_problems: dir.join("test.jsonl"),
            train_gold: dir.join("train_gold.jsonl"),
            test_gold: dir.join("test_gold.jsonl"),
        };
        let problems =
            |x: &[SyntheticExample]| x.iter().map(|e| e.problem.clone()).collect::<Vec<_>>();
        write_problems_jsonl(&files.train_problems, &problems(&self.train))?;
        write_problems_jsonl(&files.test_problems, &problems(&self.test))?;
        write_gold(&files.train_gold, &self.train)?;
        write_gold(&files.test_gold, &self.test)?;
        Ok(files)
    }

    /// Text to train a tokenizer on: every prompt and gold trace of the training split.
    pub fn tokenizer_corpus(&self) -> Vec<String> {
        self.train
            .iter()
            .flat_map(|e| [e.prompt(), e.trace.clone()])
            .collect()
    }
}
