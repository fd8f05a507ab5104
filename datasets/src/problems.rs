//! Problem sets: the input of teacher sampling and evaluation. JSONL (`.jsonl`, `.ndjson`), a
//! JSON array (`.json`) or Parquet (`.parquet`), with configurable column names, so that
//! AIME/MATH-500/OpenR1-style files are read as they are published.

use crate::DatasetError;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// One problem. `id` is the stable identity samples are keyed on (a resumed run matches on it),
/// `answer` the gold answer as the grader reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Unique id within the set (numbers are coerced to strings).
    pub id: String,
    /// The problem statement.
    pub problem: String,
    /// Gold answer as a string (numbers coerced).
    pub answer: String,
    /// Where the problem comes from (benchmark or dataset name), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Every other column, kept for reports (e.g. MATH-500 `subject`, `level`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// Which columns hold what. Defaults: `id`, `problem`, `answer`, `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProblemColumns {
    /// Column with the unique id; `None` numbers rows `<file stem>-<row>` (0-based) instead.
    pub id: Option<String>,
    /// Column with the problem text (default `problem`).
    pub problem: String,
    /// Column with the gold answer (default `answer`).
    pub answer: String,
    /// Column with the source name (default `source`); a missing column is not an error.
    pub source: Option<String>,
    /// Source name used when the row has none (default: none).
    pub default_source: Option<String>,
}

impl Default for ProblemColumns {
    fn default() -> Self {
        ProblemColumns {
            id: Some("id".into()),
            problem: "problem".into(),
            answer: "answer".into(),
            source: Some("source".into()),
            default_source: None,
        }
    }
}

/// Load a problem set, choosing the format by extension. Every error names the file and, for
/// JSON Lines, the line (for Parquet, the 1-based row). Ids must be unique.
pub fn load_problems(path: &Path, columns: &ProblemColumns) -> Result<Vec<Problem>, DatasetError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let rows: Vec<(usize, Value)> = match ext.as_str() {
        "jsonl" | "ndjson" => crate::jsonl::read_jsonl_values(path)?,
        "json" => read_json_array(path)?,
        "parquet" => read_parquet_rows(path)?,
        _ => {
            return Err(DatasetError::file(
                path,
                "unknown problem-set format (expected .jsonl, .ndjson, .json or .parquet)",
            ))
        }
    };
    problems_from_rows(path, rows, columns)
}

/// Parse a JSON Lines problem set held in memory (e.g. a benchmark embedded in the binary);
/// `origin` names it in errors exactly as a file path would.
pub fn parse_problems_jsonl(
    text: &str,
    origin: &Path,
    columns: &ProblemColumns,
) -> Result<Vec<Problem>, DatasetError> {
    let rows = crate::jsonl::parse_jsonl_values(text.as_bytes(), origin)?;
    problems_from_rows(origin, rows, columns)
}

