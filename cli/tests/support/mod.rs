//! Helpers of the CLI tests that drive the `distill` binary against the stub OpenAI server.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use inference::stub_server::REJECT_MARKER;

/// The `distill` binary.
pub fn distill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_distill"))
}

/// Runs `cmd`, killing it (and failing) after `limit`.
pub fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_within(child, limit)
}

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}; stderr:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` problems with answer 42; those in `rejected` carry the stub's 400 marker.
pub fn write_problems(path: &Path, n: usize, rejected: &[usize]) {
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

/// Starts `cmd` in the background and waits until it holds the output lock of `dir` (the lock
/// file names its pid), so a second run is sure to find it held.
pub fn start_holding_lock(mut cmd: Command, dir: &Path) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.join(".distill.lock");
    let start = Instant::now();
    loop {
        let owner = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if owner.and_then(|o| o["pid"].as_u64()) == Some(u64::from(child.id())) {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("first run ended ({status}) before taking the lock:\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `cmd` fails within a few seconds with the lock error naming `holder`'s pid.
pub fn assert_refused_naming(cmd: Command, holder: &Child, what: &str) {
    let started = Instant::now();
    let o = run_within(cmd, Duration::from_secs(30));
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "{what}: the second run succeeded:\n{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{what}: took {:?}",
        started.elapsed()
    );
    assert!(err.contains("in use by another run"), "{what}: {err}");
    assert!(
        err.contains(&format!("pid {}", holder.id())),
        "{what}: holder not named: {err}"
    );
}

/// An eval config scoring `model` at `base_url` on one problem file (k = 2).
pub fn eval_config(dir: &Path, problems: &Path, base_url: &str, out: &Path) -> PathBuf {
    let text = format!(
        "out_dir = {:?}\n[model]\nname = \"stub\"\nbackend = \"openai\"\ncheckpoint = \"stub-model\"\nconcurrency = 2\n[model.openai]\nbase_urls = [\"{base_url}\"]\nmax_retries = 2\nbackoff_initial_ms = 1\n[protocol]\nmax_tokens = 64\n[[benchmarks]]\nname = \"toy\"\npath = {:?}\nsamples = 2\n[stats]\nbootstrap_resamples = 20\n",
        out.display().to_string(),
        problems.display().to_string(),
    );
    let path = dir.join("eval.toml");
    std::fs::write(&path, text).unwrap();
    path
}
