//! The benchmark registry: AIME 2024, AIME 2025 and MATH-500 ship inside the binary (the JSONL
//! files in `eval/benchmarks/`, provenance in `eval/benchmarks/SOURCES.md`), so an eval run
//! works from any directory; any other JSONL/Parquet problem file with configurable columns is
//! loaded the same way.

use std::path::Path;

use datasets::{load_problems, parse_problems_jsonl, Problem, ProblemColumns};
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
    /// Problem id column (numbers are turned into text; ids must be unique). Default `id`.
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

impl Columns {
    /// The shared problem-set loader's view of these columns (subject and level come through
    /// as extra columns).
    fn problem_columns(&self) -> ProblemColumns {
        ProblemColumns {
            id: Some(self.id.clone()),
            problem: self.problem.clone(),
            answer: self.answer.clone(),
            source: None,
            default_source: None,
        }
    }

    fn to_eval(&self, p: Problem) -> EvalProblem {
        let text = |col: &str| match p.extra.get(col) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        EvalProblem {
            subject: text(&self.subject),
            level: text(&self.level),
            id: p.id,
            problem: p.problem,
            answer: p.answer,
        }
    }
}

/// Parses JSONL text through the shared problem-set loader (`datasets::parse_problems_jsonl`);
/// `file` names the source in errors, which give the 1-based line number.
pub fn parse_jsonl(text: &str, columns: &Columns, file: &str) -> Result<Vec<EvalProblem>, EvalError> {
    let problems = parse_problems_jsonl(text, Path::new(file), &columns.problem_columns())?;
    Ok(problems.into_iter().map(|p| columns.to_eval(p)).collect())
}

/// Loads a problem file (`.jsonl`, `.json` or `.parquet`) through the shared problem-set
/// loader, with the given columns.
pub fn load_file(path: &Path, columns: &Columns) -> Result<Vec<EvalProblem>, EvalError> {
    let problems = load_problems(path, &columns.problem_columns())?;
    Ok(problems.into_iter().map(|p| columns.to_eval(p)).collect())
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
        let ok = parse_jsonl("{\"id\":7,\"question\":\"1+1?\",\"final\":2}\n\n{\"id\":\"b\",\"question\":\"2+2?\",\"final\":\"4\"}\n", &c, "f.jsonl").unwrap();
        assert_eq!(ok[0].id, "7");
        assert_eq!(ok[0].answer, "2");
        assert_eq!(ok[1].id, "b");
        let err = parse_jsonl("{\"id\":1,\"question\":\"x\",\"final\":1}\n{\"id\":2,\"question\":\"y\"}\n", &c, "f.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.jsonl:2") && err.contains("final"), "{err}");
        let err = parse_jsonl("{oops\n", &c, "g.jsonl").unwrap_err().to_string();
        assert!(err.contains("g.jsonl:1"), "{err}");
        let dup = "{\"id\":1,\"problem\":\"a\",\"answer\":\"1\"}\n{\"id\":1,\"problem\":\"b\",\"answer\":\"2\"}";
        assert!(parse_jsonl(dup, &Columns::default(), "d").unwrap_err().to_string().contains("duplicate"));
    }
}
