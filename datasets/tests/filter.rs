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
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(out.join(datasets::filter::MANIFEST_FILE)).unwrap()).unwrap();
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
    assert!(!dir.path().join("o").join(datasets::filter::MANIFEST_FILE).exists());
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
    fs::write(traces.join("_manifest.json"), "{}").unwrap();
    let err = run_filter(&traces, &traces, &FilterConfig::default()).unwrap_err().to_string();
    assert!(err.contains("must differ"), "{err}");
    assert!(traces.join("_manifest.json").exists(), "the sampler's manifest must survive");
}

/// Deterministic xorshift stream for generated data.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// `problems × k` generated rows with known exact duplicates (re-spaced copies), near-duplicates
/// (one word changed), failures and wrong answers, in a scrambled arrival order.
fn generated_rows(problems: u32, k: u32, words: usize) -> Vec<TraceRow> {
    let mut next = rng(7);
    let mut rows = Vec::new();
    for p in 0..problems {
        let mut first = String::new();
        for s in 0..k {
            let text: String = (0..words).map(|_| format!("w{} ", next() % 3000)).collect();
            let mut r = row(&format!("g{p:05}"), s, &format!("Generated problem {p} with {} apples", p * 3), text);
            match next() % 10 {
                0 if s > 0 => r.reasoning = format!("  {}\n", first.replace(' ', "  ")), // exact duplicate
                1 if s > 0 => r.reasoning = first.replacen("w", "x", 1),                 // near duplicate
                2 => r.verdict = Verdict::Incorrect,
                3 => r.error = Some("HTTP 500".into()),
                _ => {}
            }
            if s == 0 {
                first = r.reasoning.clone();
            }
            rows.push(r);
        }
    }
    // Scramble: interleave samples across problems so no shard is sorted.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order.into_iter().map(|i| rows[i].clone()).collect()
}

/// The filter's rules 1–3, 6 and 7 computed the straightforward way (all rows in memory, sorted,
/// the slice APIs of `dedup`): the (problem_id, sample_index) pairs kept.
fn reference_kept(rows: &[TraceRow], cfg: &FilterConfig) -> Vec<(String, u32)> {
    use datasets::dedup::{exact_duplicates, exact_key, near_duplicates};
    let mut sorted: Vec<&TraceRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.problem_id, a.sample_index).cmp(&(&b.problem_id, b.sample_index)));
    let survivors: Vec<&TraceRow> =
        sorted.into_iter().filter(|r| r.error.is_none() && r.finish_reason == FinishReason::Stop && r.verdict == Verdict::Correct).collect();
    let keys: Vec<[u8; 32]> = survivors.iter().map(|r| exact_key(&[&r.problem, &r.reasoning, &r.content])).collect();
    let unique: Vec<&TraceRow> =
        survivors.iter().zip(exact_duplicates(&keys)).filter(|(_, d)| d.is_none()).map(|(r, _)| *r).collect();
    let docs: Vec<[&str; 3]> = unique.iter().map(|r| [r.problem.as_str(), r.reasoning.as_str(), r.content.as_str()]).collect();
    let near = near_duplicates(&docs, &cfg.near_dup).unwrap();
    unique.iter().zip(near).filter(|(_, n)| n.is_none()).map(|(r, _)| (r.problem_id.clone(), r.sample_index)).collect()
}

