//! Teacher trace rows: the Parquet schema written by `distill teacher sample` and read by
//! `distill data filter` and the student trainer.
//!
//! One row per sample (problem × sample index): a [`SampleRecord`] (the columns eval records
//! share) plus the trace's own columns, through the generic shard codec of
//! [`crate::records::shards`]. Shards are written whole to a hidden temp file, fsynced and
//! renamed, so a directory only ever holds complete, readable Parquet files — the property
//! crash-safe resume relies on. Column names and types are chosen so pandas/pyarrow
//! read the files without help (`prompt` is the HF messages layout, `created_at` a UTC
//! timestamp).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder, TimestampMicrosecondBuilder};
use arrow_array::{
    Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};

use crate::records::columns::{column, opt_str, opt_strings, strings};
use crate::records::sample::{sample_field, SampleColumns};
use crate::records::shards::{self, ShardRecord};
use crate::records::{RecordsError, SampleRecord};

/// Version of the trace schema, stored in each file's key-value metadata and in the run
/// manifest; bump it when a column changes meaning.
pub const TRACE_SCHEMA_VERSION: u32 = 1;

/// Parquet key-value metadata key holding [`TRACE_SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "distill.trace_schema_version";

/// One prompt message (`role`, `content`), the element type of the `prompt` list column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

/// One teacher sample with everything needed to filter, train on and audit it: the shared
/// [`SampleRecord`] columns (reachable directly, e.g. `row.verdict`, through `Deref`) plus the
/// problem, the prompt and the generated text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceRow {
    /// Identity, grade, generation facts and sampling parameters.
    #[serde(flatten)]
    pub sample: SampleRecord,
    /// Origin of the problem (dataset/subset), when the input has one.
    pub source: Option<String>,
    /// Problem statement.
    pub problem: String,
    /// Messages sent to the teacher (HF messages layout).
    pub prompt: Vec<TraceMessage>,
    /// Thinking part of the response.
    pub reasoning: String,
    /// Answer part after the reasoning.
    pub content: String,
    /// Full generated text as the model produced it.
    pub completion: String,
    /// Teacher model name.
    pub teacher: String,
    /// Completion time, microseconds since the Unix epoch (UTC).
    pub created_at: i64,
}

impl Deref for TraceRow {
    type Target = SampleRecord;
    fn deref(&self) -> &SampleRecord {
        &self.sample
    }
}

impl DerefMut for TraceRow {
    fn deref_mut(&mut self) -> &mut SampleRecord {
        &mut self.sample
    }
}

