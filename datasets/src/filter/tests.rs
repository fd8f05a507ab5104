//! Crash-safety of the filter output: injected failures at each step leave the previous output
//! whole and nothing else behind; leftovers of killed runs are removed at the next start.

use std::fs;
use std::path::{Path, PathBuf};

use super::output::FAIL_AT;
use super::{run_filter, FilterConfig};
use crate::records::{FinishReason, SampleRecord, Verdict};
use crate::traces::{write_trace_shard, TraceMessage, TraceRow};

fn row(problem: u32, k: u32) -> TraceRow {
    let reasoning: String = (0..60)
        .map(|i| format!("p{problem} s{k} w{} ", i * 7 + k))
        .collect();
    TraceRow {
        sample: SampleRecord {
            problem_id: format!("p{problem}"),
            sample_index: k,
            reference_answer: "1".into(),
            finish_reason: FinishReason::Stop,
            prompt_tokens: 5,
            completion_tokens: 100,
            extracted_answer: Some("1".into()),
            verdict: Verdict::Correct,
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 1000,
            seed: 0,
            latency_ms: 1,
            error: None,
        },
        source: None,
        problem: format!("Problem number {problem} asks for the sum of {problem} and {k}"),
        prompt: vec![TraceMessage {
            role: "user".into(),
            content: format!("Problem {problem}"),
        }],
        completion: String::new(),
        reasoning,
        content: "\\boxed{1}".into(),
        teacher: "t".into(),
        created_at: 0,
    }
}

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let traces = dir.join("traces");
    fs::create_dir_all(&traces).unwrap();
    let rows: Vec<TraceRow> = (0..6)
        .flat_map(|p| (0..2).map(move |k| row(p, k)))
        .collect();
    write_trace_shard(&traces.join("shard-00000.parquet"), &rows).unwrap();
    (traces, dir.join("out"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .map(|n| (n.clone(), fs::read(dir.join(&n)).unwrap()))
        .collect()
}

fn fail_at(step: &'static str) {
    FAIL_AT.with(|f| f.set(Some(step)));
}

#[test]
fn failed_rerun_leaves_the_previous_output_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, out) = setup(dir.path());
    run_filter(&traces, &out, &FilterConfig::default()).unwrap();
    let before = snapshot(&out);
    assert!(before.iter().any(|(n, _)| n == "openr1.parquet"));
    // The rerun would drop openr1.parquet and keep fewer rows; it fails at every step in turn.
    let mut cfg = FilterConfig {
        max_per_problem: Some(1),
        ..FilterConfig::default()
    };
    cfg.export.openr1 = false;
    for step in ["messages.parquet", "manifest.json", "rename-old"] {
        fail_at(step);
        let err = run_filter(&traces, &out, &cfg).unwrap_err().to_string();
        FAIL_AT.with(|f| f.set(None));
        assert!(err.contains("injected failure"), "{step}: {err}");
        assert_eq!(snapshot(&out), before, "{step}: the old output changed");
        assert_eq!(
            names(dir.path()),
            [".out.lock", "out", "traces"],
            "{step}: leftovers beside the output"
        );
    }
    let report = run_filter(&traces, &out, &cfg).unwrap();
    assert_eq!(report.kept, 6);
    assert!(!out.join("openr1.parquet").exists());
    assert!(out.join(super::MANIFEST_FILE).exists());
}

#[test]
fn failed_first_run_leaves_no_dataset_and_leftovers_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, out) = setup(dir.path());
    fail_at("messages.parquet");
    assert!(run_filter(&traces, &out, &FilterConfig::default()).is_err());
    FAIL_AT.with(|f| f.set(None));
    assert!(!out.exists());
    assert_eq!(names(dir.path()), [".out.lock", "traces"]);

    // What a SIGKILL leaves: a half-written temp dir and a moved-aside old output.
    for leftover in [".out.tmp-999999", ".out.old-999999"] {
        fs::create_dir_all(dir.path().join(leftover)).unwrap();
        fs::write(
            dir.path().join(leftover).join("messages.parquet"),
            b"partial",
        )
        .unwrap();
    }
    fs::create_dir_all(dir.path().join(".other.tmp-1")).unwrap();
    run_filter(&traces, &out, &FilterConfig::default()).unwrap();
    assert_eq!(
        names(dir.path()),
        [".other.tmp-1", ".out.lock", "out", "traces"]
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(".out.lock")).unwrap(),
        "",
        "lock released"
    );
}

#[test]
fn readers_refuse_a_filter_dir_without_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, out) = setup(dir.path());
    run_filter(&traces, &out, &FilterConfig::default()).unwrap();
    fs::remove_file(out.join(super::MANIFEST_FILE)).unwrap();
    let err = crate::sft::load_training_rows(&out, crate::sft::TrainingFormat::Traces)
        .unwrap_err()
        .to_string();
    assert!(err.contains("_manifest.json"), "{err}");
}

/// Outputs of versions before the `_` prefix hold `manifest.json`: still a complete dataset
/// for readers, and a rerun into such a directory replaces it (no "foreign file" refusal).
#[test]
fn outputs_with_the_old_manifest_name_are_read_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, out) = setup(dir.path());
    run_filter(&traces, &out, &FilterConfig::default()).unwrap();
    assert!(!out.join(super::LEGACY_MANIFEST_FILE).exists());
    fs::rename(out.join(super::MANIFEST_FILE), out.join(super::LEGACY_MANIFEST_FILE)).unwrap();
    match crate::sft::load_training_rows(&out, crate::sft::TrainingFormat::Traces).unwrap() {
        crate::sft::TrainingData::Conversations(rows) => assert!(!rows.is_empty()),
        crate::sft::TrainingData::Tokens(_) => panic!("a filter output holds conversations"),
    }
    run_filter(&traces, &out, &FilterConfig::default()).unwrap();
    assert!(out.join(super::MANIFEST_FILE).exists());
    assert!(!out.join(super::LEGACY_MANIFEST_FILE).exists());
}

#[test]
fn foreign_files_in_out_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, _) = setup(dir.path());
    // --out pointing at a directory that holds the traces themselves (or anything else).
    let err = run_filter(&traces, dir.path(), &FilterConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`traces`") && err.contains("does not write"),
        "{err}"
    );
    assert!(traces.join("shard-00000.parquet").exists());
}

#[test]
fn held_lock_fails_fast_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (traces, out) = setup(dir.path());
    let _held =
        crate::lock::OutputLock::acquire_beside(&out, "distill data filter (first)").unwrap();
    let err = run_filter(&traces, &out, &FilterConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("distill data filter (first)") && err.contains("in use"),
        "{err}"
    );
    assert!(!out.join(super::MANIFEST_FILE).exists());
}
