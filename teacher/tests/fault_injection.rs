//! Reliability of the OpenAI backend + sampler against a server that fails on purpose:
//! 5xx, 429 with Retry-After, connection resets, truncated bodies/streams and stalls longer than
//! the timeout. Every sample must still complete exactly once; a 400 is recorded, not retried.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{config_toml, start, write_problems, Fault, FaultPlan};
use datasets::traces::read_traces;
use datasets::records::{FinishReason, RunStatus, Verdict};
use inference::OpenAiBackend;
use teacher::TeacherConfig;

fn run(cfg: &TeacherConfig) -> teacher::RunReport {
    let backend = Arc::new(OpenAiBackend::new(cfg.openai.clone()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(teacher::run_sampling(cfg, backend, std::future::pending()))
        .unwrap()
}

fn check_faulty_run(stream: bool) {
    let server = start(FaultPlan::default());
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    write_problems(&problems, 8, Some(3));
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    let extra = if stream { "stream = true\n" } else { "" };
    std::fs::write(
        &cfg_path,
        config_toml(&problems, &out, &[server.base_url()], 3, extra),
    )
    .unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();

    let report = run(&cfg);
    assert!(report.is_complete(), "{:?}", report.counts);
    let rows = read_traces(&out).unwrap();
    assert_eq!(rows.len(), 24);
    let keys: HashSet<_> = rows
        .iter()
        .map(|r| (r.problem_id.clone(), r.sample_index))
        .collect();
    assert_eq!(keys.len(), 24, "no duplicates");

    // Every fault kind was actually exercised.
    for f in [
        Fault::ServerError,
        Fault::Reset,
        Fault::RateLimited,
        Fault::Truncated,
        Fault::Slow,
    ] {
        assert!(server.fault_count(f) > 0, "fault {f:?} never injected");
    }
    // The 400 problem: recorded once per sample, never retried.
    assert_eq!(
        server
            .stats
            .bad_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    for r in rows.iter().filter(|r| r.problem_id == "p3") {
        assert_eq!(r.finish_reason, FinishReason::Error);
        assert_eq!(r.verdict, Verdict::Error);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .contains("HTTP 400: prompt rejected: BADREQUEST"),
            "{:?}",
            r.error
        );
    }
    // Good rows: both reasoning parts recorded and graded.
    for r in rows.iter().filter(|r| r.problem_id != "p3") {
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.reasoning,
            format!("thinking about {}", inference::openai::request_seed(r.seed))
        );
        assert_eq!(r.content, "The answer is \\boxed{42}.");
        assert!(r.completion.contains("</think>"), "{}", r.completion);
        assert_eq!(r.extracted_answer.as_deref(), Some("42"));
        let want = if r.reference_answer == "42" {
            Verdict::Correct
        } else {
            Verdict::Incorrect
        };
        assert_eq!(r.verdict, want);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (11, 13));
        assert_eq!(r.teacher, "fault-teacher");
        assert_eq!(r.prompt.len(), 1);
        assert!(r.prompt[0].content.starts_with(&r.problem));
        assert_eq!((r.temperature, r.top_p, r.max_tokens), (0.6, 0.95, 64));
        assert!(r.error.is_none());
    }
    assert_eq!(report.counts.failed, 3);
    assert_eq!(report.counts.correct, 12);

    // The manifest says complete and records the input hash.
    let m = teacher::manifest::Manifest::read(&out).unwrap().unwrap();
    assert_eq!(m.status, RunStatus::Complete);
    assert_eq!(m.counts.rows, 24);
    assert_eq!(m.inputs[0].sha256.len(), 64);
    assert_eq!(m.schema_version, datasets::traces::TRACE_SCHEMA_VERSION);

    // A rerun finds nothing to do and sends no request.
    let before = server
        .stats
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let again = run(&cfg);
    assert_eq!(again.new_rows, 0);
    assert_eq!(
        server
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    assert_eq!(read_traces(&out).unwrap().len(), 24);
}

#[test]
fn all_samples_complete_despite_faults() {
    check_faulty_run(false);
}

#[test]
fn all_samples_complete_despite_faults_streaming() {
    check_faulty_run(true);
}

#[test]
fn dead_replica_is_routed_around() {
    let server = start(FaultPlan {
        faults: false,
        ..Default::default()
    });
    // A replica that accepts connections and drops them: every request to it is a transient
    // fault. (A port nobody listens on is refused at start instead: see third_party.rs.)
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", dead.local_addr().unwrap());
    std::thread::spawn(move || dead.incoming().for_each(drop));
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    write_problems(&problems, 6, None);
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        config_toml(&problems, &out, &[server.base_url(), dead_url], 2, ""),
    )
    .unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();
    let report = run(&cfg);
    assert!(report.is_complete());
    assert_eq!(read_traces(&out).unwrap().len(), 12);
}

