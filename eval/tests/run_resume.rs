//! Eval runs through the real runner, records and summaries, against a scripted backend whose
//! answers depend only on the per-sample seed — so an interrupted-then-resumed run must end
//! with exactly the records and numbers of an uninterrupted one.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datasets::eval_records::read_eval_record_dir;
use eval::runner::{records_dir, sample_seed};
use eval::EvalConfig;
use futures::future::BoxFuture;
use inference::{Backend, BackendError, ChatRequest, Completion, FinishReason, Prompt};

/// Answers "What is N plus one?" with N+1 when the seed says so, else with N (wrong); fails
/// transiently (nothing recorded) once `fail_after` calls have been made.
struct Scripted {
    calls: AtomicUsize,
    fail_after: usize,
    permanent_error_for: Option<String>,
}

impl Scripted {
    fn new(fail_after: usize) -> Self {
        Self { calls: AtomicUsize::new(0), fail_after, permanent_error_for: None }
    }
}

fn number_in(prompt: &Prompt) -> i64 {
    let Prompt::Messages(m) = prompt else { panic!("eval sends chat messages") };
    assert_eq!(m.len(), 1, "R1 protocol: no system prompt");
    assert_eq!(m[0].role, "user");
    assert!(m[0].content.ends_with("\nPlease reason step by step, and put your final answer within \\boxed{}."));
    let text = &m[0].content;
    let start = text.find("What is ").unwrap() + 8;
    let end = text[start..].find(' ').unwrap() + start;
    text[start..end].parse().unwrap()
}

fn correct_for(seed: u64) -> bool {
    !seed.is_multiple_of(3)
}

impl Backend for Scripted {
    fn model_name(&self) -> &str {
        "scripted"
    }

    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail_after {
                return Err(BackendError::RetriesExhausted { attempts: 3, last: "503".into() });
            }
            let x = number_in(&req.prompt);
            if self.permanent_error_for.as_deref() == Some(&x.to_string()) {
                return Ok(Completion::failed("HTTP 400: prompt too long", 1));
            }
            let seed = req.seed.expect("eval sends per-sample seeds");
            let answer = if correct_for(seed) { x + 1 } else { x };
            let truncated = seed.is_multiple_of(7);
            let reasoning = format!("{x} plus one is {answer}");
            let content = if truncated { String::new() } else { format!("The answer is \\boxed{{{answer}}}.") };
            let completion = if truncated { reasoning.clone() } else { format!("{reasoning}\n</think>\n\n{content}") };
            Ok(Completion {
                reasoning,
                content,
                completion,
                finish_reason: if truncated { FinishReason::Length } else { FinishReason::Stop },
                prompt_tokens: 20,
                completion_tokens: 10 + (seed % 50) as u32,
                latency_ms: 1,
                error: None,
                thinking: None,
            })
        })
    }
}

