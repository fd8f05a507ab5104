//! The teacher sampler against `distill serve` in-process (tiny Qwen2 fixture, byte-level
//! tokenizer) over loopback HTTP: a full run through the OpenAI backend on the chat endpoint.

use std::path::Path;
use std::sync::Arc;

use inference::openai::OpenAiBackend;
use inference::server::{router, ServerLimits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_backend_and_sampler_against_serve() {
    let ckpt = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, ckpt.path()).unwrap();
    let engine = models::EngineConfig {
        max_batch: 8,
        max_seq_len: 256,
        ..Default::default()
    };
    let model = inference::NativeModel::load::<burn::backend::Flex>(
        ckpt.path(),
        burn::backend::flex::FlexDevice,
        burn::tensor::DType::F32,
        engine,
        Some("tiny".into()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(model, None, ServerLimits::default());
    tokio::spawn(inference::server::serve(listener, app, async {
        let _ = rx.await;
    }));
    let server = Server { base };

    // A full sampling run through the HTTP backend, chat endpoint.
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    std::fs::write(&problems, "{\"id\": 1, \"problem\": \"1+1?\", \"answer\": \"2\"}\n{\"id\": 2, \"problem\": \"2+2?\", \"answer\": \"4\"}\n").unwrap();
    let cfg_text = format!(
        "problems = {:?}\nout_dir = {:?}\n[sampling]\nsamples = 3\nmax_tokens = 6\n[run]\nconcurrency = 6\nprogress = false\n[openai]\nbase_urls = [\"{}\"]\nmodel = \"tiny\"\n",
        problems.display().to_string(),
        dir.path().join("out").display().to_string(),
        server.base
    );
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(&cfg_path, cfg_text).unwrap();
    let cfg = teacher::TeacherConfig::load(&cfg_path, &[]).unwrap();
    let backend = Arc::new(OpenAiBackend::new(cfg.openai.clone()).unwrap());
    let report = teacher::run_sampling(&cfg, backend, std::future::pending())
        .await
        .unwrap();
    assert!(report.is_complete());
    let rows = datasets::traces::read_traces(&dir.path().join("out")).unwrap();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert!(r.error.is_none(), "{:?}", r.error);
        assert!(
            (1..=6).contains(&r.completion_tokens),
            "{}",
            r.completion_tokens
        );
        assert!(
            r.prompt_tokens > 10,
            "chat template applied: {}",
            r.prompt_tokens
        );
        assert!(r.finish_reason.as_str() == "stop" || r.finish_reason.as_str() == "length");
        assert_eq!(
            r.problem_id.parse::<u32>().unwrap() as usize,
            if r.problem == "1+1?" { 1 } else { 2 }
        );
    }
    // Distinct seeds give (almost surely) distinct samples of the same problem.
    let p1: std::collections::HashSet<_> = rows
        .iter()
        .filter(|r| r.problem_id == "1")
        .map(|r| r.completion.clone())
        .collect();
    assert!(p1.len() >= 2, "samples differ: {p1:?}");
}

struct Server {
    base: String,
}
