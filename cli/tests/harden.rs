//! The `distill` binary refuses what it cannot do, at once and with a clear error: a second
//! writer on a locked output directory, configs with unknown or contradictory keys, models too
//! large for the machine and requests beyond a model's context.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use datasets::records::{FinishReason, SampleRecord, Verdict};
use datasets::traces::{write_trace_shard, TraceMessage, TraceRow};

fn distill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_distill"))
}

/// Runs `cmd`, killing it after `limit` (a validation error must come long before).
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn trace(p: u32, k: u32, words: usize) -> TraceRow {
    let reasoning: String = (0..words)
        .map(|i| format!("w{} ", ((i as u32).wrapping_mul(2_654_435_761) ^ (p * 7 + k)) % 5000))
        .collect();
    TraceRow {
        sample: SampleRecord {
            problem_id: format!("p{p:05}"),
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
        problem: format!("Problem {p}: how many apples are in {} baskets", p * 3),
        prompt: vec![TraceMessage {
            role: "user".into(),
            content: format!("Problem {p}"),
        }],
        completion: String::new(),
        reasoning,
        content: "\\boxed{1}".into(),
        teacher: "t".into(),
        created_at: 0,
    }
}

#[test]
fn second_filter_on_one_out_dir_fails_fast_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    for s in 0..6u32 {
        let rows: Vec<TraceRow> = (0..500).map(|i| trace(s * 500 + i, 0, 1400)).collect();
        write_trace_shard(&traces.join(format!("shard-{s:05}.parquet")), &rows).unwrap();
    }
    let out = dir.path().join("out");
    let filter = || {
        let mut c = distill();
        c.args(["data", "filter", "--traces"])
            .arg(&traces)
            .arg("--out")
            .arg(&out);
        c
    };
    let mut first = filter()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = first.id();
    let lock = dir.path().join(".out.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains(&format!("\"pid\":{pid}"))
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it was seen holding the lock"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    let second = run_within(filter(), Duration::from_secs(60));
    let err = stderr(&second);
    assert!(!second.status.success(), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "not fast: {:?}",
        t.elapsed()
    );
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("distill data filter"),
        "{err}"
    );
    let status = first.wait().unwrap();
    assert!(status.success());
    assert!(out.join("_manifest.json").exists());
}

#[test]
fn quickstart_rejects_unknown_and_contradictory_keys_before_any_stage() {
    let dir = tempfile::tempdir().unwrap();
    for (set, want) in [
        ("nosuch.key=1", "nosuch"),
        ("sample.nosuch=1", "sample.nosuch"),
        ("teacher.train.nosuch=1", "nosuch"),
        ("filter.length.min=10", "length.min"),
        // The quickstart trains on CPU peers only.
        (r#"student.train.devices=["cuda:0"]"#, "student.train.devices"),
        (r#"grpo.train.devices=["cuda:1"]"#, "grpo.train.devices: the quickstart runs on the CPU"),
    ] {
        let mut c = distill();
        c.args(["quickstart", "--out"])
            .arg(dir.path().join("q"))
            .args(["--set", set]);
        if set.starts_with("filter") {
            c.args(["--set", "filter.length.max=5"]);
        }
        let o = run_within(c, Duration::from_secs(60));
        let err = stderr(&o);
        assert!(!o.status.success(), "{set}: {err}");
        assert!(err.contains(want), "{set}: {err}");
        assert!(!dir.path().join("q/data").exists(), "{set}: stage 1 ran");
    }
    let cfg = dir.path().join("q.toml");
    let text =
        include_str!("../../configs/quickstart.toml").replace("[sample]", "typo_key = 3\n[sample]");
    std::fs::write(&cfg, text).unwrap();
    let mut c = distill();
    c.args(["quickstart", "--out"])
        .arg(dir.path().join("q"))
        .arg("--config")
        .arg(&cfg);
    let o = run_within(c, Duration::from_secs(60));
    assert!(
        !o.status.success() && stderr(&o).contains("typo_key"),
        "{}",
        stderr(&o)
    );
}

/// Out-of-range `[sample]`/`[eval]` values of the quickstart stop it before stage 1, not when
/// sampling starts after the teacher has trained.
#[test]
fn quickstart_checks_sample_and_eval_values_before_any_stage() {
    let dir = tempfile::tempdir().unwrap();
    for (set, want) in [
        ("sample.samples=0", "samples"),
        ("sample.temperature=-1.0", "temperature"),
        ("eval.top_p=1.5", "top_p"),
        ("eval.max_tokens=0", "max_tokens"),
        ("sample.concurrency=2.5", "concurrency"),
    ] {
        let mut c = distill();
        c.args(["quickstart", "--out"]).arg(dir.path().join("q")).args(["--set", set]);
        let o = run_within(c, Duration::from_secs(60));
        let err = stderr(&o);
        assert!(!o.status.success(), "{set}: {err}");
        assert!(err.contains(want), "{set}: {err}");
        assert!(!dir.path().join("q/data").exists(), "{set}: stage 1 ran");
    }
}

fn eval_config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("eval.toml");
    let text = format!(
        "out_dir = \"{}\"\n[model]\ncheckpoint = \"no/such/ckpt\"\n{extra}",
        dir.join("run").display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn eval_run_needs_benchmarks_and_resamples() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = distill();
    c.args(["eval", "run", "--config"])
        .arg(eval_config(dir.path(), ""));
    let o = run_within(c, Duration::from_secs(60));
    assert!(
        !o.status.success() && stderr(&o).contains("no [[benchmarks]]"),
        "{}",
        stderr(&o)
    );
    let mut c = distill();
    let extra = "[stats]\nbootstrap_resamples = 0\n[[benchmarks]]\nname = \"math500\"\n";
    c.args(["eval", "run", "--config"])
        .arg(eval_config(dir.path(), extra));
    let o = run_within(c, Duration::from_secs(60));
    assert!(
        !o.status.success() && stderr(&o).contains("bootstrap_resamples"),
        "{}",
        stderr(&o)
    );
}

/// A malformed problem file is an input error named with its line, found before any model
/// loads, and the message does not tell the user to "rerun to resume".
#[test]
fn eval_run_reports_a_malformed_problem_file_before_loading_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    std::fs::write(&problems, "{\"problem\": \"1+1\", \"answer\": \"2\"}\n{\"problem\": oops\n").unwrap();
    let extra = format!("[[benchmarks]]\nname = \"mine\"\npath = \"{}\"\n", problems.display());
    let mut c = distill();
    c.args(["eval", "run", "--config"]).arg(eval_config(dir.path(), &extra));
    let o = run_within(c, Duration::from_secs(60));
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("problems.jsonl:2:"), "names the file and line: {err}");
    assert!(!err.contains("resume"), "an input error is not resumable: {err}");
    assert!(!err.contains("no/such/ckpt"), "the problem file is checked before the model loads: {err}");
}

