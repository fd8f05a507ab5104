//! Per-sample evaluation records and their Parquet files.
//!
//! One row per (benchmark, problem, sample): the raw response, what the grader extracted and
//! decided, and the generation facts (tokens, finish reason, seed) needed to recompute every
//! metric later without regenerating. The files are plain Parquet so pandas/pyarrow can open
//! them unchanged, and each shard is written to a temp file and renamed so a crash never leaves
//! a half-written file that a resumed run would trust.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Version of the eval record layout; bump when a column changes meaning.
pub const EVAL_RECORDS_SCHEMA_VERSION: u32 = 1;

/// Errors reading or writing eval record files; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum EvalRecordsError {
    /// Filesystem failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Parquet/Arrow encoding or decoding failure on a named file.
    #[error("{path}: {message}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// One graded sample of one problem. Field names are the Parquet column names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalRecord {
    /// Benchmark name (e.g. `aime2024`), so records of several benchmarks can share a table.
    pub benchmark: String,
    /// Problem id as given by the problem set.
    pub problem_id: String,
    /// 0-based sample index; (problem_id, sample_index) is the identity used for resume.
    pub sample_index: u32,
    /// Gold answer the sample was graded against.
    pub reference_answer: String,
    /// MATH-500 style subject, when the problem set has one (for breakdowns).
    pub subject: Option<String>,
    /// Difficulty level as text, when the problem set has one (for breakdowns).
    pub level: Option<String>,
    /// Full text the model produced (reasoning included) — what the grader saw.
    pub response: String,
    /// Reasoning part when the backend separated it (e.g. `reasoning_content`).
    pub reasoning: Option<String>,
    /// Answer the grader extracted, if any.
    pub extracted_answer: Option<String>,
    /// Grader verdict: `correct`, `incorrect` or `unparseable_gold`.
    pub verdict: String,
    /// `verdict == "correct"`, stored for convenience in dataframes.
    pub correct: bool,
    /// Prompt length in tokens as reported by the backend.
    pub prompt_tokens: u32,
    /// Response length in tokens as reported by the backend.
    pub completion_tokens: u32,
    /// `stop`, `length` or `error`.
    pub finish_reason: String,
    /// Per-sample seed derived from the run seed and the sample identity.
    pub seed: u64,
    /// Sampling temperature used.
    pub temperature: f32,
    /// Nucleus sampling mass used.
    pub top_p: f32,
    /// Generation budget in new tokens.
    pub max_tokens: u32,
    /// Wall time of the request in milliseconds.
    pub latency_ms: u64,
    /// Backend error message for failed samples (these count as incorrect).
    pub error: Option<String>,
    /// Model label of the run.
    pub model: String,
}

/// Arrow schema of eval record files.
pub fn eval_record_schema() -> SchemaRef {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("benchmark", false),
        s("problem_id", false),
        Field::new("sample_index", DataType::UInt32, false),
        s("reference_answer", false),
        s("subject", true),
        s("level", true),
        s("response", false),
        s("reasoning", true),
        s("extracted_answer", true),
        s("verdict", false),
        Field::new("correct", DataType::Boolean, false),
        Field::new("prompt_tokens", DataType::UInt32, false),
        Field::new("completion_tokens", DataType::UInt32, false),
        s("finish_reason", false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("temperature", DataType::Float32, false),
        Field::new("top_p", DataType::Float32, false),
        Field::new("max_tokens", DataType::UInt32, false),
        Field::new("latency_ms", DataType::UInt64, false),
        s("error", true),
        s("model", false),
    ]))
}

fn to_batch(records: &[EvalRecord]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let strs = |f: &dyn Fn(&EvalRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(records.iter().map(f)))
    };
    let opt = |f: &dyn Fn(&EvalRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let u32s = |f: &dyn Fn(&EvalRecord) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(records.iter().map(f)))
    };
    let u64s = |f: &dyn Fn(&EvalRecord) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(records.iter().map(f)))
    };
    let f32s = |f: &dyn Fn(&EvalRecord) -> f32| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(records.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        strs(&|r| &r.benchmark),
        strs(&|r| &r.problem_id),
        u32s(&|r| r.sample_index),
        strs(&|r| &r.reference_answer),
        opt(&|r| r.subject.as_deref()),
        opt(&|r| r.level.as_deref()),
        strs(&|r| &r.response),
        opt(&|r| r.reasoning.as_deref()),
        opt(&|r| r.extracted_answer.as_deref()),
        strs(&|r| &r.verdict),
        Arc::new(records.iter().map(|r| Some(r.correct)).collect::<BooleanArray>()),
        u32s(&|r| r.prompt_tokens),
        u32s(&|r| r.completion_tokens),
        strs(&|r| &r.finish_reason),
        u64s(&|r| r.seed),
        f32s(&|r| r.temperature),
        f32s(&|r| r.top_p),
        u32s(&|r| r.max_tokens),
        u64s(&|r| r.latency_ms),
        opt(&|r| r.error.as_deref()),
        strs(&|r| &r.model),
    ];
    RecordBatch::try_new(eval_record_schema(), columns)
}

