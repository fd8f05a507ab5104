//! s1 budget forcing on a real engine: the tiny Qwen2 fixture with the byte tokenizer (where
//! `</think>` is one added token, id 260), in-process and through `distill serve` over loopback
//! HTTP with continuation requests. Greedy decoding makes every sequence reproducible.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference::backend::{Backend, ChatRequest, Message, Prompt};
use inference::budget::{ThinkingBudget, ThinkingStats};
use inference::budget_native::{BudgetOutput, NativeBudgetBackend};
use inference::budget_openai::OpenAiBudgetBackend;
use inference::byte_tokenizer::EOS_ID;
use inference::native::{GenParams, NativeModel};
use inference::openai::{OpenAiBackend, OpenAiConfig};
use inference::server::{router, ServerLimits};

const CLOSE_ID: u32 = 260;
const MAX_TOKENS: u32 = 40;

fn tiny_model(dir: &Path) -> NativeModel {
    let fixture: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, dir).unwrap();
    let engine = models::EngineConfig {
        max_batch: 4,
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

fn greedy() -> GenParams {
    GenParams {
        max_tokens: MAX_TOKENS as usize,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        stop: Vec::new(),
        ..Default::default()
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        prompt: Prompt::Messages(vec![Message::user("What is 1+1?")]),
        max_tokens: MAX_TOKENS,
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(0),
        stop: Vec::new(),
    }
}

async fn forced(model: &NativeModel, budget: ThinkingBudget) -> BudgetOutput {
    let ids = model.prompt_ids(&request().prompt).unwrap();
    NativeBudgetBackend::new(model.clone(), budget)
        .unwrap()
        .generate(ids, &greedy())
        .await
        .unwrap()
}

/// The greedy sequence without any budget (an inactive budget generates plainly).
async fn plain(model: &NativeModel) -> BudgetOutput {
    let out = forced(model, ThinkingBudget::default()).await;
    assert_eq!(
        out.forced.stats.forced_closes + out.forced.stats.forced_waits,
        0
    );
    out
}

/// A budget whose "close marker" is a printable byte the greedy model emits early: the fixture's
/// random weights never emit `</think>`, so an early close is staged with a token it does emit.
/// Returns the budget and the marker's first position.
fn early_marker_budget(plain: &[u32]) -> (ThinkingBudget, usize) {
    let printable = |id: u32| (b'!' as u32..=b'~' as u32).contains(&id) && id != b'W' as u32;
    let k = (2..plain.len())
        .find(|&i| printable(plain[i]) && !plain[..i].contains(&plain[i]))
        .unwrap_or_else(|| panic!("fixture precondition: an early printable byte in {plain:?}"));
    let close = char::from(plain[k] as u8).to_string();
    let budget = ThinkingBudget {
        min_thinking_tokens: Some(k as u32 + 6),
        wait_token: "W".into(),
        max_waits: 1,
        close,
        ..Default::default()
    };
    (budget, k)
}

#[test]
fn native_forced_close_lands_exactly_at_the_thinking_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let plain = plain(&model).await;
        let n = 8usize;
        assert!(
            plain.ids.len() > n && !plain.ids[..n].contains(&CLOSE_ID),
            "fixture precondition: {:?}",
            plain.ids
        );
        let budget = ThinkingBudget {
            max_thinking_tokens: Some(n as u32),
            ..Default::default()
        };
        let out = forced(&model, budget).await;
        assert_eq!(
            out.forced.stats,
            ThinkingStats {
                thinking_tokens: n as u32,
                forced_waits: 0,
                forced_closes: 1
            }
        );
        assert_eq!(
            out.ids[..n],
            plain.ids[..n],
            "thinking is the unforced sequence up to the budget"
        );
        let sep = model.tokenizer().encode("\n\n", false).unwrap();
        assert_eq!(out.ids[n], CLOSE_ID, "{:?}", out.ids);
        assert_eq!(out.ids[n + 1..n + 1 + sep.len()], sep[..]);
        let thinking = model.tokenizer().decode(&plain.ids[..n], true).unwrap();
        assert!(
            out.text.starts_with(&format!("{thinking}</think>\n\n")),
            "{:?}",
            out.text
        );
        let eos = usize::from(out.forced.finish_reason == inference::FinishReason::Stop);
        assert_eq!(out.forced.completion_tokens as usize, out.ids.len() + eos);
        assert!(out.forced.completion_tokens <= MAX_TOKENS);
        assert!(!out.ids.contains(&EOS_ID));
    });
}

#[test]
fn native_min_budget_turns_an_early_close_into_the_wait_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let plain = plain(&model).await;
        let (budget, k) = early_marker_budget(&plain.ids);
        let out = forced(&model, budget).await;
        assert_eq!(out.ids[..k], plain.ids[..k]);
        assert_eq!(
            out.ids[k], b'W' as u32,
            "the early close became the wait token: {:?}",
            out.ids
        );
        assert_eq!(out.forced.stats.forced_waits, 1);
        assert_eq!(out.forced.stats.forced_closes, 0);
        assert!(out.forced.stats.thinking_tokens > k as u32);
    });
}

struct Server {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(model: NativeModel) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(inference::server::serve(
        listener,
        router(model, None, ServerLimits::default()),
        async {
            let _ = rx.await;
        },
    ));
    Server {
        base: format!("http://{addr}/v1"),
        _stop: tx,
    }
}