/// The Arrow schema of a trace file (column order is the documented one).
pub fn trace_schema() -> SchemaRef {
    let shared = |n: &str| sample_field(n).expect("shared column");
    let utf8 = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        shared("problem_id"),
        shared("sample_index"),
        utf8("source", true),
        utf8("problem", false),
        shared("reference_answer"),
        Field::new(
            "prompt",
            DataType::List(Arc::new(message_item_field())),
            false,
        ),
        utf8("reasoning", false),
        utf8("content", false),
        utf8("completion", false),
        shared("finish_reason"),
        shared("prompt_tokens"),
        shared("completion_tokens"),
        shared("extracted_answer"),
        shared("verdict"),
        utf8("teacher", false),
        shared("temperature"),
        shared("top_p"),
        shared("max_tokens"),
        shared("seed"),
        shared("latency_ms"),
        shared("error"),
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

fn prompt_column(rows: &[TraceRow]) -> ArrayRef {
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
    Arc::new(prompt.finish())
}

impl ShardRecord for TraceRow {
    fn schema() -> SchemaRef {
        trace_schema()
    }

    fn metadata() -> Vec<KeyValue> {
        vec![KeyValue::new(
            SCHEMA_VERSION_KEY.to_string(),
            TRACE_SCHEMA_VERSION.to_string(),
        )]
    }

    fn sample(&self) -> &SampleRecord {
        &self.sample
    }

    fn own_column(name: &str, rows: &[Self]) -> Option<ArrayRef> {
        let it = || rows.iter();
        Some(match name {
            "source" => opt_strings(it().map(|r| r.source.as_deref())),
            "problem" => strings(it().map(|r| r.problem.as_str())),
            "prompt" => prompt_column(rows),
            "reasoning" => strings(it().map(|r| r.reasoning.as_str())),
            "content" => strings(it().map(|r| r.content.as_str())),
            "completion" => strings(it().map(|r| r.completion.as_str())),
            "teacher" => strings(it().map(|r| r.teacher.as_str())),
            "created_at" => {
                let mut b =
                    TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                it().for_each(|r| b.append_value(r.created_at));
                Arc::new(b.finish())
            }
            _ => return None,
        })
    }

    fn decode(path: &Path, batch: &RecordBatch, out: &mut Vec<Self>) -> Result<(), RecordsError> {
        let shared = SampleColumns::new(path, batch)?;
        let s = |n| column::<StringArray>(path, batch, n);
        let (source, problem, teacher) = (s("source")?, s("problem")?, s("teacher")?);
        let (reasoning, content, completion) = (s("reasoning")?, s("content")?, s("completion")?);
        let created = column::<TimestampMicrosecondArray>(path, batch, "created_at")?;
        let prompt = column::<ListArray>(path, batch, "prompt")?;
        for i in 0..batch.num_rows() {
            out.push(TraceRow {
                sample: shared.row(i)?,
                source: opt_str(source, i),
                problem: problem.value(i).to_string(),
                prompt: prompt_messages(path, &prompt.value(i))?,
                reasoning: reasoning.value(i).to_string(),
                content: content.value(i).to_string(),
                completion: completion.value(i).to_string(),
                teacher: teacher.value(i).to_string(),
                created_at: created.value(i),
            });
        }
        Ok(())
    }
}

fn prompt_messages(path: &Path, msgs: &ArrayRef) -> Result<Vec<TraceMessage>, RecordsError> {
    let bad = |column: String, problem: &str| RecordsError::Column {
        path: path.to_path_buf(),
        column,
        problem: problem.into(),
    };
    let msgs = msgs
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| bad("prompt".into(), "is not a list of {role, content} structs"))?;
    let field = |n: &str| {
        msgs.column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad(format!("prompt.{n}"), "is missing or not a string"))
    };
    let (roles, contents) = (field("role")?, field("content")?);
    Ok((0..msgs.len())
        .map(|j| TraceMessage {
            role: roles.value(j).to_string(),
            content: contents.value(j).to_string(),
        })
        .collect())
}

/// Writes `rows` as the shard `path` atomically (temp file, fsync, rename).
pub fn write_trace_shard(path: &Path, rows: &[TraceRow]) -> Result<(), RecordsError> {
    shards::write_shard(path, rows)
}

/// Reads every row of one trace file.
pub fn read_trace_file(path: &Path) -> Result<Vec<TraceRow>, RecordsError> {
    shards::read_shard(path)
}

/// Reads one trace file a record batch at a time (about 1,024 rows each), so that a large
/// file is never whole in memory (`distill data filter` streams its inputs through this).
pub fn read_trace_batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<TraceRow>, RecordsError>>, RecordsError> {
    shards::read_shard_batches(path)
}

/// The completed shard files of a trace directory, sorted by name (hidden temp files and
/// non-Parquet files such as `_manifest.json` are skipped).
pub fn list_trace_shards(dir: &Path) -> Result<Vec<PathBuf>, RecordsError> {
    shards::list_shards(dir)
}

