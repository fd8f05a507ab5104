//! Teacher trace rows: the Parquet schema written by `distill teacher sample` and read by
//! `distill data filter` and the student trainer.
//!
//! One row per sample (problem × sample index). Shards are written whole to a hidden temp file,
//! fsynced and renamed, so a directory only ever holds complete, readable Parquet files — the
//! property crash-safe resume relies on. Column names and types are chosen so pandas/pyarrow
//! read the files without help (`prompt` is the HF messages layout, `created_at` a UTC
//! timestamp).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    ListBuilder, StringBuilder, StructBuilder, TimestampMicrosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, Float32Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

/// Version of the trace schema, stored in each file's key-value metadata and in the run
/// manifest; bump it when a column changes meaning.
pub const TRACE_SCHEMA_VERSION: u32 = 1;

/// Parquet key-value metadata key holding [`TRACE_SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "distill.trace_schema_version";

/// Errors reading or writing trace files; each names the file (and column) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Parquet/Arrow encoding or decoding failure.
    #[error("{path}: {message}")]
    Format {
        /// File involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A required column is absent or has the wrong type.
    #[error("{path}: column `{column}` {problem}")]
    Column {
        /// File involved.
        path: PathBuf,
        /// Column name.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// One prompt message (`role`, `content`), the element type of the `prompt` list column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

/// One teacher sample with everything needed to filter, train on and audit it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceRow {
    /// Problem identifier from the input set.
    pub problem_id: String,
    /// Index of this sample among the k drawn for the problem; with `problem_id` the identity.
    pub sample_index: u32,
    /// Origin of the problem (dataset/subset), when the input has one.
    pub source: Option<String>,
    /// Problem statement.
    pub problem: String,
    /// Gold answer.
    pub reference_answer: String,
    /// Messages sent to the teacher (HF messages layout).
    pub prompt: Vec<TraceMessage>,
    /// Thinking part of the response.
    pub reasoning: String,
    /// Answer part after the reasoning.
    pub content: String,
    /// Full generated text as the model produced it.
    pub completion: String,
    /// `stop`, `length`, `content_filter` or `error`.
    pub finish_reason: String,
    /// Prompt length in tokens (server count; 0 unknown).
    pub prompt_tokens: u32,
    /// Generated tokens (server count; 0 unknown).
    pub completion_tokens: u32,
    /// Answer the grader extracted from `content`, if any.
    pub extracted_answer: Option<String>,
    /// Grader verdict: `correct`, `incorrect` or `unparseable_gold` (`error` for failed samples).
    pub verdict: String,
    /// Teacher model name.
    pub teacher: String,
    /// Sampling temperature used.
    pub temperature: f32,
    /// Nucleus mass used.
    pub top_p: f32,
    /// Token budget used.
    pub max_tokens: u32,
    /// Per-sample seed sent with the request.
    pub seed: u64,
    /// Request wall time in milliseconds (retries included).
    pub latency_ms: u64,
    /// Permanent failure message; `None` on success.
    pub error: Option<String>,
    /// Completion time, microseconds since the Unix epoch (UTC).
    pub created_at: i64,
}

/// The Arrow schema of a trace file (column order is the documented one).
pub fn trace_schema() -> SchemaRef {
    let utf8 = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        utf8("problem_id", false),
        Field::new("sample_index", DataType::UInt32, false),
        utf8("source", true),
        utf8("problem", false),
        utf8("reference_answer", false),
        Field::new(
            "prompt",
            DataType::List(Arc::new(message_item_field())),
            false,
        ),
        utf8("reasoning", false),
        utf8("content", false),
        utf8("completion", false),
        utf8("finish_reason", false),
        Field::new("prompt_tokens", DataType::UInt32, false),
        Field::new("completion_tokens", DataType::UInt32, false),
        utf8("extracted_answer", true),
        utf8("verdict", false),
        utf8("teacher", false),
        Field::new("temperature", DataType::Float32, false),
        Field::new("top_p", DataType::Float32, false),
        Field::new("max_tokens", DataType::UInt32, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("latency_ms", DataType::UInt64, false),
        utf8("error", true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

fn message_item_field() -> Field {
    Field::new("item", DataType::Struct(message_fields()), true)
}

/// Converts rows into one record batch with [`trace_schema`].
pub fn rows_to_batch(rows: &[TraceRow]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let s = |f: fn(&TraceRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let so = |f: fn(&TraceRow) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let u32c = |f: fn(&TraceRow) -> u32| -> ArrayRef {
        let mut b = UInt32Builder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let u64c = |f: fn(&TraceRow) -> u64| -> ArrayRef {
        let mut b = UInt64Builder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let f32c = |f: fn(&TraceRow) -> f32| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(rows.iter().map(f)))
    };
    let mut prompt = ListBuilder::new(StructBuilder::new(
        message_fields(),
        vec![
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
        ],
    ))
    .with_field(Arc::new(message_item_field()));
    for r in rows {
        let values = prompt.values();
        for m in &r.prompt {
            values
                .field_builder::<StringBuilder>(0)
                .expect("role builder")
                .append_value(&m.role);
            values
                .field_builder::<StringBuilder>(1)
                .expect("content builder")
                .append_value(&m.content);
            values.append(true);
        }
        prompt.append(true);
    }
    let mut created = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    rows.iter().for_each(|r| created.append_value(r.created_at));
    let columns: Vec<ArrayRef> = vec![
        s(|r| &r.problem_id),
        u32c(|r| r.sample_index),
        so(|r| r.source.as_deref()),
        s(|r| &r.problem),
        s(|r| &r.reference_answer),
        Arc::new(prompt.finish()),
        s(|r| &r.reasoning),
        s(|r| &r.content),
        s(|r| &r.completion),
        s(|r| &r.finish_reason),
        u32c(|r| r.prompt_tokens),
        u32c(|r| r.completion_tokens),
        so(|r| r.extracted_answer.as_deref()),
        s(|r| &r.verdict),
        s(|r| &r.teacher),
        f32c(|r| r.temperature),
        f32c(|r| r.top_p),
        u32c(|r| r.max_tokens),
        u64c(|r| r.seed),
        u64c(|r| r.latency_ms),
        so(|r| r.error.as_deref()),
        Arc::new(created.finish()),
    ];
    RecordBatch::try_new(trace_schema(), columns)
}

/// Encodes rows as a complete Parquet file in memory (snappy, schema version in metadata).
pub fn encode_parquet(rows: &[TraceRow]) -> Result<Vec<u8>, String> {
    let batch = rows_to_batch(rows).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            SCHEMA_VERSION_KEY.to_string(),
            TRACE_SCHEMA_VERSION.to_string(),
        )]))
        .build();
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Writes `rows` as the shard `path`: the bytes go to a hidden temp file next to it, are
/// fsynced, then renamed over `path` (and the directory fsynced), so readers and a resumed run
/// never see a partial shard.
pub fn write_trace_shard(path: &Path, rows: &[TraceRow]) -> Result<(), TraceError> {
    let bytes = encode_parquet(rows).map_err(|message| TraceError::Format {
        path: path.to_path_buf(),
        message,
    })?;
    write_bytes_atomic(path, &bytes)
}

/// Temp-file-then-rename write with fsync of file and directory.
fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads every row of one trace file.
pub fn read_trace_file(path: &Path) -> Result<Vec<TraceRow>, TraceError> {
    let fmt = |e: &dyn std::fmt::Display| TraceError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = fs::File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fmt(&e))?
        .build()
        .map_err(|e| fmt(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| fmt(&e))?;
        batch_to_rows(path, &batch, &mut rows)?;
    }
    Ok(rows)
}

/// Reads one trace file a record batch at a time (about 1,024 rows each), so that a large
/// file is never whole in memory (`distill data filter` streams its inputs through this).
pub fn read_trace_batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<TraceRow>, TraceError>>, TraceError> {
    let owned = path.to_path_buf();
    let fmt = move |e: &dyn std::fmt::Display| TraceError::Format {
        path: owned.clone(),
        message: e.to_string(),
    };
    let file = fs::File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fmt(&e))?
        .build()
        .map_err(|e| fmt(&e))?;
    let path = path.to_path_buf();
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|e| fmt(&e))?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        batch_to_rows(&path, &batch, &mut rows)?;
        Ok(rows)
    }))
}

