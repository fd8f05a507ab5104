//! Grades `{"gold": …, "pred": …}` JSONL from stdin and prints one verdict per line — a quick
//! way to diff this grader against Math-Verify without building the `distill` binary.

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.expect("read stdin");
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        let gold = v["gold"].as_str().unwrap_or_default();
        let pred = v["pred"].as_str().unwrap_or_default();
        // `"response": false` marks a bare answer (no extraction), as in the case tables.
        let row = if v["response"].as_bool() == Some(false) {
            serde_json::json!({"verdict": grader::grade_answer(gold, pred), "extracted": pred})
        } else {
            let g = grader::grade(gold, pred);
            serde_json::json!({"verdict": g.verdict, "extracted": g.extracted})
        };
        writeln!(out, "{row}").expect("write stdout");
    }
}
