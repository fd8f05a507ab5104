//! Sampling runs against a server that behaves like third-party ones (the stub server): failures
//! must never pass silently — cut streams are redone, a run that cannot fit the server's context
//! or names a model it does not serve stops before any request, an unreachable replica is
//! reported at once, and permanently failed rows are counted, named and (on request) redone and
//! replaced.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datasets::records::FinishReason;
use datasets::traces::read_traces;
use inference::stub_server::{StubConfig, StubServer, REJECT_MARKER};
use inference::OpenAiBackend;
use teacher::TeacherConfig;

fn write_problems(path: &Path, n: usize, rejected: &[usize]) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..n {
        let marker = if rejected.contains(&i) {
            REJECT_MARKER
        } else {
            ""
        };
        let line = serde_json::json!({"id": format!("p{i}"), "problem": format!("{marker} What is {i}?"), "answer": "42"});
        writeln!(f, "{line}").unwrap();
    }
}

fn config(dir: &Path, base_url: &str, n: usize, rejected: &[usize], extra: &str) -> TeacherConfig {
    let problems = dir.join("p.jsonl");
    write_problems(&problems, n, rejected);
    let text = format!(
        "problems = {:?}\nout_dir = {:?}\n[sampling]\nsamples = 4\n{extra}\n[run]\nconcurrency = 4\nshard_size = 8\nprogress = false\n[openai]\nbase_urls = [\"{base_url}\"]\nmodel = \"stub-model\"\nbackoff_initial_ms = 1\nbackoff_max_ms = 10\nmax_retries = 4\nstream = true\n",
        problems.display().to_string(),
        dir.join("out").display().to_string(),
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    TeacherConfig::load(&path, &[]).unwrap()
}

fn run(cfg: &TeacherConfig) -> Result<teacher::RunReport, teacher::TeacherError> {
    let backend = Arc::new(OpenAiBackend::new(cfg.openai.clone()).unwrap());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(teacher::run_sampling(cfg, backend, std::future::pending()))
}

#[test]
fn streams_cut_with_done_and_no_finish_reason_are_redone_not_recorded_empty() {
    let server = StubServer::start(StubConfig {
        cut_streams: 1,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server.base_url(), 15, &[], "max_tokens = 256");
    let report = run(&cfg).unwrap();
    assert!(report.is_complete());
    assert_eq!(report.counts.failed, 0);
    let rows = read_traces(&cfg.out_dir).unwrap();
    assert_eq!(rows.len(), 60);
    for r in &rows {
        assert_eq!(
            r.content, "The answer is \\boxed{42}.",
            "{}#{}",
            r.problem_id, r.sample_index
        );
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert!(r.correct());
    }
    assert_eq!(
        server.stats.completions.load(Ordering::SeqCst),
        120,
        "each stream redone once"
    );
}

#[test]
fn max_tokens_beyond_the_servers_context_stops_before_any_request() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The teacher's default max_tokens (32768) against a 4096-token server.
    let cfg = config(dir.path(), &server.base_url(), 3, &[], "");
    let err = inference::error_chain(&run(&cfg).unwrap_err());
    assert!(
        err.contains("max_model_len 4096") && err.contains("32768"),
        "{err}"
    );
    assert_eq!(server.stats.completions.load(Ordering::SeqCst), 0);
    assert!(read_traces(&cfg.out_dir).unwrap().is_empty());
}

#[test]
fn a_model_name_the_server_does_not_serve_stops_the_run() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &server.base_url(), 3, &[], "max_tokens = 256");
    cfg.openai.model = "no-such-model".into();
    let err = inference::error_chain(&run(&cfg).unwrap_err());
    assert!(
        err.contains("no-such-model") && err.contains("stub-model"),
        "{err}"
    );
    assert_eq!(server.stats.completions.load(Ordering::SeqCst), 0);
}

#[test]
fn an_unreachable_base_url_fails_the_run_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &url, 3, &[], "max_tokens = 256");
    // The defaults: ten retries from 500 ms would take minutes as transient faults.
    cfg.openai.max_retries = 10;
    cfg.openai.backoff_initial_ms = 500;
    let started = Instant::now();
    let err = inference::error_chain(&run(&cfg).unwrap_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains(&url) && err.contains("unreachable"), "{err}");
}

#[test]
fn permanent_failures_are_reported_and_retry_failed_replaces_them() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &server.base_url(),
        6,
        &[1, 4],
        "max_tokens = 256",
    );

    let first = run(&cfg).unwrap();
    assert!(first.is_complete());
    assert_eq!(first.counts.failed, 8, "2 problems × 4 samples");
    let err = first.first_error.clone().unwrap();
    assert!(
        err.contains("HTTP 400") && err.contains("rejected"),
        "{err}"
    );

    // A plain rerun keeps them (failed rows are final) and still reports them.
    let again = run(&cfg).unwrap();
    assert_eq!((again.new_rows, again.counts.failed), (0, 8));
    assert!(again.first_error.is_some());

    server.set_reject(false);
    cfg.run.retry_failed = true;
    let retried = run(&cfg).unwrap();
    assert_eq!((retried.new_rows, retried.replaced), (8, 8));
    assert_eq!(retried.counts.failed, 0);
    assert_eq!(retried.counts.rows, 24);
    assert!(retried.first_error.is_none());
    let rows = read_traces(&cfg.out_dir).unwrap();
    assert_eq!(rows.len(), 24, "each failed row replaced, not duplicated");
    let keys: HashSet<_> = rows.iter().map(|r| r.sample.key()).collect();
    assert_eq!(keys.len(), 24);
    assert!(rows.iter().all(|r| r.error.is_none() && r.correct()));
    let m = teacher::manifest::Manifest::read(&cfg.out_dir)
        .unwrap()
        .unwrap();
    assert_eq!((m.counts.rows, m.counts.failed), (24, 0));
}

#[test]
fn a_replacement_cut_short_by_a_kill_is_finished_on_the_next_start() {
    use datasets::records::shards::list_shards;
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &server.base_url(), 2, &[0], "max_tokens = 256");
    run(&cfg).unwrap();
    // Simulate a kill between the two steps: the redone rows' shard is written, the failed rows
    // are still in theirs.
    let before = list_shards(&cfg.out_dir).unwrap();
    let failed: Vec<_> = read_traces(&cfg.out_dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.error.is_some())
        .collect();
    assert_eq!(failed.len(), 4);
    let redone: Vec<_> = failed
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.sample.error = None;
            r.sample.finish_reason = FinishReason::Stop;
            r.sample.verdict = datasets::records::Verdict::Correct;
            r
        })
        .collect();
    let next = cfg
        .out_dir
        .join(format!("part-{:05}.parquet", before.len() + 10));
    datasets::traces::write_trace_shard(&next, &redone).unwrap();
    assert_eq!(
        read_traces(&cfg.out_dir).unwrap().len(),
        12,
        "both rows on disk"
    );

    cfg.run.retry_failed = true;
    let report = run(&cfg).unwrap();
    assert_eq!(
        (report.new_rows, report.counts.failed, report.counts.rows),
        (0, 0, 8)
    );
    let rows = read_traces(&cfg.out_dir).unwrap();
    assert_eq!(rows.len(), 8, "the superseded failed rows are gone");
    assert!(rows.iter().all(|r| r.error.is_none()));
}