/// Rows (with their line numbers) to problems, checking that ids are unique.
fn problems_from_rows(
    path: &Path,
    rows: Vec<(usize, Value)>,
    columns: &ProblemColumns,
) -> Result<Vec<Problem>, DatasetError> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (index, (line, row)) in rows.into_iter().enumerate() {
        let p = row_to_problem(path, line, index, &stem, row, columns)?;
        if let Some(prev) = seen.insert(p.id.clone(), line) {
            return Err(DatasetError::line(
                path,
                line,
                format!("duplicate id {:?} (first seen at line {prev})", p.id),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

fn read_json_array(path: &Path) -> Result<Vec<(usize, Value)>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect()),
        Ok(_) => Err(DatasetError::file(path, "expected a JSON array of objects")),
        Err(e) => Err(DatasetError::line(
            path,
            e.line(),
            format!("invalid JSON: {e}"),
        )),
    }
}

/// A scalar cell as the string the rest of the pipeline uses (`12` → "12", `0.5` → "0.5").
fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn row_to_problem(
    path: &Path,
    line: usize,
    index: usize,
    stem: &str,
    row: Value,
    cols: &ProblemColumns,
) -> Result<Problem, DatasetError> {
    let Value::Object(mut obj) = row else {
        return Err(DatasetError::line(path, line, "expected a JSON object"));
    };
    let mut take = |key: &str, required: bool| -> Result<Option<String>, DatasetError> {
        match obj.remove(key) {
            None | Some(Value::Null) if !required => Ok(None),
            None => Err(DatasetError::line(
                path,
                line,
                format!("missing column `{key}`"),
            )),
            Some(Value::Null) => Err(DatasetError::line(
                path,
                line,
                format!("column `{key}` is null"),
            )),
            Some(v) => scalar_to_string(&v).map(Some).ok_or_else(|| {
                DatasetError::line(
                    path,
                    line,
                    format!("column `{key}`: expected a string or number, got {v}"),
                )
            }),
        }
    };
    let id = match &cols.id {
        Some(col) => take(col, true)?.unwrap_or_default(),
        None => format!("{stem}-{index}"),
    };
    let problem = take(&cols.problem, true)?.unwrap_or_default();
    let answer = take(&cols.answer, true)?.unwrap_or_default();
    let source = match &cols.source {
        Some(col) => take(col, false)?,
        None => None,
    }
    .or_else(|| cols.default_source.clone());
    if id.trim().is_empty() {
        return Err(DatasetError::line(path, line, "empty id"));
    }
    if problem.trim().is_empty() {
        return Err(DatasetError::line(
            path,
            line,
            format!("column `{}` is empty", cols.problem),
        ));
    }
    Ok(Problem {
        id,
        problem,
        answer,
        source,
        extra: obj,
    })
}

fn read_parquet_rows(path: &Path) -> Result<Vec<(usize, Value)>, DatasetError> {
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DatasetError::file(path, format!("not a readable Parquet file: {e}")))?;
    let reader = builder
        .build()
        .map_err(|e| DatasetError::file(path, e.to_string()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| DatasetError::file(path, format!("reading Parquet: {e}")))?;
        append_batch_rows(path, &batch, &mut rows)?;
    }
    Ok(rows)
}

fn append_batch_rows(
    path: &Path,
    batch: &RecordBatch,
    rows: &mut Vec<(usize, Value)>,
) -> Result<(), DatasetError> {
    let schema = batch.schema();
    let start = rows.len();
    for r in 0..batch.num_rows() {
        rows.push((start + r + 1, Value::Object(Map::new())));
    }
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        for r in 0..batch.num_rows() {
            let v = cell_to_json(col, r).map_err(|m| {
                DatasetError::line(
                    path,
                    start + r + 1,
                    format!("column `{}`: {m}", field.name()),
                )
            })?;
            if let Value::Object(o) = &mut rows[start + r].1 {
                o.insert(field.name().clone(), v);
            }
        }
    }
    Ok(())
}

/// One Arrow cell as JSON (scalars, strings, lists and structs of them).
pub fn cell_to_json(col: &ArrayRef, row: usize) -> Result<Value, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if col.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match col.data_type() {
        DataType::Utf8 => Value::from(col.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::from(col.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::from(col.as_string_view().value(row)),
        DataType::Boolean => Value::from(col.as_boolean().value(row)),
        DataType::Int8 => Value::from(col.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(col.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(col.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(col.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(col.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float_json(col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float_json(col.as_primitive::<Float64Type>().value(row)),
        DataType::List(_) => list_json(&col.as_list::<i32>().value(row))?,
        DataType::LargeList(_) => list_json(&col.as_list::<i64>().value(row))?,
        DataType::Struct(fields) => {
            let s = col.as_struct();
            let mut m = Map::new();
            for (f, c) in fields.iter().zip(s.columns()) {
                m.insert(f.name().clone(), cell_to_json(c, row)?);
            }
            Value::Object(m)
        }
        other => return Err(format!("unsupported Arrow type {other}")),
    })
}

/// Floats that are whole numbers print without a fraction (`12.0` → 12) so answers stored as
/// doubles by pandas still read as integers.
fn float_json(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

fn list_json(values: &ArrayRef) -> Result<Value, String> {
    (0..values.len())
        .map(|i| cell_to_json(values, i))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Write problems as JSONL (id, problem, answer, source, extra columns flattened back in),
/// atomically — the same layout [`load_problems`] reads with default columns.
pub fn write_problems_jsonl(path: &Path, problems: &[Problem]) -> Result<(), DatasetError> {
    let rows: Vec<Value> = problems
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("id".into(), Value::from(p.id.clone()));
            m.insert("problem".into(), Value::from(p.problem.clone()));
            m.insert("answer".into(), Value::from(p.answer.clone()));
            if let Some(s) = &p.source {
                m.insert("source".into(), Value::from(s.clone()));
            }
            for (k, v) in &p.extra {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Value::Object(m)
        })
        .collect();
    crate::jsonl::write_jsonl(path, &rows)
}
