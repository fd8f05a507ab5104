//! Reading training data: conversations (trace, messages or OpenR1 layouts) or pre-tokenised rows.
//!
//! `format = "traces"` accepts, per file, whichever columns it has (first match wins):
//! * `messages` — a list of `{role, content}` whose last turn is the assistant's (our export,
//!   OpenR1-Math-220k, TRL datasets);
//! * `prompt` (list of messages) or `problem`, with `reasoning` + `content` (our trace shards) —
//!   the assistant turn becomes `<think>\n{reasoning}\n</think>\n\n{content}`;
//! * `prompt`/`problem` with `completion`, `generation` or `response` holding the full assistant
//!   text (an opening `<think>\n` is restored when only the closing tag is present).
//!
//! `format = "tokens"` reads `input_ids` and `labels` integer lists (label -100 = not trained).
//!
//! A path may be a file (`.parquet` or `.jsonl`) or a directory: a filter output directory is read
//! through its `messages.parquet` (and only when its `_manifest.json` says it is complete), any other directory as all its `*.parquet` files (or, if none,
//! all `*.jsonl`), sorted by name, hidden/temp files skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Int16Array, Int32Array, Int64Array, LargeListArray, LargeStringArray,
    ListArray, RecordBatch, StringArray, StructArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::build::{Conversation, SftExample, IGNORE_INDEX};
use crate::atomic::AtomicFile;
use crate::export::assistant_content;
use crate::{ChatMessage, DatasetError};

/// On-disk training data format (`[data] format` of the student config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingFormat {
    /// Conversations to render with the student's chat template. Default.
    #[default]
    #[serde(alias = "messages")]
    Traces,
    /// Pre-tokenised `input_ids` + `labels`.
    Tokens,
}

/// What [`load_training_rows`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingData {
    /// Conversations, to be tokenised by [`super::build_examples`].
    Conversations(Vec<Conversation>),
    /// Ready examples (apply [`super::apply_length_policy`] before packing).
    Tokens(Vec<SftExample>),
}

/// The data files behind `path` (see the module docs).
pub fn training_files(path: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(DatasetError::file(path, "no such training file or directory"));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let exported = path.join("messages.parquet");
    if exported.is_file() {
        crate::filter::check_complete_output(path)?;
        return Ok(vec![exported]);
    }
    let by_ext = |ext: &str| -> Result<Vec<PathBuf>, DatasetError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| DatasetError::io(path, e))? {
            let p = entry.map_err(|e| DatasetError::io(path, e))?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !name.starts_with('.') && p.is_file() && p.extension().is_some_and(|e| e == ext) {
                out.push(p);
            }
        }
        out.sort();
        Ok(out)
    };
    let parquet = by_ext("parquet")?;
    let files = if parquet.is_empty() { by_ext("jsonl")? } else { parquet };
    if files.is_empty() {
        return Err(DatasetError::file(path, "directory holds no .parquet or .jsonl files"));
    }
    Ok(files)
}

/// Reads all training rows under `path` in the given format.
pub fn load_training_rows(path: &Path, format: TrainingFormat) -> Result<TrainingData, DatasetError> {
    let mut convs = Vec::new();
    let mut tokens = Vec::new();
    for file in training_files(path)? {
        let is_jsonl = file.extension().is_some_and(|e| e == "jsonl");
        let rows = if is_jsonl { jsonl_rows(&file)? } else { parquet_rows(&file)? };
        for (origin, row) in rows {
            match format {
                TrainingFormat::Traces => convs.push(conversation(row, origin)?),
                TrainingFormat::Tokens => tokens.push(token_example(row, &origin)?),
            }
        }
    }
    Ok(match format {
        TrainingFormat::Traces => TrainingData::Conversations(convs),
        TrainingFormat::Tokens => TrainingData::Tokens(tokens),
    })
}

/// Column values of one row, format-neutral (JSON values; Parquet cells are converted).
type RawRow = serde_json::Map<String, Value>;

fn jsonl_rows(path: &Path) -> Result<Vec<(String, RawRow)>, DatasetError> {
    crate::jsonl::read_jsonl_values(path)?
        .into_iter()
        .map(|(line, v)| match v {
            Value::Object(m) => Ok((format!("{}:{line}", path.display()), m)),
            _ => Err(DatasetError::line(path, line, "expected a JSON object")),
        })
        .collect()
}

