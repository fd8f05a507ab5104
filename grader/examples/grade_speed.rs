//! Grading throughput on (gold, pred) JSONL pairs — e.g. the `pairs.jsonl` that
//! `distill bench grade` writes — without building the `distill` binary, so two versions of
//! the grader can be timed on the same input: `grade_speed PAIRS [REPEATS]`.

use std::io::BufRead;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: grade_speed PAIRS.jsonl [REPEATS]");
    let repeats: usize = args.next().map_or(3, |r| r.parse().expect("REPEATS"));
    let file = std::fs::File::open(&path).expect("open pairs");
    let pairs: Vec<(String, String)> = std::io::BufReader::new(file)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.expect("read")).expect("JSON");
            (
                v["gold"].as_str().unwrap_or_default().to_string(),
                v["pred"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // The fastest of a few passes: the machine may be shared.
    let mut best = f64::INFINITY;
    let mut correct = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        correct = pairs
            .iter()
            .filter(|(g, p)| grader::grade(g, p).verdict.is_correct())
            .count();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{} pairs in {best:.3} s = {:.0} answers/s ({correct} correct)",
        pairs.len(),
        pairs.len() as f64 / best
    );
}
