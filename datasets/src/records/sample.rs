//! [`SampleRecord`]: the columns every graded sample row has, whether it is a teacher trace or
//! an eval record, and their Arrow codec. Record types embed it and add their own columns; the
//! column names, types and positions in each file stay exactly what they were.

use std::path::Path;

use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};

use super::columns::{column, f32s, opt_str, opt_strings, strings, u32s, u64s};
use super::kinds::{FinishReason, Verdict};
use super::RecordsError;

/// One graded sample: identity, grade, generation facts and sampling parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Problem identifier from the input set.
    pub problem_id: String,
    /// Index of this sample among the k drawn for the problem; with `problem_id` the identity
    /// used for resume.
    pub sample_index: u32,
    /// Gold answer the sample was graded against.
    pub reference_answer: String,
    /// Answer the grader extracted, if any.
    pub extracted_answer: Option<String>,
    /// Grader verdict (`error` for failed trace samples).
    pub verdict: Verdict,
    /// Prompt length in tokens as counted by the backend (0 unknown).
    pub prompt_tokens: u32,
    /// Generated tokens as counted by the backend (0 unknown).
    pub completion_tokens: u32,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Per-sample seed ([`super::seed::sample_seed`]).
    pub seed: u64,
    /// Sampling temperature used.
    pub temperature: f32,
    /// Nucleus mass used.
    pub top_p: f32,
    /// Token budget used.
    pub max_tokens: u32,
    /// Request wall time in milliseconds (retries included).
    pub latency_ms: u64,
    /// Permanent failure message; `None` on success.
    pub error: Option<String>,
}

impl SampleRecord {
    /// The resume identity: (problem id, sample index).
    pub fn key(&self) -> (String, u32) {
        (self.problem_id.clone(), self.sample_index)
    }

    /// True when graded correct.
    pub fn correct(&self) -> bool {
        self.verdict.is_correct()
    }
}

/// Names of the shared columns.
pub const SAMPLE_COLUMNS: [&str; 14] = [
    "problem_id",
    "sample_index",
    "reference_answer",
    "extracted_answer",
    "verdict",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "seed",
    "temperature",
    "top_p",
    "max_tokens",
    "latency_ms",
    "error",
];

/// The Arrow field of shared column `name` (`None` for other names).
pub fn sample_field(name: &str) -> Option<Field> {
    let ty = match name {
        "problem_id" | "reference_answer" | "verdict" | "finish_reason" => DataType::Utf8,
        "extracted_answer" | "error" => return Some(Field::new(name, DataType::Utf8, true)),
        "sample_index" | "prompt_tokens" | "completion_tokens" | "max_tokens" => DataType::UInt32,
        "seed" | "latency_ms" => DataType::UInt64,
        "temperature" | "top_p" => DataType::Float32,
        _ => return None,
    };
    Some(Field::new(name, ty, false))
}

/// Shared column `name` built from `rows` (`None` for other names).
pub fn sample_column(name: &str, rows: &[&SampleRecord]) -> Option<ArrayRef> {
    let it = || rows.iter().copied();
    Some(match name {
        "problem_id" => strings(it().map(|r| r.problem_id.as_str())),
        "sample_index" => u32s(it().map(|r| r.sample_index)),
        "reference_answer" => strings(it().map(|r| r.reference_answer.as_str())),
        "extracted_answer" => opt_strings(it().map(|r| r.extracted_answer.as_deref())),
        "verdict" => strings(it().map(|r| r.verdict.as_str())),
        "prompt_tokens" => u32s(it().map(|r| r.prompt_tokens)),
        "completion_tokens" => u32s(it().map(|r| r.completion_tokens)),
        "finish_reason" => strings(it().map(|r| r.finish_reason.as_str())),
        "seed" => u64s(it().map(|r| r.seed)),
        "temperature" => f32s(it().map(|r| r.temperature)),
        "top_p" => f32s(it().map(|r| r.top_p)),
        "max_tokens" => u32s(it().map(|r| r.max_tokens)),
        "latency_ms" => u64s(it().map(|r| r.latency_ms)),
        "error" => opt_strings(it().map(|r| r.error.as_deref())),
        _ => return None,
    })
}

/// The shared columns of one record batch, looked up once per batch.
pub struct SampleColumns<'a> {
    path: &'a Path,
    problem_id: &'a StringArray,
    sample_index: &'a UInt32Array,
    reference_answer: &'a StringArray,
    extracted_answer: &'a StringArray,
    verdict: &'a StringArray,
    prompt_tokens: &'a UInt32Array,
    completion_tokens: &'a UInt32Array,
    finish_reason: &'a StringArray,
    seed: &'a UInt64Array,
    temperature: &'a Float32Array,
    top_p: &'a Float32Array,
    max_tokens: &'a UInt32Array,
    latency_ms: &'a UInt64Array,
    error: &'a StringArray,
}

impl<'a> SampleColumns<'a> {
    /// Finds every shared column of `batch` (an error names the file and the column).
    pub fn new(path: &'a Path, batch: &'a RecordBatch) -> Result<Self, RecordsError> {
        let s = |n| column::<StringArray>(path, batch, n);
        let u = |n| column::<UInt32Array>(path, batch, n);
        let l = |n| column::<UInt64Array>(path, batch, n);
        let f = |n| column::<Float32Array>(path, batch, n);
        Ok(SampleColumns {
            path,
            problem_id: s("problem_id")?,
            sample_index: u("sample_index")?,
            reference_answer: s("reference_answer")?,
            extracted_answer: s("extracted_answer")?,
            verdict: s("verdict")?,
            prompt_tokens: u("prompt_tokens")?,
            completion_tokens: u("completion_tokens")?,
            finish_reason: s("finish_reason")?,
            seed: l("seed")?,
            temperature: f("temperature")?,
            top_p: f("top_p")?,
            max_tokens: u("max_tokens")?,
            latency_ms: l("latency_ms")?,
            error: s("error")?,
        })
    }

    /// Row `i` (an unknown verdict or finish reason names the file, row and column).
    pub fn row(&self, i: usize) -> Result<SampleRecord, RecordsError> {
        let bad = |column, source| RecordsError::Value {
            path: self.path.to_path_buf(),
            row: i,
            column,
            source,
        };
        Ok(SampleRecord {
            problem_id: self.problem_id.value(i).to_string(),
            sample_index: self.sample_index.value(i),
            reference_answer: self.reference_answer.value(i).to_string(),
            extracted_answer: opt_str(self.extracted_answer, i),
            verdict: self.verdict.value(i).parse().map_err(|e| bad("verdict", e))?,
            prompt_tokens: self.prompt_tokens.value(i),
            completion_tokens: self.completion_tokens.value(i),
            finish_reason: (self.finish_reason.value(i).parse())
                .map_err(|e| bad("finish_reason", e))?,
            seed: self.seed.value(i),
            temperature: self.temperature.value(i),
            top_p: self.top_p.value(i),
            max_tokens: self.max_tokens.value(i),
            latency_ms: self.latency_ms.value(i),
            error: opt_str(self.error, i),
        })
    }
}