/// Columns worth converting (others, e.g. verdicts and timings, are skipped for speed).
const USED_COLUMNS: &[&str] = &[
    "messages", "prompt", "problem", "reasoning", "content", "completion", "generation", "response",
    "answer", "input_ids", "labels",
];

fn parquet_rows(path: &Path) -> Result<Vec<(String, RawRow)>, DatasetError> {
    let fmt = |e: &dyn std::fmt::Display| DatasetError::file(path, e.to_string());
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fmt(&e))?.build().map_err(|e| fmt(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| fmt(&e))?;
        let schema = batch.schema();
        let mut rows: Vec<RawRow> = vec![RawRow::new(); batch.num_rows()];
        for (ci, field) in schema.fields().iter().enumerate() {
            if !USED_COLUMNS.contains(&field.name().as_str()) {
                continue;
            }
            let col = batch.column(ci);
            for (r, row) in rows.iter_mut().enumerate() {
                let v = cell(col, r).map_err(|m| fmt(&format!("column `{}`: {m}", field.name())))?;
                row.insert(field.name().clone(), v);
            }
        }
        let base = out.len();
        out.extend(rows.into_iter().enumerate().map(|(r, row)| (format!("{}:row {}", path.display(), base + r), row)));
    }
    Ok(out)
}

/// One Arrow cell as JSON (strings, integers, lists and structs of them; null stays null).
fn cell(col: &ArrayRef, i: usize) -> Result<Value, String> {
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    let any = col.as_any();
    macro_rules! int {
        ($t:ty) => {
            if let Some(a) = any.downcast_ref::<$t>() {
                return Ok(Value::from(a.value(i)));
            }
        };
    }
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Ok(Value::String(a.value(i).to_string()));
    }
    if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        return Ok(Value::String(a.value(i).to_string()));
    }
    int!(Int64Array);
    int!(Int32Array);
    int!(Int16Array);
    int!(UInt64Array);
    int!(UInt32Array);
    int!(UInt16Array);
    let list = |values: ArrayRef| -> Result<Value, String> {
        (0..values.len()).map(|j| cell(&values, j)).collect::<Result<Vec<_>, _>>().map(Value::Array)
    };
    if let Some(a) = any.downcast_ref::<ListArray>() {
        return list(a.value(i));
    }
    if let Some(a) = any.downcast_ref::<LargeListArray>() {
        return list(a.value(i));
    }
    if let Some(a) = any.downcast_ref::<StructArray>() {
        let mut m = serde_json::Map::new();
        for (name, child) in a.column_names().iter().zip(a.columns()) {
            m.insert(name.to_string(), cell(child, i)?);
        }
        return Ok(Value::Object(m));
    }
    Err(format!("unsupported type {}", col.data_type()))
}

fn messages(v: &Value, origin: &str, column: &str) -> Result<Vec<ChatMessage>, DatasetError> {
    serde_json::from_value::<Vec<ChatMessage>>(v.clone())
        .map_err(|e| DatasetError::Invalid(format!("{origin}: column `{column}`: expected a list of {{role, content}}: {e}")))
}

fn text<'a>(row: &'a RawRow, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

/// Builds the conversation of one row (see the module docs for the accepted layouts).
fn conversation(row: RawRow, origin: String) -> Result<Conversation, DatasetError> {
    if let Some(v) = row.get("messages").filter(|v| !v.is_null()) {
        return Ok(Conversation { messages: messages(v, &origin, "messages")?, origin });
    }
    let mut msgs = match row.get("prompt") {
        Some(Value::String(s)) => vec![ChatMessage::user(s)],
        Some(v @ Value::Array(a)) if !a.is_empty() => messages(v, &origin, "prompt")?,
        _ => match text(&row, "problem") {
            Some(p) => vec![ChatMessage::user(p)],
            None => {
                return Err(DatasetError::Invalid(format!(
                    "{origin}: no `messages`, `prompt` or `problem` column to build the prompt from"
                )))
            }
        },
    };
    let assistant = if let Some(reasoning) = text(&row, "reasoning") {
        let content = text(&row, "content").or_else(|| text(&row, "answer")).unwrap_or("");
        assistant_content(reasoning, content)
    } else if let Some(full) = ["completion", "generation", "response"].iter().find_map(|k| text(&row, k)) {
        let full = full.trim_start();
        if !full.starts_with("<think>") && full.contains("</think>") {
            format!("<think>\n{full}")
        } else {
            full.to_string()
        }
    } else {
        return Err(DatasetError::Invalid(format!(
            "{origin}: no assistant text (`reasoning`+`content`, `completion`, `generation` or `response`)"
        )));
    };
    msgs.push(ChatMessage::assistant(assistant));
    Ok(Conversation { messages: msgs, origin })
}