/// A checkpoint directory with only a config.json (the checks run before weights are read).
fn config_only_model(dir: &Path, layers: u64) -> PathBuf {
    let m = dir.join(format!("m{layers}"));
    std::fs::create_dir_all(&m).unwrap();
    let cfg = serde_json::json!({
        "model_type": "llama", "vocab_size": 64, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 512, "tie_word_embeddings": true
    });
    std::fs::write(m.join("config.json"), cfg.to_string()).unwrap();
    m
}

#[test]
fn model_sizes_beyond_the_machine_or_context_are_errors_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let huge = config_only_model(dir.path(), 1_000_000_000);
    let mut c = distill();
    c.args(["model", "forward", "--model"])
        .arg(&huge)
        .args(["--tokens", "1,2,3", "--out"])
        .arg(dir.path().join("l.safetensors"));
    let o = run_within(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("num_hidden_layers") && stderr(&o).contains("GB"),
        "{}",
        stderr(&o)
    );

    let small = config_only_model(dir.path(), 2);
    for n in ["1000000000", &u64::MAX.to_string()] {
        let mut c = distill();
        c.args(["model", "generate", "--model"]).arg(&small).args([
            "--tokens",
            "1,2,3",
            "--max-new-tokens",
            n,
        ]);
        let o = run_within(c, Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(1), "{n}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("max_position_embeddings 512"),
            "{n}: {}",
            stderr(&o)
        );
    }
    let long: Vec<String> = (0..600).map(|i| (i % 64).to_string()).collect();
    let mut c = distill();
    c.args(["model", "forward", "--model"])
        .arg(&small)
        .args(["--tokens", &long.join(","), "--out"])
        .arg(dir.path().join("l.safetensors"));
    let o = run_within(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("600 tokens"), "{}", stderr(&o));
}

#[test]
fn nan_weights_are_reported_when_loading() {
    let dir = tempfile::tempdir().unwrap();
    let m = config_only_model(dir.path(), 1);
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("config.json")).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 1.into();
    std::fs::write(m.join("config.json"), cfg.to_string()).unwrap();
    let p = "model.layers.0.";
    let shapes: Vec<(String, Vec<usize>)> = [
        ("model.embed_tokens.weight".to_string(), vec![64, 64]),
        (format!("{p}input_layernorm.weight"), vec![64]),
        (format!("{p}post_attention_layernorm.weight"), vec![64]),
        (format!("{p}self_attn.q_proj.weight"), vec![64, 64]),
        (format!("{p}self_attn.k_proj.weight"), vec![32, 64]),
        (format!("{p}self_attn.v_proj.weight"), vec![32, 64]),
        (format!("{p}self_attn.o_proj.weight"), vec![64, 64]),
        (format!("{p}mlp.gate_proj.weight"), vec![128, 64]),
        (format!("{p}mlp.up_proj.weight"), vec![128, 64]),
        (format!("{p}mlp.down_proj.weight"), vec![64, 128]),
        ("model.norm.weight".to_string(), vec![64]),
    ]
    .into_iter()
    .collect();
    let tensors: Vec<(String, burn::tensor::TensorData)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let mut v = vec![0.01f32; n];
            if name.contains("v_proj") {
                v[5] = f32::NAN;
            }
            (name, burn::tensor::TensorData::new(v, shape))
        })
        .collect();
    models::write_safetensors(&m.join("model.safetensors"), &tensors).unwrap();
    let mut c = distill();
    c.args(["model", "forward", "--model"])
        .arg(&m)
        .args(["--tokens", "1,2", "--out"])
        .arg(dir.path().join("l.safetensors"));
    let o = run_within(c, Duration::from_secs(120));
    let err = stderr(&o);
    assert!(err.contains("NaN") && err.contains("v_proj"), "{err}");
}
