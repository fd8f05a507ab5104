//! `distill teacher sample` and `distill eval run` against the stub OpenAI server: flags alone
//! give a sampling run everything it needs, and permanently failed samples make the command
//! exit non-zero (naming how many and the first error) until `--retry-failed` redoes them.

mod support;

use std::time::Duration;

use datasets::traces::read_traces;
use inference::stub_server::{StubConfig, StubServer};
use support::{distill, eval_config, run_within, stderr, write_problems};

#[test]
fn teacher_sample_runs_from_flags_without_a_config() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 3, &[]);
    let out = dir.path().join("out");
    let mut c = distill();
    c.args(["teacher", "sample", "--problems"])
        .arg(&problems)
        .arg("--out")
        .arg(&out);
    c.args([
        "--base-url",
        &server.base_url(),
        "--model",
        "stub-model",
        "--samples",
        "2",
        "--max-tokens",
        "64",
    ]);
    let o = run_within(c, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_traces(&out).unwrap().len(), 6);

    // A config without `problems` / `out_dir`, completed by the flags.
    let cfg = dir.path().join("partial.toml");
    std::fs::write(&cfg, format!("[sampling]\nsamples = 1\nmax_tokens = 64\n[openai]\nbase_urls = [\"{}\"]\nmodel = \"stub-model\"\n", server.base_url())).unwrap();
    let out2 = dir.path().join("out2");
    let mut c = distill();
    c.args(["teacher", "sample", "--config"])
        .arg(&cfg)
        .arg("--problems")
        .arg(&problems)
        .arg("--out")
        .arg(&out2);
    let o = run_within(c, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_traces(&out2).unwrap().len(), 3);
}

#[test]
fn teacher_sample_names_a_required_key_no_layer_gives() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = distill();
    c.args(["teacher", "sample", "--out"])
        .arg(dir.path().join("out"));
    let o = run_within(c, Duration::from_secs(30));
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("`problems`") && err.contains("--problems"),
        "{err}"
    );
}

#[test]
fn teacher_sample_exits_nonzero_on_permanent_failures_until_retry_failed_redoes_them() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 4, &[2]);
    let out = dir.path().join("out");
    let sample = |extra: &[&str]| {
        let mut c = distill();
        c.args(["teacher", "sample", "--problems"])
            .arg(&problems)
            .arg("--out")
            .arg(&out);
        c.args([
            "--base-url",
            &server.base_url(),
            "--model",
            "stub-model",
            "--samples",
            "2",
            "--max-tokens",
            "64",
        ]);
        c.args(extra);
        run_within(c, Duration::from_secs(60))
    };
    let o = sample(&[]);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "permanent failures must fail the run:\n{err}"
    );
    assert!(
        err.contains("2 of 8 samples failed permanently") && err.contains("HTTP 400"),
        "{err}"
    );
    assert!(err.contains("--retry-failed"), "{err}");
    // Rerunning does not hide them.
    let o = sample(&[]);
    assert!(
        !o.status.success() && stderr(&o).contains("failed permanently"),
        "{}",
        stderr(&o)
    );

    server.set_reject(false);
    let o = sample(&["--retry-failed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("replaced 2 previously failed samples"),
        "{}",
        stderr(&o)
    );
    let rows = read_traces(&out).unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.error.is_none()));
}

#[test]
fn eval_run_exits_nonzero_when_samples_failed_permanently() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 3, &[1]);
    let out = dir.path().join("run");
    let cfg = eval_config(dir.path(), &problems, &server.base_url(), &out);
    let eval = || {
        let mut c = distill();
        c.args(["eval", "run", "--config"]).arg(&cfg);
        run_within(c, Duration::from_secs(60))
    };
    let o = eval();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("2 samples failed permanently") && err.contains("toy/p1#"),
        "{err}"
    );
    assert!(
        out.join("summary.json").exists(),
        "the summary is still written"
    );

    server.set_reject(false);
    let o = eval();
    assert!(o.status.success(), "{}", stderr(&o));
    let records = datasets::eval_records::read_eval_record_dir(&out.join("records/toy")).unwrap();
    assert_eq!(records.len(), 6, "failed rows replaced, not duplicated");
    assert!(records.iter().all(|r| r.error.is_none()));
}
