//! Per-sample evaluation records and their Parquet files.
//!
//! One row per (benchmark, problem, sample): a [`SampleRecord`] (the columns teacher traces
//! share: identity, grade, tokens, finish reason, seed, sampling parameters) plus the eval's own
//! columns — the raw response, breakdown fields and the model label — so every metric can be
//! recomputed later without regenerating. The files are plain Parquet so pandas/pyarrow open
//! them unchanged; shards go through [`crate::records::shards`] (temp file + rename), so a
//! crash never leaves a half-written file that a resumed run would trust.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::records::columns::{column, opt_str, opt_strings, strings};
use crate::records::sample::{sample_field, SampleColumns};
use crate::records::shards::{self, ShardRecord};
use crate::records::{RecordsError, SampleRecord};

/// Version of the eval record layout; bump when a column changes meaning.
pub const EVAL_RECORDS_SCHEMA_VERSION: u32 = 1;

/// One graded sample of one problem: the shared [`SampleRecord`] columns (reachable directly,
/// e.g. `record.verdict`, through `Deref`) plus the eval's own. Field names are column names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalRecord {
    /// Identity, grade, generation facts and sampling parameters.
    #[serde(flatten)]
    pub sample: SampleRecord,
    /// Benchmark name (e.g. `aime2024`), so records of several benchmarks can share a table.
    pub benchmark: String,
    /// MATH-500 style subject, when the problem set has one (for breakdowns).
    pub subject: Option<String>,
    /// Difficulty level as text, when the problem set has one (for breakdowns).
    pub level: Option<String>,
    /// Full text the model produced (reasoning included) — what the grader saw.
    pub response: String,
    /// Reasoning part when the backend separated it (e.g. `reasoning_content`).
    pub reasoning: Option<String>,
    /// Model label of the run.
    pub model: String,
    /// Thinking tokens (before `</think>`, forced waits included) when the run had a thinking
    /// budget (s1 budget forcing); null otherwise and in files written before budgets existed.
    #[serde(default)]
    pub thinking_tokens: Option<u32>,
    /// Early `</think>`s replaced by the wait token (budget runs only).
    #[serde(default)]
    pub forced_waits: Option<u32>,
    /// `</think>`s forced at the thinking maximum, 0 or 1 (budget runs only).
    #[serde(default)]
    pub forced_closes: Option<u32>,
}

/// The nullable budget-forcing columns, in schema order; files written before they existed
/// lack them and read as nulls.
const BUDGET_COLUMNS: [&str; 3] = ["thinking_tokens", "forced_waits", "forced_closes"];

impl Deref for EvalRecord {
    type Target = SampleRecord;
    fn deref(&self) -> &SampleRecord {
        &self.sample
    }
}

impl DerefMut for EvalRecord {
    fn deref_mut(&mut self) -> &mut SampleRecord {
        &mut self.sample
    }
}

/// Arrow schema of eval record files. `correct` (= verdict is `correct`) is stored for
/// convenience in dataframes and derived from the verdict on read.
pub fn eval_record_schema() -> SchemaRef {
    let shared = |n: &str| sample_field(n).expect("shared column");
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("benchmark", false),
        shared("problem_id"),
        shared("sample_index"),
        shared("reference_answer"),
        s("subject", true),
        s("level", true),
        s("response", false),
        s("reasoning", true),
        shared("extracted_answer"),
        shared("verdict"),
        Field::new("correct", DataType::Boolean, false),
        shared("prompt_tokens"),
        shared("completion_tokens"),
        shared("finish_reason"),
        shared("seed"),
        shared("temperature"),
        shared("top_p"),
        shared("max_tokens"),
        shared("latency_ms"),
        shared("error"),
        s("model", false),
        Field::new(BUDGET_COLUMNS[0], DataType::UInt32, true),
        Field::new(BUDGET_COLUMNS[1], DataType::UInt32, true),
        Field::new(BUDGET_COLUMNS[2], DataType::UInt32, true),
    ]))
}

impl ShardRecord for EvalRecord {
    fn schema() -> SchemaRef {
        eval_record_schema()
    }

    fn sample(&self) -> &SampleRecord {
        &self.sample
    }