/// The completed shard files of a trace directory, sorted by name (hidden temp files and
/// non-Parquet files such as `manifest.json` are skipped).
pub fn list_trace_shards(dir: &Path) -> Result<Vec<PathBuf>, TraceError> {
    let io = |source| TraceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.starts_with('.') && name.ends_with(".parquet") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads all rows of a trace directory (every shard) or of a single trace file.
pub fn read_traces(path: &Path) -> Result<Vec<TraceRow>, TraceError> {
    if path.is_dir() {
        let mut rows = Vec::new();
        for shard in list_trace_shards(path)? {
            rows.extend(read_trace_file(&shard)?);
        }
        Ok(rows)
    } else {
        read_trace_file(path)
    }
}

fn column<'a, T: 'static>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, TraceError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| TraceError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            problem: "is missing".into(),
        })?;
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| TraceError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            problem: format!("has unexpected type {}", col.data_type()),
        })
}

fn batch_to_rows(
    path: &Path,
    batch: &RecordBatch,
    out: &mut Vec<TraceRow>,
) -> Result<(), TraceError> {
    let s = |n| column::<StringArray>(path, batch, n);
    let u32c = |n| column::<UInt32Array>(path, batch, n);
    let u64c = |n| column::<UInt64Array>(path, batch, n);
    let f32c = |n| column::<Float32Array>(path, batch, n);
    let (problem_id, source, problem, reference_answer) = (
        s("problem_id")?,
        s("source")?,
        s("problem")?,
        s("reference_answer")?,
    );
    let (reasoning, content, completion, finish_reason) = (
        s("reasoning")?,
        s("content")?,
        s("completion")?,
        s("finish_reason")?,
    );
    let (extracted, verdict, teacher, error) = (
        s("extracted_answer")?,
        s("verdict")?,
        s("teacher")?,
        s("error")?,
    );
    let (sample_index, prompt_tokens, completion_tokens, max_tokens) = (
        u32c("sample_index")?,
        u32c("prompt_tokens")?,
        u32c("completion_tokens")?,
        u32c("max_tokens")?,
    );
    let (seed, latency) = (u64c("seed")?, u64c("latency_ms")?);
    let (temperature, top_p) = (f32c("temperature")?, f32c("top_p")?);
    let created = column::<TimestampMicrosecondArray>(path, batch, "created_at")?;
    let prompt = column::<ListArray>(path, batch, "prompt")?;
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    for i in 0..batch.num_rows() {
        let msgs = prompt.value(i);
        let msgs =
            msgs.as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| TraceError::Column {
                    path: path.to_path_buf(),
                    column: "prompt".into(),
                    problem: "is not a list of {role, content} structs".into(),
                })?;
        let field = |n: &str| {
            msgs.column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| TraceError::Column {
                    path: path.to_path_buf(),
                    column: format!("prompt.{n}"),
                    problem: "is missing or not a string".into(),
                })
        };
        let (roles, contents) = (field("role")?, field("content")?);
        let prompt = (0..msgs.len())
            .map(|j| TraceMessage {
                role: roles.value(j).to_string(),
                content: contents.value(j).to_string(),
            })
            .collect();
        out.push(TraceRow {
            problem_id: problem_id.value(i).to_string(),
            sample_index: sample_index.value(i),
            source: opt(source, i),
            problem: problem.value(i).to_string(),
            reference_answer: reference_answer.value(i).to_string(),
            prompt,
            reasoning: reasoning.value(i).to_string(),
            content: content.value(i).to_string(),
            completion: completion.value(i).to_string(),
            finish_reason: finish_reason.value(i).to_string(),
            prompt_tokens: prompt_tokens.value(i),
            completion_tokens: completion_tokens.value(i),
            extracted_answer: opt(extracted, i),
            verdict: verdict.value(i).to_string(),
            teacher: teacher.value(i).to_string(),
            temperature: temperature.value(i),
            top_p: top_p.value(i),
            max_tokens: max_tokens.value(i),
            seed: seed.value(i),
            latency_ms: latency.value(i),
            error: opt(error, i),
            created_at: created.value(i),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_row(id: &str, k: u32) -> TraceRow {
        TraceRow {
            problem_id: id.into(),
            sample_index: k,
            source: if k.is_multiple_of(2) {
                Some("aime".into())
            } else {
                None
            },
            problem: "What is 1+1?".into(),
            reference_answer: "2".into(),
            prompt: vec![
                TraceMessage {
                    role: "system".into(),
                    content: "be brief".into(),
                },
                TraceMessage {
                    role: "user".into(),
                    content: "What is 1+1?".into(),
                },
            ],
            reasoning: "1+1=2".into(),
            content: "\\boxed{2}".into(),
            completion: "1+1=2\n</think>\n\n\\boxed{2}".into(),
            finish_reason: "stop".into(),
            prompt_tokens: 12,
            completion_tokens: 9,
            extracted_answer: Some("2".into()),
            verdict: "correct".into(),
            teacher: "deepseek-ai/DeepSeek-R1".into(),
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 32768,
            seed: u64::MAX - k as u64,
            latency_ms: 1234,
            error: if k == 1 {
                Some("HTTP 400: bad".into())
            } else {
                None
            },
            created_at: 1_764_000_000_000_000,
        }
    }

    #[test]
    fn shard_round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (0..3).map(|k| sample_row("p1", k)).collect();
        let path = dir.path().join("shard-00000.parquet");
        write_trace_shard(&path, &rows).unwrap();
        assert_eq!(read_trace_file(&path).unwrap(), rows);
        assert_eq!(read_traces(dir.path()).unwrap(), rows);
        // Only the finished shard is visible: no temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn empty_prompt_and_empty_shard() {
        let dir = tempfile::tempdir().unwrap();
        let mut row = sample_row("p", 0);
        row.prompt.clear();
        let path = dir.path().join("a.parquet");
        write_trace_shard(&path, std::slice::from_ref(&row)).unwrap();
        assert_eq!(read_trace_file(&path).unwrap(), vec![row]);
        write_trace_shard(&path, &[]).unwrap();
        assert!(read_trace_file(&path).unwrap().is_empty());
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let bytes = encode_parquet(&[sample_row("p", 0)]).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_trace_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.parquet"), "{err}");
    }
}
