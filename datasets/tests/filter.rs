//! `distill data filter` end to end on a small synthetic trace set: every drop reason is hit a
//! known number of times, the exports open and hold what was kept, and the run leaves a manifest.

use std::fs;
use std::path::Path;

use arrow_array::{Array, BooleanArray, Int64Array, ListArray, StringArray};
use datasets::filter::{run_filter, FilterConfig, FilterReport};
use datasets::records::{FinishReason, SampleRecord, Verdict};
use datasets::sft::{load_training_rows, TrainingData, TrainingFormat};
use datasets::traces::{write_trace_shard, TraceMessage, TraceRow};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A long, varied reasoning text (so MinHash has many shingles) unique to `seed`.
fn reasoning(seed: u32) -> String {
    (0..120).map(|i| format!("step{} uses value{} then ", i, (i * 7 + seed * 13) % 101 + seed * 1000)).collect()
}

fn row(problem_id: &str, k: u32, problem: &str, reasoning: String) -> TraceRow {
    TraceRow {
        sample: SampleRecord {
            problem_id: problem_id.into(),
            sample_index: k,
            reference_answer: "42".into(),
            extracted_answer: Some("42".into()),
            verdict: Verdict::Correct,
            prompt_tokens: 20,
            completion_tokens: 700,
            finish_reason: FinishReason::Stop,
            seed: u64::from(k),
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 4096,
            latency_ms: 10,
            error: None,
        },
        source: Some("synthetic".into()),
        problem: problem.into(),
        prompt: vec![TraceMessage { role: "user".into(), content: format!("{problem}\nPlease reason step by step.") }],
        completion: format!("{reasoning}\n</think>\n\nThe answer is \\boxed{{42}}."),
        reasoning,
        content: "The answer is \\boxed{42}.".into(),
        teacher: "teacher-x".into(),
        created_at: 1_764_000_000_000_000,
    }
}

/// 14 rows: 5 kept, and each drop reason represented.
fn trace_rows() -> Vec<TraceRow> {
    let p = |i: u32| format!("Problem {i}: a train leaves station {i} at noon travelling at {} miles per hour toward a city", i * 10);
    let mut rows = vec![
        row("p1", 0, &p(1), reasoning(1)),                        // kept
        row("p1", 1, &p(1), reasoning(2)),                        // kept
        row("p1", 2, &p(1), format!("  {} ", reasoning(1))),      // duplicate of p1#0 (whitespace only)
        row("p2", 0, &p(2), reasoning(3)),                        // kept
        row("p3", 0, &p(3), reasoning(4)),                        // kept
        row("p4", 0, &p(4), reasoning(5)),                        // kept
        // AIME 2025 I-1, reworded only in case and spacing → contaminated.
        row("p5", 0, "find the sum of all integer bases $b > 9$ for which $17_b$ is a divisor of $97_b$.", reasoning(6)),
    ];
    let mut near = row("p2", 1, &p(2), reasoning(3).replacen("step5 ", "stepfive ", 1));
    near.content = "So the answer is \\boxed{42}.".into();
    rows.push(near); // near-duplicate of p2#0
    let mut wrong = row("p3", 1, &p(3), reasoning(7));
    wrong.verdict = Verdict::Incorrect;
    rows.push(wrong);
    let mut cut = row("p3", 2, &p(3), reasoning(8));
    cut.finish_reason = FinishReason::Length;
    cut.verdict = Verdict::Incorrect;
    rows.push(cut);
    let mut failed = row("p4", 1, &p(4), String::new());
    failed.error = Some("HTTP 400: context too long".into());
    failed.finish_reason = FinishReason::Error;
    failed.verdict = Verdict::Error;
    rows.push(failed);
    let mut long = row("p4", 2, &p(4), reasoning(9));
    long.completion_tokens = 50_000;
    rows.push(long);
    let mut short = row("p1", 3, &p(1), "ok".into());
    short.completion_tokens = 3;
    rows.push(short);
    // A problem from the user's own test split (decontaminated via `decontam.files`).
    rows.push(row("p6", 0, "Solve for x: 3x + 5 = 20 and report x", reasoning(10)));
    rows
}