fn write_problems(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("problems.jsonl");
    let mut text = String::new();
    for i in 0..n {
        let subject = if i % 2 == 0 { "Algebra" } else { "Geometry" };
        text.push_str(&format!(
            "{{\"qid\": \"q{i}\", \"question\": \"What is {} plus one?\", \"gold\": {}, \"subject\": \"{subject}\", \"level\": {}}}\n",
            10 * i,
            10 * i + 1,
            1 + i % 3
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn config(out: &Path, problems: &Path, k: usize) -> EvalConfig {
    let text = format!(
        r#"
out_dir = "{}"
shard_size = 5
[model]
name = "scripted"
backend = "openai"
checkpoint = "scripted"
concurrency = 4
[[benchmarks]]
name = "toy"
path = "{}"
samples = {k}
columns = {{ id = "qid", problem = "question", answer = "gold" }}
[stats]
bootstrap_resamples = 200
"#,
        out.display(),
        problems.display()
    );
    EvalConfig::from_toml(&text, &[], "test.toml").unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn uninterrupted_run_matches_hand_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let problems = write_problems(tmp.path(), 6);
    let cfg = config(&tmp.path().join("run"), &problems, 4);
    let backend = Arc::new(Scripted::new(usize::MAX));
    let summary = rt().block_on(eval::run_eval(&cfg, backend.clone())).unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), 24);

    let b = &summary.benchmarks["toy"];
    assert_eq!((b.n_problems, b.n_samples, b.k), (6, 24, 4));
    // Expected numbers straight from the seed rule.
    let mut pass1 = 0.0;
    let mut truncated = 0;
    for i in 0..6 {
        let mut c = 0;
        for s in 0..4 {
            let seed = sample_seed(0, "toy", &format!("q{i}"), s);
            // A truncated response has no box; its last number is still the answer.
            c += correct_for(seed) as usize;
            truncated += seed.is_multiple_of(7) as usize;
        }
        pass1 += c as f64 / 4.0;
    }
    assert!((b.pass_at_1 - pass1 / 6.0).abs() < 1e-12, "{} vs {}", b.pass_at_1, pass1 / 6.0);
    assert!((b.truncation_rate - truncated as f64 / 24.0).abs() < 1e-12);
    assert!(b.breakdown.contains_key("subject") && b.breakdown.contains_key("level"));

    let out = &cfg.out_dir;
    for f in ["summary.json", "summary.md", "config.toml", "run.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let records = read_eval_record_dir(&records_dir(out, "toy")).unwrap();
    assert_eq!(records.len(), 24);
    let r = &records[0];
    assert_eq!(r.temperature, 0.6);
    assert_eq!(r.top_p, 0.95);
    assert_eq!(r.max_tokens, 32768);
    assert_eq!(r.model, "scripted");
    assert!(r.subject.is_some());
    // Shards of at most 5 rows.
    let shards = std::fs::read_dir(records_dir(out, "toy")).unwrap().count();
    assert_eq!(shards, 5);

    // A rerun has nothing left to do.
    let again = Arc::new(Scripted::new(usize::MAX));
    let s2 = rt().block_on(eval::run_eval(&cfg, again.clone())).unwrap();
    assert_eq!(again.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s2, summary);
}

#[test]
fn interrupted_run_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let problems = write_problems(tmp.path(), 5);

    let reference_cfg = config(&tmp.path().join("reference"), &problems, 3);
    let reference = rt().block_on(eval::run_eval(&reference_cfg, Arc::new(Scripted::new(usize::MAX)))).unwrap();

    let cfg = config(&tmp.path().join("resumed"), &problems, 3);
    // First attempt dies after 7 completions (the backend gives up on the 8th).
    let err = rt().block_on(eval::run_eval(&cfg, Arc::new(Scripted::new(7)))).unwrap_err();
    let err = inference::error_chain(&err);
    assert!(err.contains("toy/q") && err.contains("503"), "{err}");
    let partial = read_eval_record_dir(&records_dir(&cfg.out_dir, "toy")).unwrap();
    assert!(!partial.is_empty() && partial.len() <= 7, "{} rows", partial.len());

    let second = Arc::new(Scripted::new(usize::MAX));
    let resumed = rt().block_on(eval::run_eval(&cfg, second.clone())).unwrap();
    assert_eq!(second.calls.load(Ordering::SeqCst), 15 - partial.len());
    let rows = read_eval_record_dir(&records_dir(&cfg.out_dir, "toy")).unwrap();
    let mut keys: Vec<_> = rows.iter().map(|r| (r.problem_id.clone(), r.sample_index)).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((rows.len(), keys.len()), (15, 15), "exactly problems × k rows, no duplicates");
    assert_eq!(resumed.benchmarks, reference.benchmarks);

    // Raising k later samples only the new indices.
    let more = config(&cfg.out_dir, &problems, 5);
    let third = Arc::new(Scripted::new(usize::MAX));
    let s = rt().block_on(eval::run_eval(&more, third.clone())).unwrap();
    assert_eq!(third.calls.load(Ordering::SeqCst), 10);
    assert_eq!(s.benchmarks["toy"].k, 5);
}

#[test]
fn failed_samples_are_recorded_then_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let problems = write_problems(tmp.path(), 3);
    let cfg = config(&tmp.path().join("run"), &problems, 2);
    let mut flaky = Scripted::new(usize::MAX);
    flaky.permanent_error_for = Some("10".into());
    // Permanent failures fail the run (non-zero exit), after the summary is written.
    let err = rt().block_on(eval::run_eval(&cfg, Arc::new(flaky))).unwrap_err().to_string();
    assert!(err.contains("2 samples failed permanently") && err.contains("first: toy/"), "{err}");
    let s = eval::RunSummary::load(&cfg.out_dir).unwrap();
    let b = &s.benchmarks["toy"];
    assert!((b.error_rate - 2.0 / 6.0).abs() < 1e-12);
    assert_eq!(b.problems[1].correct, 0, "failed samples count as incorrect");

    let healthy = Arc::new(Scripted::new(usize::MAX));
    let s = rt().block_on(eval::run_eval(&cfg, healthy.clone())).unwrap();
    assert_eq!(healthy.calls.load(Ordering::SeqCst), 2, "only the failed samples are redone");
    assert_eq!(s.benchmarks["toy"].error_rate, 0.0);
    assert_eq!(s.benchmarks["toy"].n_samples, 6);
}

#[test]
fn resume_with_another_protocol_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let problems = write_problems(tmp.path(), 2);
    let cfg = config(&tmp.path().join("run"), &problems, 1);
    rt().block_on(eval::run_eval(&cfg, Arc::new(Scripted::new(usize::MAX)))).unwrap();
    let mut hotter = cfg.clone();
    hotter.protocol.temperature = 1.0;
    let err = rt().block_on(eval::run_eval(&hotter, Arc::new(Scripted::new(usize::MAX)))).unwrap_err();
    assert!(err.to_string().contains("protocol"), "{err}");
}
