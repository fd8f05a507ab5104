//! Shared set-up of the `distill serve` hardening tests: the tiny Qwen2 fixture with the byte
//! tokenizer, served in-process on a loopback port.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use inference::native::NativeModel;
use inference::server::{router, serve_with, ConnOptions, ServerLimits};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2")
}

/// The fixture weights + byte tokenizer in a temp checkpoint directory.
pub fn tiny_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture_dir(), dir.path()).unwrap();
    dir
}

/// The fixture model with 8 cache slots of 256 tokens.
pub fn tiny_model(dir: &Path) -> NativeModel {
    let engine = models::EngineConfig {
        max_batch: 8,
        max_seq_len: 256,
        ..Default::default()
    };
    NativeModel::load::<burn::backend::Flex>(
        dir,
        burn::backend::flex::FlexDevice,
        burn::tensor::DType::F32,
        engine,
        Some("tiny".into()),
    )
    .unwrap()
}

/// A running server; dropping it shuts the server down.
pub struct Server {
    /// `http://127.0.0.1:PORT/v1`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `model` with `key`, `limits` and a header/idle timeout of `header_timeout`.
pub async fn start(
    model: NativeModel,
    key: Option<&str>,
    limits: ServerLimits,
    header_timeout: Duration,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(model, key.map(str::to_string), limits);
    tokio::spawn(serve_with(
        listener,
        app,
        ConnOptions { header_timeout },
        async {
            let _ = rx.await;
        },
    ));
    Server {
        base: format!("http://{addr}/v1"),
        addr,
        _stop: tx,
    }
}
