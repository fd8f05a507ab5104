//! The benchmark registry: AIME 2024, AIME 2025 and MATH-500 ship inside the binary (the JSONL
//! files in `eval/benchmarks/`, provenance in `eval/benchmarks/SOURCES.md`), so an eval run
//! works from any directory; any other JSONL/Parquet problem file with configurable columns is
//! loaded the same way.

use std::path::Path;

use serde_json::Value;

use crate::EvalError;

/// One benchmark problem as the evaluator needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalProblem {
    /// Stable id (sample identity and per-problem agreement use it).
    pub id: String,
    /// Problem statement inserted into the prompt template.
    pub problem: String,
    /// Gold answer text handed to the grader.
    pub answer: String,
    /// Subject, when the set has one (MATH-500), for breakdowns.
    pub subject: Option<String>,
    /// Difficulty level as text, when the set has one (MATH-500 1–5).
    pub level: Option<String>,
}

/// A benchmark shipped with distill.
#[derive(Debug, Clone, Copy)]
pub struct ShippedBenchmark {
    /// Registry name used in configs (`aime2024`, `aime2025`, `math500`).
    pub name: &'static str,
    /// What it is, for `--help`-style listings.
    pub description: &'static str,
    /// Samples per problem in the R1 protocol (64 for AIME, 4 for MATH-500).
    pub default_samples: usize,
    /// The JSONL text (embedded at build time).
    pub jsonl: &'static str,
}

/// Every shipped benchmark.
pub const SHIPPED: &[ShippedBenchmark] = &[
    ShippedBenchmark {
        name: "aime2024",
        description: "AIME 2024 I+II, 30 problems, integer answers",
        default_samples: 64,
        jsonl: include_str!("../benchmarks/aime2024.jsonl"),
    },
    ShippedBenchmark {
        name: "aime2025",
        description: "AIME 2025 I+II, 30 problems, integer answers",
        default_samples: 64,
        jsonl: include_str!("../benchmarks/aime2025.jsonl"),
    },
    ShippedBenchmark {
        name: "math500",
        description: "MATH-500 (Let's Verify Step by Step test subset), 500 problems",
        default_samples: 4,
        jsonl: include_str!("../benchmarks/math500.jsonl"),
    },
];

/// Looks up a shipped benchmark by name.
pub fn shipped(name: &str) -> Option<&'static ShippedBenchmark> {
    SHIPPED.iter().find(|b| b.name == name)
}

/// Column names to read problems from (defaults match the shipped files).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// Problem id column (numbers are turned into text). Default `id`; when the column is
    /// missing entirely the 0-based row number is used.
    pub id: String,
    /// Problem statement column. Default `problem`.
    pub problem: String,
    /// Gold answer column (numbers are turned into text). Default `answer`.
    pub answer: String,
    /// Optional subject column for breakdowns. Default `subject`.
    pub subject: String,
    /// Optional level column for breakdowns. Default `level`.
    pub level: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            id: "id".into(),
            problem: "problem".into(),
            answer: "answer".into(),
            subject: "subject".into(),
            level: "level".into(),
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turns one JSON object into a problem; `origin` names the file and line for errors.
pub fn problem_from_json(
    obj: &serde_json::Map<String, Value>,
    columns: &Columns,
    row: usize,
    origin: &str,
) -> Result<EvalProblem, EvalError> {
    let required = |col: &str| -> Result<String, EvalError> {
        obj.get(col).and_then(scalar_text).ok_or_else(|| {
            EvalError::Invalid(format!("{origin}: missing or non-scalar column `{col}`"))
        })
    };
    let id = match obj.get(&columns.id) {
        Some(v) => scalar_text(v).ok_or_else(|| {
            EvalError::Invalid(format!("{origin}: column `{}` is not a scalar", columns.id))
        })?,
        None => row.to_string(),
    };
    Ok(EvalProblem {
        id,
        problem: required(&columns.problem)?,
        answer: required(&columns.answer)?,
        subject: obj.get(&columns.subject).and_then(scalar_text),
        level: obj.get(&columns.level).and_then(scalar_text),
    })
}

/// Parses JSONL text (blank lines skipped); `file` names the source in errors, which give the
/// 1-based line number.
pub fn parse_jsonl(text: &str, columns: &Columns, file: &str) -> Result<Vec<EvalProblem>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let origin = format!("{file}:{}", i + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| EvalError::Invalid(format!("{origin}: invalid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| EvalError::Invalid(format!("{origin}: expected a JSON object")))?;
        out.push(problem_from_json(obj, columns, out.len(), &origin)?);
    }
    check_unique(&out, file)?;
    Ok(out)
}

fn check_unique(problems: &[EvalProblem], file: &str) -> Result<(), EvalError> {
    let mut seen = std::collections::HashSet::new();
    for p in problems {
        if !seen.insert(p.id.as_str()) {
            return Err(EvalError::Invalid(format!("{file}: duplicate problem id `{}`", p.id)));
        }
    }
    Ok(())
}

/// Loads a problem file: `.jsonl`/`.json` lines or `.parquet`, with the given columns.
pub fn load_file(path: &Path, columns: &Columns) -> Result<Vec<EvalProblem>, EvalError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "parquet" {
        return crate::benchmarks::parquet::load(path, columns);
    }
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    parse_jsonl(&text, columns, &path.display().to_string())
}

