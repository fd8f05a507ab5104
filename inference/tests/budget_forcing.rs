//! s1 budget forcing on a real engine: the tiny Qwen2 fixture with the byte tokenizer (where
//! `</think>` is one added token, id 260), in-process and through `distill serve` over loopback
//! HTTP with continuation requests. Greedy decoding makes every sequence reproducible.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference::backend::{Backend, ChatRequest, Completion, Message, Prompt};
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
    let fixture: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/qwen2");
    inference::byte_tokenizer::write_tiny_checkpoint(&fixture, dir).unwrap();
    let engine = models::EngineConfig { max_batch: 4, max_seq_len: 256, ..Default::default() };
    NativeModel::load::<burn::backend::Flex>(dir, burn::backend::flex::FlexDevice, burn::tensor::DType::F32, engine, Some("tiny".into()))
        .unwrap()
}

fn greedy() -> GenParams {
    GenParams { max_tokens: MAX_TOKENS as usize, temperature: 0.0, top_p: 1.0, top_k: 0, seed: 0, stop: Vec::new() }
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
    NativeBudgetBackend::new(model.clone(), budget).unwrap().generate(ids, &greedy()).await.unwrap()
}

/// The greedy sequence without any budget (an inactive budget generates plainly).
async fn plain(model: &NativeModel) -> BudgetOutput {
    let out = forced(model, ThinkingBudget::default()).await;
    assert_eq!(out.forced.stats.forced_closes + out.forced.stats.forced_waits, 0);
    out
}

/// A budget whose "close marker" is a printable byte the greedy model emits early: the fixture's
/// random weights never emit `</think>`, so an early close is staged with a token it does emit.
/// Returns the budget and the marker's first position.
fn early_marker_budget(plain: &[u32]) -> (ThinkingBudget, usize) {
    let k = (2..plain.len())
        .find(|&i| (b'a' as u32..=b'z' as u32).contains(&plain[i]) && !plain[..i].contains(&plain[i]))
        .unwrap_or_else(|| panic!("fixture precondition: an early lowercase byte in {plain:?}"));
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
        assert!(plain.ids.len() > n && !plain.ids[..n].contains(&CLOSE_ID), "fixture precondition: {:?}", plain.ids);
        let budget = ThinkingBudget { max_thinking_tokens: Some(n as u32), ..Default::default() };
        let out = forced(&model, budget).await;
        assert_eq!(out.forced.stats, ThinkingStats { thinking_tokens: n as u32, forced_waits: 0, forced_closes: 1 });
        assert_eq!(out.ids[..n], plain.ids[..n], "thinking is the unforced sequence up to the budget");
        let sep = model.tokenizer().encode("\n\n", false).unwrap();
        assert_eq!(out.ids[n], CLOSE_ID, "{:?}", out.ids);
        assert_eq!(out.ids[n + 1..n + 1 + sep.len()], sep[..]);
        let thinking = model.tokenizer().decode(&plain.ids[..n], true).unwrap();
        assert!(out.text.starts_with(&format!("{thinking}</think>\n\n")), "{:?}", out.text);
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
        assert_eq!(out.ids[k], b'W' as u32, "the early close became the wait token: {:?}", out.ids);
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
    tokio::spawn(inference::server::serve(listener, router(model, None, ServerLimits::default()), async {
        let _ = rx.await;
    }));
    Server { base: format!("http://{addr}/v1"), _stop: tx }
}

fn same(a: &Completion, b: &Completion) {
    assert_eq!(a.error, None);
    assert_eq!(b.error, None);
    assert_eq!(a.completion, b.completion);
    assert_eq!(a.thinking, b.thinking);
    assert_eq!(a.completion_tokens, b.completion_tokens);
    assert_eq!((a.reasoning.as_str(), a.content.as_str()), (b.reasoning.as_str(), b.content.as_str()));
    assert_eq!(a.prompt_tokens, b.prompt_tokens);
}

#[test]
fn openai_continuations_against_distill_serve_match_the_native_engine() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = serve(model.clone()).await;
        let client = OpenAiBackend::new(OpenAiConfig { base_urls: vec![server.base.clone()], model: "tiny".into(), max_retries: 0, ..Default::default() })
            .unwrap();
        let client: Arc<dyn Backend> = Arc::new(client);
        let tokenizer = Arc::new(datasets::TextTokenizer::from_dir(dir.path()).unwrap());
        let plain = plain(&model).await;
        let (early, _) = early_marker_budget(&plain.ids);
        let max = ThinkingBudget { max_thinking_tokens: Some(8), ..Default::default() };
        for budget in [max, early] {
            let native = NativeBudgetBackend::new(model.clone(), budget.clone()).unwrap().complete(request()).await.unwrap();
            let http = OpenAiBudgetBackend::new(client.clone(), tokenizer.clone(), budget.clone()).unwrap();
            let http = http.complete(request()).await.unwrap();
            same(&native, &http);
            let stats = http.thinking.unwrap();
            assert!(stats.forced_closes + stats.forced_waits >= 1, "{budget:?}: {stats:?}");
        }
    });
}
