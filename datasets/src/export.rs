//! Export of filtered traces to the layouts the Python world trains on.
//!
//! Two layouts, both Parquet that pandas/pyarrow/`datasets` open unchanged:
//! * **messages** (one row per sample; also JSONL): a `messages` list of `{role, content}` whose
//!   last turn is the assistant's `<think>\n{reasoning}\n</think>\n\n{content}` — what TRL's
//!   `SFTTrainer`, open-r1's `sft.py` and our own trainer consume.
//! * **OpenR1-Math-220k** (one row per problem): `problem`, `solution`, `answer`, `problem_type`,
//!   `question_type`, `source`, `uuid` and list columns over that problem's generations
//!   (`generations`, `correctness_math_verify`, `is_reasoning_complete`, `finish_reasons`),
//!   `correctness_count`, and `messages` with the first verified generation — so scripts written
//!   for open-r1's dataset run on ours. `solution`, `problem_type` and `question_type` come from the
//!   problem set ([`ProblemExtras`]) and are null where it has none.
//!
//! Message structs are ordered `{content, role}` as in OpenR1-Math-220k (and as `datasets`
//! infers them), so the two concatenate. Files are written through [`ParquetSink`] in row groups
//! of bounded size, to a temp name renamed on completion.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, ListBuilder, StringBuilder, StructBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::chat::r1_math_prompt;
use crate::records::FinishReason;
use crate::traces::TraceRow;
use crate::{ChatMessage, DatasetError};

/// Rows per Parquet record batch / row group of the messages layout; bounds the memory of the
/// Arrow copy and of the writer's open row group.
const BATCH_ROWS: usize = 1024;

/// Problems per row group of the OpenR1 layout (each lists all its generations).
const OPENR1_BATCH_ROWS: usize = 64;

/// Where the user side of an exported conversation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// The messages the teacher was sent (`prompt` column), so the student learns to answer the
    /// question exactly as asked; falls back to `problem` when a row has no prompt. Default.
    #[default]
    Trace,
    /// The bare problem statement as the single user message (OpenR1-Math-220k's convention).
    Problem,
    /// The problem plus the R1 math instruction ("Please reason step by step, …").
    R1Math,
}

/// The assistant turn in R1 layout: `<think>\n{reasoning}\n</think>\n\n{content}`, with the parts
/// trimmed so servers that keep surrounding newlines do not produce doubled blank lines.
pub fn assistant_content(reasoning: &str, content: &str) -> String {
    format!("<think>\n{}\n</think>\n\n{}", reasoning.trim(), content.trim())
}

/// The prompt messages of a trace row under `source` (no assistant turn).
pub fn prompt_messages(row: &TraceRow, source: PromptSource) -> Vec<ChatMessage> {
    match source {
        PromptSource::Trace if !row.prompt.is_empty() => {
            row.prompt.iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect()
        }
        PromptSource::Trace | PromptSource::Problem => vec![ChatMessage::user(&row.problem)],
        PromptSource::R1Math => vec![ChatMessage::user(r1_math_prompt(&row.problem))],
    }
}

/// The full training conversation of a trace row: prompt messages then the R1 assistant turn.
pub fn conversation(row: &TraceRow, source: PromptSource) -> Vec<ChatMessage> {
    let mut messages = prompt_messages(row, source);
    messages.push(ChatMessage::assistant(assistant_content(&row.reasoning, &row.content)));
    messages
}

/// One row of the messages layout. Field names are the column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRecord {
    /// The conversation; the last message is the assistant turn trained on.
    pub messages: Vec<ChatMessage>,
    /// Problem id of the originating trace.
    pub problem_id: String,
    /// Sample index of the originating trace.
    pub sample_index: u32,
    /// Problem origin, if known.
    pub source: Option<String>,
    /// Problem statement (for inspection and decontamination audits).
    pub problem: String,
    /// Gold answer.
    pub answer: String,
    /// Teacher model that produced the trace.
    pub teacher: String,
    /// Generated tokens as the teacher's server counted them.
    pub completion_tokens: u32,
}

