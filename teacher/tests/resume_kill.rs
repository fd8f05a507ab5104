//! Crash safety: a sampling process is SIGKILLed mid-run, then the same run is resumed. The
//! result must be exactly problems × k rows, no duplicates, every shard readable.
//!
//! The child is this test binary re-executed with `DISTILL_KILL_CHILD` set, running
//! [`child_sampler`] against a slow server owned by the parent.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config_toml, start, write_problems, FaultPlan};
use datasets::traces::{list_trace_shards, read_trace_file, read_traces};
use datasets::records::RunStatus;
use inference::OpenAiBackend;
use teacher::TeacherConfig;

const CHILD_ENV: &str = "DISTILL_KILL_CHILD_CONFIG";

fn run_config(path: &std::path::Path) -> teacher::RunReport {
    let cfg = TeacherConfig::load(path, &[]).unwrap();
    let backend = Arc::new(OpenAiBackend::new(cfg.openai.clone()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(teacher::run_sampling(&cfg, backend, std::future::pending()))
        .unwrap()
}

/// Only does something in the child process.
#[test]
fn child_sampler() {
    if let Ok(cfg) = std::env::var(CHILD_ENV) {
        run_config(&PathBuf::from(cfg));
    }
}

#[test]
fn sigkill_then_resume_gives_exactly_problems_times_k() {
    // ~40 ms per request at concurrency 8, 30 × 4 = 120 samples: ~0.6 s of work, shards of 5.
    let server = start(FaultPlan {
        faults: false,
        delay: Duration::from_millis(40),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    write_problems(&problems, 30, None);
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        config_toml(&problems, &out, &[server.base_url()], 4, ""),
    )
    .unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_sampler",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &cfg_path)
        .spawn()
        .unwrap();
    // Kill as soon as a few shards are on disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shards = if out.exists() {
            list_trace_shards(&out).unwrap().len()
        } else {
            0
        };
        if shards >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "child never wrote shards");
        assert!(
            child.try_wait().unwrap().is_none(),
            "child finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let partial = read_traces(&out).unwrap();
    assert!(
        !partial.is_empty() && partial.len() < 120,
        "killed mid-run: {} rows",
        partial.len()
    );
    let manifest = teacher::manifest::Manifest::read(&out).unwrap().unwrap();
    assert_eq!(
        manifest.status,
        RunStatus::Running,
        "the killed run never got to finish its manifest"
    );

    let report = run_config(&cfg_path);
    assert!(report.is_complete(), "{:?}", report.counts);
    assert_eq!(report.new_rows, 120 - partial.len());
    let mut seen = HashSet::new();
    let mut total = 0;
    for shard in list_trace_shards(&out).unwrap() {
        for r in read_trace_file(&shard).unwrap() {
            assert!(
                seen.insert((r.problem_id.clone(), r.sample_index)),
                "duplicate {}#{}",
                r.problem_id,
                r.sample_index
            );
            total += 1;
        }
    }
    assert_eq!(total, 120);
    // Seeds are a function of identity only: the resumed samples carry the seeds the first run
    // would have used.
    let rows = read_traces(&out).unwrap();
    for r in &rows {
        assert_eq!(
            r.seed,
            teacher::sampler::trace_seed(0, &r.problem_id, r.sample_index)
        );
    }
    // No temp files remain.
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "leftover temp file {name}");
    }
    assert_eq!(
        teacher::manifest::Manifest::read(&out)
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Complete
    );
}