fn config(test_split: &Path) -> FilterConfig {
    let mut cfg = FilterConfig::default();
    cfg.length.min = 10;
    cfg.length.max = Some(10_000);
    cfg.decontam.files.push(test_split.to_path_buf());
    cfg
}

fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let traces = dir.join("traces");
    fs::create_dir_all(&traces).unwrap();
    let rows = trace_rows();
    // Two shards, rows deliberately out of order: the filter must not depend on write order.
    write_trace_shard(&traces.join("shard-00001.parquet"), &rows[..7]).unwrap();
    write_trace_shard(&traces.join("shard-00000.parquet"), &rows[7..]).unwrap();
    let test_split = dir.join("test.jsonl");
    fs::write(&test_split, "{\"id\": \"t1\", \"problem\": \"Solve for $x$: $3x+5=20$.\", \"answer\": \"5\"}\n").unwrap();
    (traces, test_split)
}

#[test]
fn every_reason_is_counted_and_exports_hold_the_kept_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, test_split) = setup(dir.path());
    let out = dir.path().join("out");
    let report = run_filter(&traces, &out, &config(&test_split)).unwrap();
    let want = FilterReport {
        input_rows: 14,
        input_problems: 6,
        kept: 5,
        kept_problems: 4,
        dropped_error: 1,
        dropped_truncated: 1,
        dropped_incorrect: 1,
        dropped_length: 2,
        dropped_contaminated: 2,
        dropped_duplicate: 1,
        dropped_near_duplicate: 1,
        dropped_per_problem_cap: 0,
        ..report.clone()
    };
    assert_eq!(report, want, "{report:#?}");
    assert_eq!(report.contaminated_by.get("aime2025"), Some(&1));
    assert_eq!(report.contaminated_by.get(&test_split.display().to_string()), Some(&1));
    assert_eq!(report.kept_length.max, 700);

    // The report on disk equals the returned one; the manifest records inputs and config.
    let on_disk: FilterReport = serde_json::from_slice(&fs::read(out.join("filter_report.json")).unwrap()).unwrap();
    assert_eq!(on_disk, report);
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["counts"]["kept"], 5);
    assert_eq!(manifest["config"]["decontam"]["ngram"], 13);
    let names: Vec<String> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "temp files left: {names:?}");

    // messages.parquet: the kept samples, sorted, with R1-layout assistant turns.
    let TrainingData::Conversations(convs) = load_training_rows(&out, TrainingFormat::Traces).unwrap() else { panic!() };
    assert_eq!(convs.len(), 5);
    let first = &convs[0].messages;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].role, "user");
    assert!(first[0].content.ends_with("Please reason step by step."));
    assert_eq!(first[1].role, "assistant");
    assert_eq!(first[1].content, format!("<think>\n{}\n</think>\n\nThe answer is \\boxed{{42}}.", reasoning(1).trim()));
    let jsonl = fs::read_to_string(out.join("messages.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 5);
    let ids: Vec<(String, u64)> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["problem_id"].as_str().unwrap().to_string(), v["sample_index"].as_u64().unwrap()))
        .collect();
    let want_ids = [("p1", 0), ("p1", 1), ("p2", 0), ("p3", 0), ("p4", 0)].map(|(p, k)| (p.to_string(), k));
    assert_eq!(ids, want_ids);

    // dropped.jsonl: one line per dropped row, each with a reason.
    let dropped = fs::read_to_string(out.join("dropped.jsonl")).unwrap();
    assert_eq!(dropped.lines().count(), 9);
    assert!(dropped.contains("\"reason\":\"near_duplicate\"") && dropped.contains("of p2#0"));

    // openr1.parquet: one row per problem with list columns.
    let file = fs::File::open(out.join("openr1.parquet")).unwrap();
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    let b = &batches[0];
    for col in ["problem", "solution", "answer", "generations", "correctness_math_verify", "finish_reasons", "messages", "source", "uuid"] {
        assert!(b.column_by_name(col).is_some(), "missing column {col}");
    }
    let gens = b.column_by_name("generations").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(gens.value_length(0), 2); // p1 kept samples 0 and 1
    let correct = b.column_by_name("correctness_math_verify").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    let c0 = correct.value(0);
    assert!(c0.as_any().downcast_ref::<BooleanArray>().unwrap().iter().all(|v| v == Some(true)));
    let count = b.column_by_name("correctness_count").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(count.value(0), 2);
    let answer = b.column_by_name("answer").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(answer.value(0), "42");
}