impl MessagesRecord {
    /// The record for one trace row.
    pub fn from_trace(row: &TraceRow, source: PromptSource) -> Self {
        Self {
            messages: conversation(row, source),
            problem_id: row.problem_id.clone(),
            sample_index: row.sample_index,
            source: row.source.clone(),
            problem: row.problem.clone(),
            answer: row.reference_answer.clone(),
            teacher: row.teacher.clone(),
            completion_tokens: row.completion_tokens,
        }
    }
}

/// One row of the OpenR1-Math-220k layout. Field names are the column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenR1Record {
    /// Problem statement.
    pub problem: String,
    /// Reference solution from the problem set (null when it has none).
    pub solution: Option<String>,
    /// Gold answer.
    pub answer: String,
    /// Problem type (OpenR1: e.g. `Algebra`) from the problem set, if it has one.
    pub problem_type: Option<String>,
    /// Question type (OpenR1: e.g. `math-word-problem`) from the problem set, if it has one.
    pub question_type: Option<String>,
    /// Problem origin, if known.
    pub source: Option<String>,
    /// Stable id derived from `(source, problem_id)` (RFC 9562 version-8 layout over SHA-256).
    pub uuid: String,
    /// Our problem id (not in the original dataset; kept for joins back to traces).
    pub problem_id: String,
    /// Assistant texts in R1 layout, one per generation.
    pub generations: Vec<String>,
    /// Grader verdict per generation (`verdict == "correct"`).
    pub correctness_math_verify: Vec<bool>,
    /// Whether each generation finished on its own (`finish_reason == "stop"`).
    pub is_reasoning_complete: Vec<bool>,
    /// Finish reason per generation.
    pub finish_reasons: Vec<String>,
    /// Number of verified-correct generations.
    pub correctness_count: i64,
    /// The conversation of the first correct generation (the first one when none is).
    pub messages: Vec<ChatMessage>,
}

/// Deterministic UUID-shaped id for a problem: SHA-256 of `source \0 problem_id`, laid out as an
/// RFC 9562 version-8 UUID so tools that validate UUIDs accept it.
pub fn problem_uuid(source: Option<&str>, problem_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(source.unwrap_or("").as_bytes());
    h.update([0u8]);
    h.update(problem_id.as_bytes());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// Groups rows (already in output order) by problem into OpenR1 records, problems in order of
/// first appearance.
pub fn openr1_records(rows: &[&TraceRow], source: PromptSource) -> Vec<OpenR1Record> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: std::collections::HashMap<&str, Vec<&TraceRow>> = std::collections::HashMap::new();
    for row in rows {
        let g = groups.entry(row.problem_id.as_str()).or_default();
        if g.is_empty() {
            order.push(row.problem_id.as_str());
        }
        g.push(row);
    }
    order
        .into_iter()
        .map(|id| {
            let g = &groups[id];
            let first = g[0];
            let correct: Vec<bool> = g.iter().map(|r| r.correct()).collect();
            let best = g.iter().zip(&correct).find(|&(_, &c)| c).map(|(r, _)| *r).unwrap_or(first);
            OpenR1Record {
                problem: first.problem.clone(),
                solution: None,
                answer: first.reference_answer.clone(),
                problem_type: None,
                question_type: None,
                source: first.source.clone(),
                uuid: problem_uuid(first.source.as_deref(), &first.problem_id),
                problem_id: first.problem_id.clone(),
                generations: g.iter().map(|r| assistant_content(&r.reasoning, &r.content)).collect(),
                correctness_count: correct.iter().filter(|&&c| c).count() as i64,
                correctness_math_verify: correct,
                is_reasoning_complete: g.iter().map(|r| r.finish_reason == FinishReason::Stop).collect(),
                finish_reasons: g.iter().map(|r| r.finish_reason.as_str().to_string()).collect(),
                messages: conversation(best, source),
            }
        })
        .collect()
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("content", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
    ])
}

