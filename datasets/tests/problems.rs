//! Problem-set loading: JSONL / JSON / Parquet, configurable columns, coercion of ids and
//! answers to strings, and errors that name the file and line.

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datasets::problems::write_problems_jsonl;
use datasets::{load_problems, DatasetError, Problem, ProblemColumns};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn jsonl_with_default_columns_coerces_ids_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "set.jsonl",
        "{\"id\": 7, \"problem\": \"1+1?\", \"answer\": 2, \"source\": \"toy\", \"level\": 3}\n\
         \n\
         {\"id\": \"b\", \"problem\": \"half?\", \"answer\": \"\\\\frac{1}{2}\"}\n",
    );
    let ps = load_problems(&p, &ProblemColumns::default()).unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].id, "7");
    assert_eq!(ps[0].answer, "2");
    assert_eq!(ps[0].source.as_deref(), Some("toy"));
    assert_eq!(ps[0].extra["level"], serde_json::json!(3));
    assert_eq!(ps[1].answer, "\\frac{1}{2}");
    assert_eq!(ps[1].source, None);
}

#[test]
fn malformed_lines_and_missing_columns_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cols = ProblemColumns::default();
    let p = write(
        dir.path(),
        "bad.jsonl",
        "{\"id\": 1, \"problem\": \"a\", \"answer\": 1}\n{\"id\": 2, \"problem\": \n",
    );
    let err = load_problems(&p, &cols).unwrap_err();
    assert!(matches!(err, DatasetError::Line { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("bad.jsonl:2:"), "{err}");

    let p = write(
        dir.path(),
        "missing.jsonl",
        "{\"id\": 1, \"problem\": \"a\", \"answer\": 1}\n\n{\"id\": 2, \"problem\": \"b\"}\n",
    );
    let err = load_problems(&p, &cols).unwrap_err().to_string();
    assert!(
        err.contains("missing.jsonl:3:") && err.contains("`answer`"),
        "{err}"
    );

    let p = write(
        dir.path(),
        "dup.jsonl",
        "{\"id\": 1, \"problem\": \"a\", \"answer\": 1}\n{\"id\": \"1\", \"problem\": \"b\", \"answer\": 2}\n",
    );
    let err = load_problems(&p, &cols).unwrap_err().to_string();
    assert!(
        err.contains("dup.jsonl:2:") && err.contains("duplicate id"),
        "{err}"
    );

    let p = write(
        dir.path(),
        "list.jsonl",
        "{\"id\": 1, \"problem\": \"a\", \"answer\": [1]}\n",
    );
    let err = load_problems(&p, &cols).unwrap_err().to_string();
    assert!(
        err.contains("list.jsonl:1:") && err.contains("`answer`"),
        "{err}"
    );

    let p = write(dir.path(), "x.csv", "id,problem\n");
    assert!(load_problems(&p, &cols)
        .unwrap_err()
        .to_string()
        .contains("x.csv"));
}

#[test]
fn custom_columns_and_row_numbered_ids() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "openr1.json",
        r#"[{"question": "q0", "solution_answer": "5"}, {"question": "q1", "solution_answer": 6}]"#,
    );
    let cols = ProblemColumns {
        id: None,
        problem: "question".into(),
        answer: "solution_answer".into(),
        source: None,
        default_source: Some("openr1".into()),
    };
    let ps = load_problems(&p, &cols).unwrap();
    assert_eq!(ps[1].id, "openr1-1");
    assert_eq!(ps[1].answer, "6");
    assert_eq!(ps[0].source.as_deref(), Some("openr1"));
    // Config parsing rejects typos.
    let bad: Result<ProblemColumns, _> = serde_json::from_str(r#"{"anwser": "x"}"#);
    assert!(bad.is_err());
}

#[test]
fn parquet_problem_sets_load_with_coercion() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("set.parquet");
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![10, 11]))),
        ("problem", Arc::new(StringArray::from(vec!["p10", "p11"]))),
        ("answer", Arc::new(Float64Array::from(vec![12.0, 0.5]))),
        (
            "source",
            Arc::new(StringArray::from(vec![Some("aime"), None])),
        ),
        (
            "subject",
            Arc::new(StringArray::from(vec!["algebra", "geometry"])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let file = std::fs::File::create(&p).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let ps = load_problems(&p, &ProblemColumns::default()).unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!((ps[0].id.as_str(), ps[0].answer.as_str()), ("10", "12"));
    assert_eq!(ps[1].answer, "0.5");
    assert_eq!(ps[0].source.as_deref(), Some("aime"));
    assert_eq!(ps[1].source, None);
    assert_eq!(ps[1].extra["subject"], serde_json::json!("geometry"));

    let cols = ProblemColumns {
        answer: "nope".into(),
        ..Default::default()
    };
    let err = load_problems(&p, &cols).unwrap_err().to_string();
    assert!(
        err.contains("set.parquet:1:") && err.contains("`nope`"),
        "{err}"
    );
    let junk = write(dir.path(), "junk.parquet", "not parquet");
    assert!(load_problems(&junk, &ProblemColumns::default())
        .unwrap_err()
        .to_string()
        .contains("junk.parquet"));
}

#[test]
fn shipped_benchmarks_load_and_roundtrip() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../eval/benchmarks");
    for (name, n) in [("aime2024", 30), ("aime2025", 30), ("math500", 500)] {
        let p = root.join(format!("{name}.jsonl"));
        let ps = load_problems(&p, &ProblemColumns::default()).unwrap();
        assert_eq!(ps.len(), n, "{name}");
        assert!(ps.iter().all(|p| !p.answer.is_empty()), "{name}");
    }
    let p = root.join("aime2025.jsonl");
    let ps = load_problems(&p, &ProblemColumns::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.jsonl");
    write_problems_jsonl(&out, &ps).unwrap();
    let back: Vec<Problem> = load_problems(&out, &ProblemColumns::default()).unwrap();
    assert_eq!(back, ps);
}
