//! One writer per output directory, through the binary: while one `teacher sample`, `student
//! train` or `eval run` writes a directory, a second one on the same directory fails at once
//! naming the holder (pid, host, command), instead of mixing its output in.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use inference::stub_server::{StubConfig, StubServer};
use support::{assert_refused_naming, distill, eval_config, start_holding_lock, write_problems};

/// A stub slow enough that a run of a few samples holds its lock for seconds.
fn slow_stub() -> StubServer {
    StubServer::start(StubConfig {
        delay: Duration::from_millis(400),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_second_teacher_sample_on_one_out_fails_at_once_naming_the_first() {
    let server = slow_stub();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 20, &[]);
    let out = dir.path().join("out");
    let sample = |temperature: &str| {
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
            "--max-tokens",
            "64",
        ]);
        c.args(["--concurrency", "1", "--temperature", temperature]);
        c
    };
    let mut first = start_holding_lock(sample("0.6"), &out);
    assert_refused_naming(sample("1.0"), &first, "teacher sample");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_second_eval_run_on_one_out_dir_fails_at_once_naming_the_first() {
    let server = slow_stub();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 20, &[]);
    let out = dir.path().join("run");
    let cfg = eval_config(dir.path(), &problems, &server.base_url(), &out);
    let eval = || {
        let mut c = distill();
        c.args(["eval", "run", "--config"]).arg(&cfg);
        c
    };
    let mut first = start_holding_lock(eval(), &out);
    assert_refused_naming(eval(), &first, "eval run");
    first.kill().unwrap();
    first.wait().unwrap();
}

fn train_config(dir: &Path, out: &Path) -> std::path::PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    let train = dir.join("rows.jsonl");
    let mut rows = String::new();
    for i in 0..8u32 {
        let ids: Vec<u32> = (0..8).map(|j| 3 + (i * 31 + j * 17) % 500).collect();
        let labels: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        rows += &format!(
            "{}\n",
            serde_json::json!({"input_ids": ids, "labels": labels})
        );
    }
    std::fs::write(&train, rows).unwrap();
    let text = format!(
        "[model]\npath = {:?}\n[data]\ntrain = {:?}\nformat = \"tokens\"\npacking = false\nmax_seq_len = 16\n[optim]\nlr = 1e-3\n[schedule]\nkind = \"constant\"\nwarmup_steps = 0\n[train]\nbatch_size = 1\ngrad_accum = 1\nmax_steps = 1000000\n[output]\ndir = {:?}\n",
        fixture.display().to_string(),
        train.display().to_string(),
        out.display().to_string(),
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_second_student_train_on_one_output_dir_fails_at_once_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student");
    let cfg = train_config(dir.path(), &out);
    let train = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
        c.args(["student", "train", "--no-progress", "--config"])
            .arg(&cfg);
        c
    };
    let mut first = start_holding_lock(train(), &out);
    assert_refused_naming(train(), &first, "student train");
    first.kill().unwrap();
    first.wait().unwrap();
}