    fn own_column(name: &str, rows: &[Self]) -> Option<ArrayRef> {
        let it = || rows.iter();
        Some(match name {
            "benchmark" => strings(it().map(|r| r.benchmark.as_str())),
            "subject" => opt_strings(it().map(|r| r.subject.as_deref())),
            "level" => opt_strings(it().map(|r| r.level.as_deref())),
            "response" => strings(it().map(|r| r.response.as_str())),
            "reasoning" => opt_strings(it().map(|r| r.reasoning.as_deref())),
            "correct" => Arc::new(it().map(|r| Some(r.correct())).collect::<BooleanArray>()),
            "model" => strings(it().map(|r| r.model.as_str())),
            "thinking_tokens" => Arc::new(it().map(|r| r.thinking_tokens).collect::<UInt32Array>()),
            "forced_waits" => Arc::new(it().map(|r| r.forced_waits).collect::<UInt32Array>()),
            "forced_closes" => Arc::new(it().map(|r| r.forced_closes).collect::<UInt32Array>()),
            _ => return None,
        })
    }

    fn decode(path: &Path, batch: &RecordBatch, out: &mut Vec<Self>) -> Result<(), RecordsError> {
        let shared = SampleColumns::new(path, batch)?;
        let s = |n| column::<StringArray>(path, batch, n);
        let (benchmark, subject, level) = (s("benchmark")?, s("subject")?, s("level")?);
        let (response, reasoning, model) = (s("response")?, s("reasoning")?, s("model")?);
        let mut budget = Vec::with_capacity(BUDGET_COLUMNS.len());
        for name in BUDGET_COLUMNS {
            budget.push(match batch.column_by_name(name) {
                Some(_) => Some(column::<UInt32Array>(path, batch, name)?),
                None => None,
            });
        }
        let cell = |c: usize, i: usize| budget[c].and_then(|a: &UInt32Array| (!a.is_null(i)).then(|| a.value(i)));
        for i in 0..batch.num_rows() {
            out.push(EvalRecord {
                sample: shared.row(i)?,
                benchmark: benchmark.value(i).to_string(),
                subject: opt_str(subject, i),
                level: opt_str(level, i),
                response: response.value(i).to_string(),
                reasoning: opt_str(reasoning, i),
                model: model.value(i).to_string(),
                thinking_tokens: cell(0, i),
                forced_waits: cell(1, i),
                forced_closes: cell(2, i),
            });
        }
        Ok(())
    }
}

/// Writes `records` as one Parquet file at `path` (parent directories created), via a temp
/// file renamed into place, so the file either exists complete or not at all.
pub fn write_eval_records(path: &Path, records: &[EvalRecord]) -> Result<(), RecordsError> {
    shards::write_shard(path, records)
}

/// Reads every row of one eval record file.
pub fn read_eval_records(path: &Path) -> Result<Vec<EvalRecord>, RecordsError> {
    shards::read_shard(path)
}

