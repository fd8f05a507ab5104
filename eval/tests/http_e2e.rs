//! The OpenAI-compatible path end to end: the `inference` HTTP server (what `distill serve` runs)
//! over a tiny fixture checkpoint on loopback, scored by `eval` through the `inference` HTTP
//! client — the way the R1 teacher is scored behind SGLang/vLLM — and checked against the same
//! checkpoint scored in-process.

use std::path::Path;

use datasets::eval_records::{read_eval_record_dir, EvalRecord};
use eval::EvalConfig;

fn checkpoint(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, dir).unwrap();
}

fn config(out: &Path, problems: &Path, backend: &str, checkpoint: &str, base_url: &str) -> EvalConfig {
    let text = format!(
        r#"
out_dir = "{}"
[model]
name = "tiny"
backend = "{backend}"
checkpoint = "{checkpoint}"
concurrency = 3
[model.openai]
base_urls = ["{base_url}"]
timeout_s = 60
max_retries = 2
[protocol]
max_tokens = 5
[[benchmarks]]
name = "tiny"
path = "{}"
samples = 2
[stats]
bootstrap_resamples = 20
"#,
        out.display(),
        problems.display()
    );
    EvalConfig::from_toml(&text, &[], "http.toml").unwrap()
}

fn sorted(mut v: Vec<EvalRecord>) -> Vec<EvalRecord> {
    v.sort_by(|a, b| (&a.problem_id, a.sample_index).cmp(&(&b.problem_id, b.sample_index)));
    v
}

#[test]
fn openai_backend_against_local_server_matches_native_prompting() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    checkpoint(&ckpt);
    let problems = tmp.path().join("p.jsonl");
    std::fs::write(
        &problems,
        "{\"id\":\"a\",\"problem\":\"1+1?\",\"answer\":\"2\"}\n{\"id\":\"b\",\"problem\":\"What is 12 times 12?\",\"answer\":\"144\"}\n",
    )
    .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = models::EngineConfig { max_batch: 4, max_seq_len: 512, ..Default::default() };
    let model = inference::native::NativeModel::load::<burn::backend::Flex>(
        &ckpt,
        burn::backend::flex::FlexDevice,
        burn::tensor::DType::F32,
        engine,
        Some("served-tiny".into()),
    )
    .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let router = inference::server::router(model, None, inference::server::ServerLimits::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(inference::server::serve(listener, router, async {
        let _ = stop_rx.await;
    }));

    let base = format!("http://{addr}/v1");
    let http_cfg = config(&tmp.path().join("http"), &problems, "openai", "served-tiny", &base);
    let backend = eval::backends::openai_backend(&http_cfg).unwrap();
    let summary = rt.block_on(eval::run_eval(&http_cfg, backend)).unwrap();
    assert_eq!(summary.model.backend, "openai");
    assert_eq!(summary.benchmarks["tiny"].n_samples, 4);
    let http = sorted(read_eval_record_dir(&eval::runner::records_dir(&http_cfg.out_dir, "tiny")).unwrap());

    let native_cfg = config(&tmp.path().join("native"), &problems, "native", &ckpt.display().to_string(), &base);
    let native_backend =
        eval::backends::native_backend::<burn::backend::Flex>(burn::backend::flex::FlexDevice, &native_cfg).unwrap();
    rt.block_on(eval::run_eval(&native_cfg, native_backend)).unwrap();
    let native = sorted(read_eval_record_dir(&eval::runner::records_dir(&native_cfg.out_dir, "tiny")).unwrap());

    assert_eq!(http.len(), 4);
    for (h, n) in http.iter().zip(&native) {
        assert_eq!((&h.problem_id, h.sample_index, h.seed), (&n.problem_id, n.sample_index, n.seed));
        assert!(h.error.is_none(), "{:?}", h.error);
        // Same chat template, same prompt: the server counts exactly the tokens the native
        // path feeds the engine.
        assert_eq!(h.prompt_tokens, n.prompt_tokens);
        assert!(h.completion_tokens >= 1 && h.completion_tokens <= 5);
    }
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap().unwrap();
}