/// Writes `records` as one Parquet file at `path`, via a temp file renamed into place, so the
/// file either exists complete or not at all.
pub fn write_eval_records(path: &Path, records: &[EvalRecord]) -> Result<(), EvalRecordsError> {
    let io = |source| EvalRecordsError::Io { path: path.to_path_buf(), source };
    let fmt = |e: &dyn std::fmt::Display| EvalRecordsError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let batch = to_batch(records).map_err(|e| fmt(&e))?;
        let file = File::create(&tmp).map_err(|e| EvalRecordsError::Io { path: tmp.clone(), source: e })?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer =
            ArrowWriter::try_new(file, eval_record_schema(), Some(props)).map_err(|e| fmt(&e))?;
        writer.write(&batch).map_err(|e| fmt(&e))?;
        let file = writer.into_inner().map_err(|e| fmt(&e))?;
        file.sync_all().map_err(|e| EvalRecordsError::Io { path: tmp.clone(), source: e })?;
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a T, EvalRecordsError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| EvalRecordsError::Format {
            path: path.to_path_buf(),
            message: format!("missing or mistyped column `{name}`"),
        })
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

/// Reads every row of one eval record file.
pub fn read_eval_records(path: &Path) -> Result<Vec<EvalRecord>, EvalRecordsError> {
    let fmt = |e: &dyn std::fmt::Display| EvalRecordsError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(|source| EvalRecordsError::Io { path: path.to_path_buf(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fmt(&e))?
        .build()
        .map_err(|e| fmt(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| fmt(&e))?;
        let s = |n: &str| column::<StringArray>(&b, n, path);
        let (benchmark, problem_id, reference_answer) = (s("benchmark")?, s("problem_id")?, s("reference_answer")?);
        let (subject, level, response, reasoning) = (s("subject")?, s("level")?, s("response")?, s("reasoning")?);
        let (extracted, verdict, finish, error, model) =
            (s("extracted_answer")?, s("verdict")?, s("finish_reason")?, s("error")?, s("model")?);
        let u32c = |n: &str| column::<UInt32Array>(&b, n, path);
        let (sample_index, prompt_tokens, completion_tokens, max_tokens) =
            (u32c("sample_index")?, u32c("prompt_tokens")?, u32c("completion_tokens")?, u32c("max_tokens")?);
        let u64c = |n: &str| column::<UInt64Array>(&b, n, path);
        let (seed, latency) = (u64c("seed")?, u64c("latency_ms")?);
        let f32c = |n: &str| column::<Float32Array>(&b, n, path);
        let (temperature, top_p) = (f32c("temperature")?, f32c("top_p")?);
        let correct = column::<BooleanArray>(&b, "correct", path)?;
        for i in 0..b.num_rows() {
            out.push(EvalRecord {
                benchmark: benchmark.value(i).to_string(),
                problem_id: problem_id.value(i).to_string(),
                sample_index: sample_index.value(i),
                reference_answer: reference_answer.value(i).to_string(),
                subject: opt_str(subject, i),
                level: opt_str(level, i),
                response: response.value(i).to_string(),
                reasoning: opt_str(reasoning, i),
                extracted_answer: opt_str(extracted, i),
                verdict: verdict.value(i).to_string(),
                correct: correct.value(i),
                prompt_tokens: prompt_tokens.value(i),
                completion_tokens: completion_tokens.value(i),
                finish_reason: finish.value(i).to_string(),
                seed: seed.value(i),
                temperature: temperature.value(i),
                top_p: top_p.value(i),
                max_tokens: max_tokens.value(i),
                latency_ms: latency.value(i),
                error: opt_str(error, i),
                model: model.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// Reads every `*.parquet` shard in `dir` (sorted by name, so later shards come later), skipping
/// temp files. A missing directory reads as no records, which is what a fresh run needs.
pub fn read_eval_record_dir(dir: &Path) -> Result<Vec<EvalRecord>, EvalRecordsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(EvalRecordsError::Io { path: dir.to_path_buf(), source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| EvalRecordsError::Io { path: dir.to_path_buf(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && !name.starts_with('.') {
            files.push(entry.path());
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(read_eval_records(&f)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u32, extracted: Option<&str>) -> EvalRecord {
        EvalRecord {
            benchmark: "aime2024".into(),
            problem_id: format!("p{i}"),
            sample_index: i,
            reference_answer: "42".into(),
            subject: i.is_multiple_of(2).then(|| "Algebra".into()),
            level: None,
            response: format!("<think>\nhm {i}\n</think>\n\n\\boxed{{{i}}}"),
            reasoning: Some("hm".into()),
            extracted_answer: extracted.map(str::to_string),
            verdict: "incorrect".into(),
            correct: false,
            prompt_tokens: 10,
            completion_tokens: 20 + i,
            finish_reason: "stop".into(),
            seed: u64::MAX - i as u64,
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 32768,
            latency_ms: 5,
            error: None,
            model: "m".into(),
        }
    }

    #[test]
    fn roundtrip_preserves_every_field_including_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shards/part-00000.parquet");
        let recs = vec![record(0, Some("0")), record(1, None), record(2, Some("\\frac{1}{2}"))];
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
}