/// Reads all rows of a trace directory (every shard) or of a single trace file.
pub fn read_traces(path: &Path) -> Result<Vec<TraceRow>, RecordsError> {
    if path.is_dir() {
        shards::read_shard_dir(path)
    } else {
        read_trace_file(path)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use arrow_array::{Float32Array, UInt32Array, UInt64Array};
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::records::{FinishReason, Verdict};

    pub(crate) fn sample_row(id: &str, k: u32) -> TraceRow {
        TraceRow {
            sample: SampleRecord {
                problem_id: id.into(),
                sample_index: k,
                reference_answer: "2".into(),
                extracted_answer: Some("2".into()),
                verdict: Verdict::Correct,
                prompt_tokens: 12,
                completion_tokens: 9,
                finish_reason: FinishReason::Stop,
                seed: u64::MAX - k as u64,
                temperature: 0.6,
                top_p: 0.95,
                max_tokens: 32768,
                latency_ms: 1234,
                error: if k == 1 {
                    Some("HTTP 400: bad".into())
                } else {
                    None
                },
            },
            source: if k.is_multiple_of(2) {
                Some("aime".into())
            } else {
                None
            },
            problem: "What is 1+1?".into(),
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
            teacher: "deepseek-ai/DeepSeek-R1".into(),
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
        let bytes = shards::encode_parquet(&[sample_row("p", 0)]).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_trace_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.parquet"), "{err}");
    }

    /// A shard as the pre-records code wrote it: the schema spelled out column by column, with
    /// verdict and finish reason as plain strings (including `error` rows).
    fn write_old_format(path: &Path) {
        let utf8 = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
        let u32f = |n: &str| Field::new(n, DataType::UInt32, false);
        let u64f = |n: &str| Field::new(n, DataType::UInt64, false);
        let f32f = |n: &str| Field::new(n, DataType::Float32, false);
        let item = Field::new("item", DataType::Struct(message_fields()), true);
        let schema = Arc::new(Schema::new(vec![
            utf8("problem_id", false),
            u32f("sample_index"),
            utf8("source", true),
            utf8("problem", false),
            utf8("reference_answer", false),
            Field::new("prompt", DataType::List(Arc::new(item)), false),
            utf8("reasoning", false),
            utf8("content", false),
            utf8("completion", false),
            utf8("finish_reason", false),
            u32f("prompt_tokens"),
            u32f("completion_tokens"),
            utf8("extracted_answer", true),
            utf8("verdict", false),
            utf8("teacher", false),
            f32f("temperature"),
            f32f("top_p"),
            u32f("max_tokens"),
            u64f("seed"),
            u64f("latency_ms"),
            utf8("error", true),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let s = |v: [&str; 2]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let so = |v: [Option<&str>; 2]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let mut prompt_rows = sample_row("p", 0);
        prompt_rows.prompt.truncate(1);
        let prompt = prompt_column(&[prompt_rows.clone(), prompt_rows]);
        let mut created = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        created.append_value(1);
        created.append_value(2);
        let columns: Vec<ArrayRef> = vec![
            s(["a", "b"]),
            Arc::new(UInt32Array::from(vec![0, 1])),
            so([Some("src"), None]),
            s(["1+1?", "2+2?"]),
            s(["2", "4"]),
            prompt,
            s(["r", ""]),
            s(["\\boxed{2}", ""]),
            s(["r\n</think>\n\n\\boxed{2}", ""]),
            s(["length", "error"]),
            Arc::new(UInt32Array::from(vec![5, 0])),
            Arc::new(UInt32Array::from(vec![7, 0])),
            so([Some("2"), None]),
            s(["unparseable_gold", "error"]),
            s(["t", "t"]),
            Arc::new(Float32Array::from(vec![0.6, 0.6])),
            Arc::new(Float32Array::from(vec![0.95, 0.95])),
            Arc::new(UInt32Array::from(vec![64, 64])),
            Arc::new(UInt64Array::from(vec![u64::MAX, 3])),
            Arc::new(UInt64Array::from(vec![10, 20])),
            so([None, Some("HTTP 400: bad")]),
            Arc::new(created.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut w = ArrowWriter::try_new(fs::File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn files_written_by_the_old_code_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-00000.parquet");
        write_old_format(&path);
        let rows = read_trace_file(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].verdict, Verdict::UnparseableGold);
        assert_eq!(rows[0].finish_reason, FinishReason::Length);
        assert_eq!(rows[0].seed, u64::MAX, "64-bit seeds of old teacher runs read back");
        assert_eq!(rows[1].verdict, Verdict::Error);
        assert_eq!(rows[1].finish_reason, FinishReason::Error);
        assert_eq!(rows[1].error.as_deref(), Some("HTTP 400: bad"));
        // Rewritten by the new code, the file has the same schema and the same strings.
        let again = dir.path().join("part-00001.parquet");
        write_trace_shard(&again, &rows).unwrap();
        assert_eq!(read_trace_file(&again).unwrap(), rows);
        let old = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            fs::File::open(&path).unwrap(),
        )
        .unwrap();
        let new = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            fs::File::open(&again).unwrap(),
        )
        .unwrap();
        assert_eq!(old.schema().fields(), new.schema().fields());
    }

    #[test]
    fn unknown_verdict_names_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let batch = to_old_batch_with_verdict("maybe");
        let schema = batch.schema();
        let mut w = ArrowWriter::try_new(fs::File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let err = read_trace_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x.parquet") && msg.contains("row 0") && msg.contains("verdict"), "{msg}");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(cause, "unknown verdict `maybe`");
    }

    fn to_old_batch_with_verdict(verdict: &str) -> RecordBatch {
        let batch = shards::to_batch(&[sample_row("p", 0)]).unwrap();
        let idx = batch.schema().index_of("verdict").unwrap();
        let mut cols = batch.columns().to_vec();
        cols[idx] = Arc::new(StringArray::from(vec![verdict]));
        RecordBatch::try_new(batch.schema(), cols).unwrap()
    }
}
