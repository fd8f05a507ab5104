//! The (gold, prediction, expected) table in `tests/cases.jsonl`: every normalisation and
//! equivalence rule the grader promises, with expectations checked against Math-Verify.

use grader::{grade, grade_answer, Verdict};

#[derive(serde::Deserialize)]
struct Case {
    gold: String,
    pred: String,
    expected: Verdict,
    /// `pred` is a full response (graded with `grade`, extraction included) rather than a
    /// bare answer (graded with `grade_answer`).
    #[serde(default)]
    response: bool,
}

#[test]
fn table_of_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases.jsonl");
    let text = std::fs::read_to_string(path).expect("read cases.jsonl");
    let mut failures = Vec::new();
    let mut total = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with("//") {
            continue;
        }
        let case: Case = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("cases.jsonl line {}: {e}", i + 1));
        total += 1;
        let got = if case.response {
            grade(&case.gold, &case.pred).verdict
        } else {
            grade_answer(&case.gold, &case.pred)
        };
        if got != case.expected {
            failures.push(format!(
                "line {}: gold {:?} pred {:?}: expected {:?}, got {:?}",
                i + 1,
                case.gold,
                case.pred,
                case.expected,
                got
            ));
        }
    }
    assert!(total >= 300, "table shrank to {total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