fn messages_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(message_fields()), true)))
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// Arrow schema of the messages layout.
pub fn messages_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("messages", messages_type(), false),
        Field::new("problem_id", DataType::Utf8, false),
        Field::new("sample_index", DataType::UInt32, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("problem", DataType::Utf8, false),
        Field::new("answer", DataType::Utf8, false),
        Field::new("teacher", DataType::Utf8, false),
        Field::new("completion_tokens", DataType::UInt32, false),
    ]))
}

/// Arrow schema of the OpenR1-Math-220k layout.
pub fn openr1_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("problem", DataType::Utf8, false),
        Field::new("solution", DataType::Utf8, true),
        Field::new("answer", DataType::Utf8, false),
        Field::new("problem_type", DataType::Utf8, true),
        Field::new("question_type", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("uuid", DataType::Utf8, false),
        Field::new("problem_id", DataType::Utf8, false),
        Field::new("generations", list_of(DataType::Utf8), false),
        Field::new("correctness_math_verify", list_of(DataType::Boolean), false),
        Field::new("is_reasoning_complete", list_of(DataType::Boolean), false),
        Field::new("finish_reasons", list_of(DataType::Utf8), false),
        Field::new("correctness_count", DataType::Int64, false),
        Field::new("messages", messages_type(), false),
    ]))
}

fn messages_array<'a>(rows: impl Iterator<Item = &'a [ChatMessage]>) -> ArrayRef {
    let mut b = ListBuilder::new(StructBuilder::new(
        message_fields(),
        vec![Box::new(StringBuilder::new()), Box::new(StringBuilder::new())],
    ))
    .with_field(Arc::new(Field::new("item", DataType::Struct(message_fields()), true)));
    for msgs in rows {
        let values = b.values();
        for m in msgs {
            values.field_builder::<StringBuilder>(0).expect("content").append_value(&m.content);
            values.field_builder::<StringBuilder>(1).expect("role").append_value(&m.role);
            values.append(true);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn string_list<'a>(rows: impl Iterator<Item = &'a [String]>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for items in rows {
        for s in items {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn bool_list<'a>(rows: impl Iterator<Item = &'a [bool]>) -> ArrayRef {
    let mut b = ListBuilder::new(BooleanBuilder::new());
    for items in rows {
        for &v in items {
            b.values().append_value(v);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn messages_batch(rows: &[MessagesRecord]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut idx = UInt32Builder::with_capacity(rows.len());
    rows.iter().for_each(|r| idx.append_value(r.sample_index));
    let columns: Vec<ArrayRef> = vec![
        messages_array(rows.iter().map(|r| r.messages.as_slice())),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.problem_id))),
        Arc::new(idx.finish()),
        Arc::new(rows.iter().map(|r| r.source.as_deref()).collect::<StringArray>()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.problem))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.answer))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.teacher))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.completion_tokens))),
    ];
    RecordBatch::try_new(messages_schema(), columns)
}

fn openr1_batch(rows: &[OpenR1Record]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.problem))),
        Arc::new(rows.iter().map(|r| r.solution.as_deref()).collect::<StringArray>()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.answer))),
        Arc::new(rows.iter().map(|r| r.problem_type.as_deref()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| r.question_type.as_deref()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| r.source.as_deref()).collect::<StringArray>()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.uuid))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.problem_id))),
        string_list(rows.iter().map(|r| r.generations.as_slice())),
        bool_list(rows.iter().map(|r| r.correctness_math_verify.as_slice())),
        bool_list(rows.iter().map(|r| r.is_reasoning_complete.as_slice())),
        string_list(rows.iter().map(|r| r.finish_reasons.as_slice())),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.correctness_count))),
        messages_array(rows.iter().map(|r| r.messages.as_slice())),
    ];
    RecordBatch::try_new(openr1_schema(), columns)
}

/// A Parquet file written record by record: rows are buffered up to a batch, each batch is one
/// row group (so neither the buffer nor the writer ever holds more than a batch), and the file
/// appears under its name only on [`ParquetSink::finish`].
pub struct ParquetSink<T> {
    path: PathBuf,
    writer: ArrowWriter<AtomicFile>,
    pending: Vec<T>,
    batch_rows: usize,
    to_batch: fn(&[T]) -> Result<RecordBatch, arrow_schema::ArrowError>,
}

