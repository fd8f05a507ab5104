//! End to end on a real (tiny, random-weight) checkpoint: the native engine behind the teacher's
//! backend, R1 chat template with `<think>` opening, grading, records, summary, resume.

use std::path::Path;

use eval::EvalConfig;

fn checkpoint(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, dir).unwrap();
}

#[test]
fn native_run_on_fixture_model_writes_records_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    checkpoint(&ckpt);
    let problems = tmp.path().join("p.jsonl");
    std::fs::write(
        &problems,
        "{\"id\":\"a\",\"problem\":\"1+1?\",\"answer\":\"2\"}\n{\"id\":\"b\",\"problem\":\"2+2?\",\"answer\":\"4\"}\n",
    )
    .unwrap();
    let text = format!(
        r#"
out_dir = "{}"
[model]
role = "teacher"
checkpoint = "{}"
concurrency = 4
[protocol]
max_tokens = 6
[[benchmarks]]
name = "tiny"
path = "{}"
samples = 2
[stats]
bootstrap_resamples = 50
"#,
        tmp.path().join("run").display(),
        ckpt.display(),
        problems.display()
    );
    let cfg = EvalConfig::from_toml(&text, &[], "native.toml").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let backend = eval::backends::native_backend::<burn::backend::Flex>(burn::backend::flex::FlexDevice, &cfg).unwrap();
    let summary = rt.block_on(eval::run_eval(&cfg, backend.clone())).unwrap();
    let b = &summary.benchmarks["tiny"];
    assert_eq!((b.n_problems, b.n_samples, b.k), (2, 4, 2));
    assert_eq!(summary.model.name, "ckpt");
    let records = datasets::eval_records::read_eval_record_dir(&eval::runner::records_dir(&cfg.out_dir, "tiny")).unwrap();
    assert_eq!(records.len(), 4);
    for r in &records {
        assert!(r.error.is_none(), "{:?}", r.error);
        assert!(r.completion_tokens >= 1 && r.completion_tokens <= 6);
        assert!(r.prompt_tokens > 10, "chat template applied: {}", r.prompt_tokens);
        assert!(matches!(r.finish_reason, datasets::records::FinishReason::Stop | datasets::records::FinishReason::Length));
    }
    // Same seeds → same samples: a second run directory reproduces the responses.
    let mut cfg2 = cfg.clone();
    cfg2.out_dir = tmp.path().join("run2");
    rt.block_on(eval::run_eval(&cfg2, backend.clone())).unwrap();
    let mut again = datasets::eval_records::read_eval_record_dir(&eval::runner::records_dir(&cfg2.out_dir, "tiny")).unwrap();
    let mut first = records.clone();
    first.sort_by(|x, y| (&x.problem_id, x.sample_index).cmp(&(&y.problem_id, y.sample_index)));
    again.sort_by(|x, y| (&x.problem_id, x.sample_index).cmp(&(&y.problem_id, y.sample_index)));
    let texts = |v: &[datasets::eval_records::EvalRecord]| v.iter().map(|r| r.response.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&first), texts(&again));
    // Resume: nothing left to do, summary unchanged.
    let s2 = rt.block_on(eval::run_eval(&cfg, backend)).unwrap();
    assert_eq!(s2, summary);
}