#[test]
fn all_generations_layout_and_disabled_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, test_split) = setup(dir.path());
    let out = dir.path().join("out");
    let mut cfg = config(&test_split);
    cfg.export.openr1_generations = datasets::filter::OpenR1Generations::All;
    cfg.near_dup.enabled = false;
    cfg.exact_dedup = false;
    cfg.decontam.enabled = false;
    cfg.max_per_problem = Some(1);
    let report = run_filter(&traces, &out, &cfg).unwrap();
    // p1: 0,1,2 pass → cap keeps 1; p2: 0,1 → 1; p3: 1; p4: 1; p5: 1; p6: 1.
    assert_eq!(report.kept, 6);
    assert_eq!(report.dropped_per_problem_cap, 3);
    assert_eq!(report.dropped_contaminated + report.dropped_duplicate + report.dropped_near_duplicate, 0);
    let file = fs::File::open(out.join("openr1.parquet")).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
    let gens = b.column_by_name("generations").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    // p1 lists every non-failed sample (0..=3), p3 its incorrect and truncated ones too.
    assert_eq!(gens.value_length(0), 4);
    let correct = b.column_by_name("correctness_math_verify").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    let p3 = correct.value(2);
    let p3: Vec<_> = p3.as_any().downcast_ref::<BooleanArray>().unwrap().iter().collect();
    assert_eq!(p3, [Some(true), Some(false), Some(false)]);
}

#[test]
fn bad_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = run_filter(&missing, &dir.path().join("o"), &FilterConfig::default()).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let (traces, _) = setup(dir.path());
    let mut cfg = FilterConfig::default();
    cfg.decontam.files.push(dir.path().join("missing-test.jsonl"));
    let err = run_filter(&traces, &dir.path().join("o"), &cfg).unwrap_err().to_string();
    assert!(err.contains("missing-test.jsonl"), "{err}");
    assert!(!dir.path().join("o/manifest.json").exists());
}

/// Throughput benchmark (not a test; run with `--ignored --nocapture`): 20,000 traces of ~1,500
/// words, 4 per problem, with every rule enabled. Prints rows/s for the whole run.
#[test]
#[ignore]
fn filter_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces");
    fs::create_dir_all(&traces).unwrap();
    let n = 20_000u32;
    let vocab: Vec<String> = (0..5000).map(|i| format!("w{i}")).collect();
    let mut state = 0x9e37_79b9_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut shard = Vec::new();
    for i in 0..n {
        let words: Vec<&str> = (0..1500).map(|_| vocab[(next() % 5000) as usize].as_str()).collect();
        let mut r = row(&format!("q{:06}", i / 4), i % 4, &format!("Problem {} about {} things", i / 4, i), words.join(" "));
        r.completion_tokens = 2000;
        shard.push(r);
        if shard.len() == 1000 {
            write_trace_shard(&traces.join(format!("shard-{i:06}.parquet")), &shard).unwrap();
            shard.clear();
        }
    }
    let start = std::time::Instant::now();
    let report = run_filter(&traces, &dir.path().join("out"), &FilterConfig::default()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!("filtered {} rows ({} kept) in {secs:.2}s: {:.0} rows/s", report.input_rows, report.kept, f64::from(n) / secs);
}

#[test]
fn empty_or_self_targeting_inputs_are_refused_without_touching_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let err = run_filter(&empty, &dir.path().join("o"), &FilterConfig::default()).unwrap_err().to_string();
    assert!(err.contains("no trace shards"), "{err}");
    let (traces, _) = setup(dir.path());
    fs::write(traces.join("manifest.json"), "{}").unwrap();
    let err = run_filter(&traces, &traces, &FilterConfig::default()).unwrap_err().to_string();
    assert!(err.contains("must differ"), "{err}");
    assert!(traces.join("manifest.json").exists(), "the sampler's manifest must survive");
}