/// Loads a benchmark: the file at `path` when given, otherwise the shipped set called `name`.
pub fn load(name: &str, path: Option<&Path>, columns: &Columns) -> Result<Vec<EvalProblem>, EvalError> {
    match path {
        Some(p) => load_file(p, columns),
        None => {
            let b = shipped(name).ok_or_else(|| {
                let names: Vec<_> = SHIPPED.iter().map(|b| b.name).collect();
                EvalError::Invalid(format!(
                    "unknown benchmark `{name}` (shipped: {}); give `path` for other files",
                    names.join(", ")
                ))
            })?;
            parse_jsonl(b.jsonl, columns, &format!("<shipped {name}>"))
        }
    }
}

mod parquet {
    //! Parquet problem files, read column by column into JSON-like rows.
    use std::path::Path;

    use arrow_array::cast::AsArray;
    use arrow_array::{Array, RecordBatch};
    use arrow_schema::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::{Map, Value};

    use super::{check_unique, problem_from_json, Columns, EvalProblem};
    use crate::EvalError;

    fn cell(col: &dyn Array, i: usize) -> Value {
        if col.is_null(i) {
            return Value::Null;
        }
        match col.data_type() {
            DataType::Utf8 => Value::String(col.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(i).to_string()),
            DataType::Utf8View => Value::String(col.as_string_view().value(i).to_string()),
            DataType::Int64 => Value::from(col.as_primitive::<arrow_array::types::Int64Type>().value(i)),
            DataType::Int32 => Value::from(col.as_primitive::<arrow_array::types::Int32Type>().value(i)),
            DataType::UInt32 => Value::from(col.as_primitive::<arrow_array::types::UInt32Type>().value(i)),
            DataType::UInt64 => Value::from(col.as_primitive::<arrow_array::types::UInt64Type>().value(i)),
            DataType::Float64 => Value::from(col.as_primitive::<arrow_array::types::Float64Type>().value(i)),
            DataType::Boolean => Value::from(col.as_boolean().value(i)),
            _ => Value::Null,
        }
    }

    fn rows(batch: &RecordBatch, columns: &Columns) -> Vec<Map<String, Value>> {
        let wanted = [&columns.id, &columns.problem, &columns.answer, &columns.subject, &columns.level];
        (0..batch.num_rows())
            .map(|i| {
                let mut m = Map::new();
                for name in wanted {
                    if let Some(col) = batch.column_by_name(name) {
                        let v = cell(col.as_ref(), i);
                        if !v.is_null() {
                            m.insert(name.clone(), v);
                        }
                    }
                }
                m
            })
            .collect()
    }

    pub(super) fn load(path: &Path, columns: &Columns) -> Result<Vec<EvalProblem>, EvalError> {
        let file_name = path.display().to_string();
        let bad = |e: &dyn std::fmt::Display| EvalError::Invalid(format!("{file_name}: {e}"));
        let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(&e))?
            .build()
            .map_err(|e| bad(&e))?;
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            for row in rows(&batch, columns) {
                let origin = format!("{file_name}: row {}", out.len());
                out.push(problem_from_json(&row, columns, out.len(), &origin)?);
            }
        }
        check_unique(&out, &file_name)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sets_load_with_expected_sizes_and_fields() {
        let c = Columns::default();
        let aime24 = load("aime2024", None, &c).unwrap();
        assert_eq!(aime24.len(), 30);
        assert_eq!(aime24[0].id, "2024-I-1");
        assert_eq!(aime24[0].answer, "204");
        assert_eq!(load("aime2025", None, &c).unwrap().len(), 30);
        let math = load("math500", None, &c).unwrap();
        assert_eq!(math.len(), 500);
        assert_eq!(math[0].subject.as_deref(), Some("Precalculus"));
        assert_eq!(math[0].level.as_deref(), Some("2"));
        let err = load("gsm9k", None, &c).unwrap_err().to_string();
        assert!(err.contains("gsm9k") && err.contains("math500"), "{err}");
    }

    #[test]
    fn custom_columns_and_line_numbers_in_errors() {
        let c = Columns { problem: "question".into(), answer: "final".into(), ..Columns::default() };
        let ok = parse_jsonl("{\"question\":\"1+1?\",\"final\":2}\n\n{\"question\":\"2+2?\",\"final\":\"4\"}\n", &c, "f.jsonl").unwrap();
        assert_eq!(ok[0].id, "0");
        assert_eq!(ok[0].answer, "2");
        assert_eq!(ok[1].id, "1");
        let err = parse_jsonl("{\"question\":\"x\",\"final\":1}\n{\"question\":\"y\"}\n", &c, "f.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.jsonl:2") && err.contains("final"), "{err}");
        let err = parse_jsonl("{oops\n", &c, "g.jsonl").unwrap_err().to_string();
        assert!(err.contains("g.jsonl:1"), "{err}");
        let dup = "{\"id\":1,\"problem\":\"a\",\"answer\":\"1\"}\n{\"id\":1,\"problem\":\"b\",\"answer\":\"2\"}";
        assert!(parse_jsonl(dup, &Columns::default(), "d").unwrap_err().to_string().contains("duplicate"));
    }
}