#[test]
fn settings_change_is_refused_on_resume() {
    let server = start(FaultPlan {
        faults: false,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    write_problems(&problems, 2, None);
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        config_toml(&problems, &out, &[server.base_url()], 1, ""),
    )
    .unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();
    run(&cfg);
    let changed = TeacherConfig::load(&cfg_path, &["sampling.temperature=1.0".into()]).unwrap();
    let backend = Arc::new(OpenAiBackend::new(changed.openai.clone()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(teacher::run_sampling(
            &changed,
            backend,
            std::future::pending(),
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different settings"), "{err}");
}

#[test]
fn malformed_problem_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    std::fs::write(
        &problems,
        "{\"id\": \"a\", \"problem\": \"x\", \"answer\": \"1\"}\n{\"id\": \"b\", \"problem\": \"y\", \"answer\": \"2\"}\n{\"id\": \"c\", \"problem\": oops}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        config_toml(&problems, &out, &["http://127.0.0.1:9/v1".into()], 1, ""),
    )
    .unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();
    let backend = Arc::new(OpenAiBackend::new(cfg.openai.clone()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(teacher::run_sampling(&cfg, backend, std::future::pending()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("problems.jsonl") && err.contains(":3"),
        "{err}"
    );
    assert!(
        !out.join(teacher::manifest::MANIFEST_FILE).exists() && !out.join("manifest.json").exists(),
        "nothing written for bad input"
    );
}

#[test]
fn stop_signal_flushes_finished_samples_and_resume_completes() {
    let server = start(FaultPlan {
        faults: false,
        delay: std::time::Duration::from_millis(30),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    write_problems(&problems, 20, None);
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        config_toml(&problems, &out, &[server.base_url()], 4, ""),
    )
    .unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();
    let backend = Arc::new(OpenAiBackend::new(cfg.openai.clone()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // "Ctrl-C" after a few waves of requests.
    let stop = async { tokio::time::sleep(std::time::Duration::from_millis(150)).await };
    let report = rt
        .block_on(teacher::run_sampling(&cfg, backend, stop))
        .unwrap();
    assert!(report.interrupted);
    assert!(
        report.counts.rows > 0 && report.counts.rows < 80,
        "{:?}",
        report.counts
    );
    // Every finished sample is on disk, including the partial last shard.
    assert_eq!(read_traces(&out).unwrap().len(), report.counts.rows);
    let m = teacher::manifest::Manifest::read(&out).unwrap().unwrap();
    assert_eq!(m.status, RunStatus::Interrupted);
    assert_eq!(m.counts.unfinished, 80 - report.counts.rows);
    let done = run(&cfg);
    assert!(done.is_complete());
    assert_eq!(done.new_rows, 80 - report.counts.rows);
    assert_eq!(read_traces(&out).unwrap().len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_plain_answers_from_the_instant_server() {
    use inference::backend::{Backend, ChatRequest, Message, Prompt};
    let (addr, fut) = inference::instant_server::bind_instant("127.0.0.1:0", std::future::pending())
        .await
        .unwrap();
    tokio::spawn(fut);
    let request = ChatRequest {
        prompt: Prompt::Messages(vec![Message::user("2+2?")]),
        max_tokens: 16,
        temperature: 0.6,
        top_p: 0.95,
        seed: Some(1),
        stop: vec![],
    };
    for stream in [false, true] {
        let cfg = inference::OpenAiConfig {
            base_urls: vec![format!("http://{addr}/v1")],
            stream,
            ..Default::default()
        };
        let c = OpenAiBackend::new(cfg)
            .unwrap()
            .complete(request.clone())
            .await
            .unwrap();
        assert_eq!(
            c.reasoning, "Add the numbers: 2 + 2 = 4.",
            "stream={stream}"
        );
        assert_eq!(c.content, "The answer is \\boxed{4}.");
        assert_eq!(c.completion_tokens, 20);
    }
}