fn kept_ids(out: &Path) -> Vec<(String, u32)> {
    fs::read_to_string(out.join("messages.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["problem_id"].as_str().unwrap().to_string(), v["sample_index"].as_u64().unwrap() as u32))
        .collect()
}

/// Streaming on generated data: the same decisions as the all-in-memory reference, and
/// byte-identical outputs whether the shards arrive sorted (direct write) or scrambled (spill).
#[test]
fn streaming_matches_in_memory_reference_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let rows = generated_rows(150, 4, 120);
    let mut cfg = FilterConfig::default();
    cfg.decontam.enabled = false;
    cfg.export.openr1_generations = datasets::filter::OpenR1Generations::All;
    let scrambled = dir.path().join("scrambled");
    fs::create_dir_all(&scrambled).unwrap();
    for (i, chunk) in rows.chunks(77).enumerate() {
        write_trace_shard(&scrambled.join(format!("shard-{i:05}.parquet")), chunk).unwrap();
    }
    let mut sorted_rows = rows.clone();
    sorted_rows.sort_by(|a, b| (&a.problem_id, a.sample_index).cmp(&(&b.problem_id, b.sample_index)));
    let sorted = dir.path().join("sorted");
    fs::create_dir_all(&sorted).unwrap();
    for (i, chunk) in sorted_rows.chunks(100).enumerate() {
        write_trace_shard(&sorted.join(format!("shard-{i:05}.parquet")), chunk).unwrap();
    }
    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    let report_a = run_filter(&scrambled, &out_a, &cfg).unwrap();
    let report_b = run_filter(&sorted, &out_b, &cfg).unwrap();
    assert_eq!(report_a, report_b);
    assert!(report_a.dropped_duplicate > 10 && report_a.dropped_near_duplicate > 10, "{report_a:#?}");
    assert_eq!(kept_ids(&out_a), reference_kept(&rows, &cfg));
    for file in ["messages.parquet", "messages.jsonl", "openr1.parquet", "dropped.jsonl", "filter_report.json"] {
        assert!(fs::read(out_a.join(file)).unwrap() == fs::read(out_b.join(file)).unwrap(), "{file} differs");
    }
    assert!(!out_a.join(".spill").exists());
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Scale benchmark (not a test; `cargo test --release -p datasets --test filter -- --ignored
/// --nocapture filter_at_scale`): `DISTILL_FILTER_BENCH_ROWS` rows (default 1,000,000) of ~8 KB
/// reasoning (+ the same again as `completion`), 4 samples per problem, written in an order that
/// forces the spill path; every rule enabled. Prints rows/s and the process's peak RSS.
#[test]
#[ignore]
fn filter_at_scale() {
    let n: u32 = std::env::var("DISTILL_FILTER_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(std::env::var("DISTILL_BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string())).unwrap();
    let traces = dir.path().join("traces");
    fs::create_dir_all(&traces).unwrap();
    let problems = n.div_ceil(4);
    let mut next = rng(11);
    let (mut shard, mut bytes) = (Vec::new(), 0u64);
    let gen_start = std::time::Instant::now();
    for i in 0..n {
        let text: String = (0..1400).map(|_| format!("w{} ", next() % 5000)).collect();
        // Arrival order: sample 0 of every problem, then sample 1, … (not sorted).
        let (p, k) = (i % problems, i / problems);
        let mut r = row(&format!("q{p:07}"), k, &format!("Problem {p}: how many {} things", p * 7), text);
        r.completion = format!("{}\n</think>\n\n{}", r.reasoning, r.content);
        r.completion_tokens = 2000;
        bytes += (r.reasoning.len() + r.completion.len()) as u64;
        shard.push(r);
        if shard.len() == 1000 || i + 1 == n {
            write_trace_shard(&traces.join(format!("shard-{i:07}.parquet")), &shard).unwrap();
            shard.clear();
        }
    }
    let rss_gen = peak_rss_mib().unwrap_or(f64::NAN);
    println!("generated {n} rows ({:.2} GB of text) in {:.1}s; peak RSS while generating {rss_gen:.0} MiB", bytes as f64 / 1e9, gen_start.elapsed().as_secs_f64());
    let start = std::time::Instant::now();
    let report = run_filter(&traces, &dir.path().join("out"), &FilterConfig::default()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "filtered {} rows ({} kept) in {secs:.1}s: {:.0} rows/s; peak RSS {:.0} MiB",
        report.input_rows,
        report.kept,
        f64::from(n) / secs,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}

/// OpenR1 interop: `solution`, `problem_type` and `question_type` come from the problem file the
/// traces' manifest records (the trace rows do not carry them); message structs are
/// `{content, role}` as in OpenR1-Math-220k. `DISTILL_KEEP_FILTER_OUT=DIR` copies the output
/// there for inspection with pandas.
#[test]
fn openr1_export_takes_solution_and_types_from_the_problem_set() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, _) = setup(dir.path());
    let problems = dir.path().join("problems.jsonl");
    let mut lines = String::new();
    for i in 1..=6 {
        let types = if i == 2 { String::new() } else { ", \"problem_type\": \"Algebra\", \"question_type\": \"math-word-problem\"".into() };
        lines.push_str(&format!("{{\"id\": \"p{i}\", \"problem\": \"x\", \"answer\": \"42\", \"solution\": \"Solution {i}.\"{types}}}\n"));
    }
    fs::write(&problems, lines).unwrap();
    let manifest = serde_json::json!({"config": {"problems": problems.display().to_string(), "columns": {"id": "id", "problem": "problem", "answer": "answer"}}});
    fs::write(traces.join("manifest.json"), manifest.to_string()).unwrap();
    let out = dir.path().join("out");
    let mut cfg = FilterConfig::default();
    cfg.decontam.enabled = false;
    run_filter(&traces, &out, &cfg).unwrap();
    if let Ok(keep) = std::env::var("DISTILL_KEEP_FILTER_OUT") {
        fs::create_dir_all(&keep).unwrap();
        for f in ["openr1.parquet", "messages.parquet"] {
            fs::copy(out.join(f), Path::new(&keep).join(f)).unwrap();
        }
    }
    let file = fs::File::open(out.join("openr1.parquet")).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
    let col = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    let (ids, solution, ptype, qtype) = (col("problem_id"), col("solution"), col("problem_type"), col("question_type"));
    assert_eq!(ids.value(0), "p1");
    assert_eq!(solution.value(0), "Solution 1.");
    assert_eq!((ptype.value(0), qtype.value(0)), ("Algebra", "math-word-problem"));
    let p2 = (0..b.num_rows()).find(|&i| ids.value(i) == "p2").unwrap();
    assert_eq!(solution.value(p2), "Solution 2.");
    assert!(ptype.is_null(p2) && qtype.is_null(p2));
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(&names[..7], ["problem", "solution", "answer", "problem_type", "question_type", "source", "uuid"]);
    let arrow_schema::DataType::List(item) = b.column_by_name("messages").unwrap().data_type() else { panic!() };
    let arrow_schema::DataType::Struct(fields) = item.data_type() else { panic!() };
    let order: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(order, ["content", "role"]);

    // Without a findable problem file the columns stay null and the run still succeeds.
    fs::remove_file(&problems).unwrap();
    run_filter(&traces, &out, &cfg).unwrap();
    let file = fs::File::open(out.join("openr1.parquet")).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().next().unwrap().unwrap();
    assert!(b.column_by_name("solution").unwrap().is_null(0));
}