#[test]
fn openai_continuations_against_distill_serve_close_at_the_same_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = serve(model.clone()).await;
        let cfg = OpenAiConfig {
            base_urls: vec![server.base.clone()],
            model: "tiny".into(),
            max_retries: 0,
            ..Default::default()
        };
        let client: Arc<dyn Backend> = Arc::new(OpenAiBackend::new(cfg).unwrap());
        let tokenizer = Arc::new(datasets::TextTokenizer::from_dir(dir.path()).unwrap());
        let budget = ThinkingBudget {
            max_thinking_tokens: Some(8),
            ..Default::default()
        };
        let native = NativeBudgetBackend::new(model.clone(), budget.clone())
            .unwrap()
            .complete(request())
            .await
            .unwrap();
        let http = OpenAiBudgetBackend::new(client, tokenizer, budget)
            .unwrap()
            .complete(request())
            .await
            .unwrap();
        assert_eq!(
            (native.error.as_deref(), http.error.as_deref()),
            (None, None)
        );
        let stats = ThinkingStats {
            thinking_tokens: 8,
            forced_waits: 0,
            forced_closes: 1,
        };
        assert_eq!((native.thinking, http.thinking), (Some(stats), Some(stats)));
        // The first segment is the same greedy sequence; the answers may differ because the
        // fixture emits ids outside the byte tokenizer, which text continuations cannot carry.
        assert_eq!(http.reasoning, native.reasoning);
        assert_eq!(http.prompt_tokens, native.prompt_tokens);
        let head = native.completion.split("</think>").next().unwrap();
        assert!(
            http.completion.starts_with(&format!("{head}</think>\n\n")),
            "{:?}",
            http.completion
        );
        assert!(http.completion_tokens <= MAX_TOKENS && http.completion_tokens >= 8 + 3);
    });
}

/// A scripted `/v1/completions` server: answers requests in order from `replies` (text,
/// finish_reason, completion_tokens) and records every request body.
async fn stub(
    replies: Vec<(&'static str, &'static str, u32)>,
) -> (Server, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::{extract::State, routing::post, Json, Router};
    type Shared = (
        Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
        Arc<Vec<(&'static str, &'static str, u32)>>,
    );
    async fn complete(
        State((seen, replies)): State<Shared>,
        Json(body): Json<serde_json::Value>,
    ) -> Json<serde_json::Value> {
        let mut seen = seen.lock().unwrap();
        let (text, finish, tokens) = replies[seen.len()];
        seen.push(body);
        Json(
            serde_json::json!({"choices": [{"index": 0, "text": text, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}}),
        )
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/v1/completions", post(complete))
        .with_state((seen.clone(), Arc::new(replies)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (
        Server {
            base: format!("http://{addr}/v1"),
            _stop: tx,
        },
        seen,
    )
}

#[test]
fn openai_min_budget_sends_continuations_with_the_wait_token() {
    let dir = tempfile::tempdir().unwrap();
    let fixture: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, dir.path()).unwrap();
    let tok = Arc::new(datasets::TextTokenizer::from_dir(dir.path()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Thinking closes after "ab" (3 tokens with the marker), again after "cd", then answers.
        let (server, seen) = stub(vec![
            ("ab", "stop", 3),
            ("cd", "stop", 3),
            ("\\boxed{2}", "stop", 5),
        ])
        .await;
        let cfg = OpenAiConfig {
            base_urls: vec![server.base.clone()],
            model: "m".into(),
            max_retries: 0,
            ..Default::default()
        };
        let client: Arc<dyn Backend> = Arc::new(OpenAiBackend::new(cfg).unwrap());
        let budget = ThinkingBudget {
            min_thinking_tokens: Some(10),
            max_waits: 1,
            ..Default::default()
        };
        let c = OpenAiBudgetBackend::new(client, tok.clone(), budget)
            .unwrap()
            .complete(request())
            .await
            .unwrap();
        assert_eq!(c.error, None);
        assert_eq!(c.completion, "abWaitcd</think>\\boxed{2}");
        assert_eq!(
            (c.reasoning.as_str(), c.content.as_str()),
            ("abWaitcd", "\\boxed{2}")
        );
        // 2 + "Wait" (4 byte tokens) + 2 thinking tokens; one wait; the model's own close.
        assert_eq!(
            c.thinking,
            Some(ThinkingStats {
                thinking_tokens: 8,
                forced_waits: 1,
                forced_closes: 0
            })
        );
        assert_eq!(c.completion_tokens, 8 + 1 + 5);
        let prompt = tok
            .encode_chat(&[datasets::ChatMessage::user("What is 1+1?")], true)
            .unwrap();
        let ids = |text: &str| {
            let mut ids = prompt.clone();
            ids.extend(tok.encode(text, false).unwrap());
            serde_json::json!(ids)
        };
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0]["prompt"], serde_json::json!(prompt));
        assert_eq!(seen[1]["prompt"], ids("abWait"));
        assert_eq!(seen[2]["prompt"], ids("abWaitcd</think>"));
        for (body, max_tokens) in seen.iter().zip([40, 34, 31]) {
            assert_eq!(body["max_tokens"], max_tokens, "{body}");
            assert_eq!(body["temperature"], 0.0);
        }
        assert_eq!(seen[0]["stop"], serde_json::json!(["</think>"]));
        assert_eq!(seen[1]["stop"], serde_json::json!(["</think>"]));
        assert!(
            seen[2].get("stop").is_none(),
            "the answer runs to EOS: {}",
            seen[2]
        );
    });
}