/// Reads every `*.parquet` shard in `dir` (sorted by name, so later shards come later), skipping
/// temp files. A missing directory reads as no records, which is what a fresh run needs.
pub fn read_eval_record_dir(dir: &Path) -> Result<Vec<EvalRecord>, RecordsError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    shards::read_shard_dir(dir)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Float32Array, UInt32Array, UInt64Array};
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::records::{FinishReason, Verdict};

    fn record(i: u32, extracted: Option<&str>) -> EvalRecord {
        EvalRecord {
            sample: SampleRecord {
                problem_id: format!("p{i}"),
                sample_index: i,
                reference_answer: "42".into(),
                extracted_answer: extracted.map(str::to_string),
                verdict: Verdict::Incorrect,
                prompt_tokens: 10,
                completion_tokens: 20 + i,
                finish_reason: FinishReason::Stop,
                seed: u64::MAX - i as u64,
                temperature: 0.6,
                top_p: 0.95,
                max_tokens: 32768,
                latency_ms: 5,
                error: None,
            },
            benchmark: "aime2024".into(),
            subject: i.is_multiple_of(2).then(|| "Algebra".into()),
            level: None,
            response: format!("<think>\nhm {i}\n</think>\n\n\\boxed{{{i}}}"),
            reasoning: Some("hm".into()),
            model: "m".into(),
            thinking_tokens: i.is_multiple_of(2).then_some(100 + i),
            forced_waits: i.is_multiple_of(2).then_some(i),
            forced_closes: i.is_multiple_of(2).then_some(1),
        }
    }

    #[test]
    fn roundtrip_preserves_every_field_including_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shards/part-00000.parquet");
        let mut recs = vec![record(0, Some("0")), record(1, None), record(2, Some("\\frac{1}{2}"))];
        recs[2].verdict = Verdict::Correct;
        write_eval_records(&path, &recs).unwrap();
        assert_eq!(read_eval_records(&path).unwrap(), recs);
        assert_eq!(read_eval_record_dir(&dir.path().join("shards")).unwrap(), recs);
        // No temp files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("shards")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn missing_dir_is_empty_and_bad_file_names_path() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_eval_record_dir(&dir.path().join("nope")).unwrap().is_empty());
        let bad = dir.path().join("bad.parquet");
        std::fs::write(&bad, b"not parquet").unwrap();
        let err = read_eval_records(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.parquet"), "{err}");
    }

    #[test]
    fn files_written_by_the_old_code_still_read() {
        // The schema and values exactly as the pre-records writer produced them.
        let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
        let u32f = |n: &str| Field::new(n, DataType::UInt32, false);
        let u64f = |n: &str| Field::new(n, DataType::UInt64, false);
        let f32f = |n: &str| Field::new(n, DataType::Float32, false);
        let schema = Arc::new(Schema::new(vec![
            s("benchmark", false),
            s("problem_id", false),
            u32f("sample_index"),
            s("reference_answer", false),
            s("subject", true),
            s("level", true),
            s("response", false),
            s("reasoning", true),
            s("extracted_answer", true),
            s("verdict", false),
            Field::new("correct", DataType::Boolean, false),
            u32f("prompt_tokens"),
            u32f("completion_tokens"),
            s("finish_reason", false),
            u64f("seed"),
            f32f("temperature"),
            f32f("top_p"),
            u32f("max_tokens"),
            u64f("latency_ms"),
            s("error", true),
            s("model", false),
        ]));
        let st = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let so = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let columns: Vec<ArrayRef> = vec![
            st(vec!["aime", "aime", "aime"]),
            st(vec!["p0", "p0", "p1"]),
            Arc::new(UInt32Array::from(vec![0, 1, 0])),
            st(vec!["1", "1", "x"]),
            so(vec![Some("Algebra"), None, None]),
            so(vec![None, Some("3"), None]),
            st(vec!["\\boxed{1}", "", "\\boxed{2}"]),
            so(vec![None, None, Some("r")]),
            so(vec![Some("1"), None, Some("2")]),
            st(vec!["correct", "incorrect", "unparseable_gold"]),
            Arc::new(BooleanArray::from(vec![true, false, false])),
            Arc::new(UInt32Array::from(vec![3, 3, 3])),
            Arc::new(UInt32Array::from(vec![9, 0, 64])),
            st(vec!["stop", "error", "length"]),
            Arc::new(UInt64Array::from(vec![1, 2, 3])),
            Arc::new(Float32Array::from(vec![0.6; 3])),
            Arc::new(Float32Array::from(vec![0.95; 3])),
            Arc::new(UInt32Array::from(vec![64; 3])),
            Arc::new(UInt64Array::from(vec![7; 3])),
            so(vec![None, Some("HTTP 400"), None]),
            st(vec!["m", "m", "m"]),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-00000.parquet");
        let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None)
            .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let recs = read_eval_records(&path).unwrap();
        let verdicts: Vec<_> = recs.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Correct, Verdict::Incorrect, Verdict::UnparseableGold]);
        let finish: Vec<_> = recs.iter().map(|r| r.finish_reason).collect();
        assert_eq!(finish, [FinishReason::Stop, FinishReason::Error, FinishReason::Length]);
        assert_eq!(recs.iter().map(|r| r.correct()).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(recs[1].error.as_deref(), Some("HTTP 400"));
        assert!(recs.iter().all(|r| r.thinking_tokens.is_none() && r.forced_waits.is_none() && r.forced_closes.is_none()));
        // The new writer produces the same columns and stored strings, plus the nullable
        // budget columns at the end (null here).
        let again = dir.path().join("part-00001.parquet");
        write_eval_records(&again, &recs).unwrap();
        let new_schema = eval_record_schema();
        assert_eq!(&new_schema.fields()[..schema.fields().len()], &schema.fields()[..]);
        assert_eq!(new_schema.fields().len(), schema.fields().len() + BUDGET_COLUMNS.len());
        let new_batch = shards::to_batch(&recs).unwrap();
        assert_eq!(&new_batch.columns()[..batch.num_columns()], batch.columns());
        assert!(new_batch.columns()[batch.num_columns()..].iter().all(|c| c.null_count() == 3));
        // Old and new shards side by side (a resumed run) read together.
        assert_eq!(read_eval_record_dir(dir.path()).unwrap().len(), 6);
    }
}