fn int_list(row: &RawRow, key: &str, origin: &str) -> Result<Vec<i64>, DatasetError> {
    let bad = |m: &str| DatasetError::Invalid(format!("{origin}: column `{key}` {m}"));
    let Some(Value::Array(items)) = row.get(key) else { return Err(bad("is missing or not a list")) };
    items.iter().map(|v| v.as_i64().ok_or_else(|| bad("holds a non-integer"))).collect()
}

fn token_example(row: RawRow, origin: &str) -> Result<SftExample, DatasetError> {
    let ids = int_list(&row, "input_ids", origin)?;
    let labels = int_list(&row, "labels", origin)?;
    if ids.len() != labels.len() {
        return Err(DatasetError::Invalid(format!(
            "{origin}: `input_ids` has {} tokens but `labels` has {}",
            ids.len(),
            labels.len()
        )));
    }
    let input_ids = ids
        .iter()
        .map(|&t| u32::try_from(t).map_err(|_| DatasetError::Invalid(format!("{origin}: `input_ids` holds {t}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(&l) = labels.iter().find(|&&l| l < 0 && l != IGNORE_INDEX) {
        return Err(DatasetError::Invalid(format!("{origin}: `labels` holds {l} (only -100 may be negative)")));
    }
    Ok(SftExample { input_ids, labels })
}

/// Writes examples as a pre-tokenised Parquet file (`input_ids`, `labels`: list<int64>),
/// atomically — the `format = "tokens"` input, readable by pandas/`datasets` too.
pub fn write_token_file(path: &Path, examples: &[SftExample]) -> Result<(), DatasetError> {
    let fmt = |e: &dyn std::fmt::Display| DatasetError::file(path, e.to_string());
    let item = || Arc::new(Field::new("item", DataType::Int64, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("input_ids", DataType::List(item()), false),
        Field::new("labels", DataType::List(item()), false),
    ]));
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(AtomicFile::create(path)?, schema.clone(), Some(props)).map_err(|e| fmt(&e))?;
    for chunk in examples.chunks(1024) {
        let mut ids = ListBuilder::new(Int64Builder::new());
        let mut labels = ListBuilder::new(Int64Builder::new());
        for ex in chunk {
            ex.input_ids.iter().for_each(|&t| ids.values().append_value(i64::from(t)));
            ids.append(true);
            ex.labels.iter().for_each(|&l| labels.values().append_value(l));
            labels.append(true);
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(labels.finish())];
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| fmt(&e))?;
        writer.write(&batch).map_err(|e| fmt(&e))?;
    }
    writer.into_inner().map_err(|e| fmt(&e))?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Value) -> RawRow {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn layouts_become_conversations() {
        let c = conversation(row(serde_json::json!({"problem": "1+1?", "reasoning": "\nadd\n", "content": "2"})), "t".into()).unwrap();
        assert_eq!(c.messages, [ChatMessage::user("1+1?"), ChatMessage::assistant("<think>\nadd\n</think>\n\n2")]);
        let c = conversation(row(serde_json::json!({"problem": "p", "completion": "x\n</think>\n\ny"})), "t".into()).unwrap();
        assert_eq!(c.messages[1].content, "<think>\nx\n</think>\n\ny");
        let err = conversation(row(serde_json::json!({"problem": "p"})), "f.jsonl:3".into()).unwrap_err();
        assert!(err.to_string().starts_with("f.jsonl:3:"), "{err}");
    }

    #[test]
    fn token_rows_are_validated() {
        let ok = token_example(row(serde_json::json!({"input_ids": [1, 2], "labels": [-100, 2]})), "o").unwrap();
        assert_eq!(ok.labels, [-100, 2]);
        assert!(token_example(row(serde_json::json!({"input_ids": [1, 2], "labels": [2]})), "o").is_err());
        assert!(token_example(row(serde_json::json!({"input_ids": [1], "labels": [-5]})), "o").is_err());
        assert!(token_example(row(serde_json::json!({"input_ids": [1]})), "o").is_err());
    }
}