impl<T> ParquetSink<T> {
    fn create(
        path: &Path,
        schema: SchemaRef,
        batch_rows: usize,
        to_batch: fn(&[T]) -> Result<RecordBatch, arrow_schema::ArrowError>,
    ) -> Result<Self, DatasetError> {
        let file = AtomicFile::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(batch_rows)
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| DatasetError::file(path, e.to_string()))?;
        Ok(Self { path: path.to_path_buf(), writer, pending: Vec::with_capacity(batch_rows), batch_rows, to_batch })
    }

    /// Appends one row.
    pub fn push(&mut self, row: T) -> Result<(), DatasetError> {
        self.pending.push(row);
        if self.pending.len() >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DatasetError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let fmt = |e: &dyn std::fmt::Display| DatasetError::file(&self.path, e.to_string());
        let batch = (self.to_batch)(&self.pending).map_err(|e| fmt(&e))?;
        self.writer.write(&batch).map_err(|e| fmt(&e))?;
        self.writer.flush().map_err(|e| fmt(&e))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the remaining rows and the footer, then renames the file into place.
    pub fn finish(mut self) -> Result<(), DatasetError> {
        self.flush()?;
        let file = self.writer.into_inner().map_err(|e| DatasetError::file(&self.path, e.to_string()))?;
        file.commit()
    }
}

/// A writer of the messages layout at `path`.
pub fn messages_sink(path: &Path) -> Result<ParquetSink<MessagesRecord>, DatasetError> {
    ParquetSink::create(path, messages_schema(), BATCH_ROWS, messages_batch)
}

/// A writer of the OpenR1-Math-220k layout at `path`.
pub fn openr1_sink(path: &Path) -> Result<ParquetSink<OpenR1Record>, DatasetError> {
    ParquetSink::create(path, openr1_schema(), OPENR1_BATCH_ROWS, openr1_batch)
}

/// Writes the messages layout as Parquet (atomically).
pub fn write_messages_parquet(path: &Path, rows: &[MessagesRecord]) -> Result<(), DatasetError> {
    let mut sink = messages_sink(path)?;
    rows.iter().try_for_each(|r| sink.push(r.clone()))?;
    sink.finish()
}

/// Writes the OpenR1-Math-220k layout as Parquet (atomically).
pub fn write_openr1_parquet(path: &Path, rows: &[OpenR1Record]) -> Result<(), DatasetError> {
    let mut sink = openr1_sink(path)?;
    rows.iter().try_for_each(|r| sink.push(r.clone()))?;
    sink.finish()
}

/// What a problem set knows about a problem beyond statement and answer, for the OpenR1 layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProblemExtras {
    /// Reference solution (`solution` column).
    pub solution: Option<String>,
    /// `problem_type` column.
    pub problem_type: Option<String>,
    /// `question_type` column.
    pub question_type: Option<String>,
}

impl ProblemExtras {
    /// The extras of a loaded problem (its `solution`, `problem_type`, `question_type` columns;
    /// numbers are written as text, other JSON values ignored).
    pub fn of(problem: &crate::Problem) -> Self {
        let get = |k: &str| match problem.extra.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Self { solution: get("solution"), problem_type: get("problem_type"), question_type: get("question_type") }
    }

    /// Copies the extras into an OpenR1 record.
    pub fn fill(&self, record: &mut OpenR1Record) {
        record.solution.clone_from(&self.solution);
        record.problem_type.clone_from(&self.problem_type);
        record.question_type.clone_from(&self.question_type);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assistant_turn_is_r1_layout() {
        assert_eq!(assistant_content("\nI think.\n", "\n\\boxed{4}\n"), "<think>\nI think.\n</think>\n\n\\boxed{4}");
    }

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let u = problem_uuid(Some("aime"), "p1");
        assert_eq!(u, problem_uuid(Some("aime"), "p1"));
        assert_ne!(u, problem_uuid(None, "p1"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}
