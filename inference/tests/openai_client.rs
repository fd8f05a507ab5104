//! The OpenAI client against third-party behaviour, reproduced by the stub server: streams cut
//! with `[DONE]` and no finish reason, no usage, validation errors as HTTP 500, model names the
//! server does not serve, contexts too small for `max_tokens`, unreachable replicas and 32-bit
//! seeds.

use std::time::{Duration, Instant};

use inference::backend::{Backend, ChatRequest, Message, Prompt, RunBounds};
use inference::stub_server::{streamed_text_events, StubConfig, StubServer, VALIDATION_MARKER};
use inference::{FinishReason, OpenAiBackend, OpenAiConfig};

fn client(server: &StubServer, model: &str, stream: bool) -> OpenAiBackend {
    OpenAiBackend::new(OpenAiConfig {
        base_urls: vec![server.base_url()],
        model: model.into(),
        stream,
        max_retries: 3,
        backoff_initial_ms: 1,
        backoff_max_ms: 5,
        ..Default::default()
    })
    .unwrap()
}

fn request(text: &str, seed: u64) -> ChatRequest {
    ChatRequest {
        prompt: Prompt::Messages(vec![Message::user(text)]),
        max_tokens: 64,
        temperature: 0.6,
        top_p: 0.95,
        seed: Some(seed),
        stop: vec![],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_stream_ending_with_done_but_no_finish_reason_is_retried_not_stop() {
    let server = StubServer::start(StubConfig {
        cut_streams: 1,
        ..Default::default()
    })
    .unwrap();
    let b = client(&server, "stub-model", true);
    let c = rt().block_on(b.complete(request("q1", 7))).unwrap();
    assert_eq!(c.error, None);
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!(c.content, "The answer is \\boxed{42}.");
    assert_eq!(
        server.stats.attempts_for("q1"),
        2,
        "the cut stream was redone"
    );
}

#[test]
fn streams_without_usage_count_their_text_events() {
    let server = StubServer::start(StubConfig {
        usage: false,
        ..Default::default()
    })
    .unwrap();
    let b = client(&server, "stub-model", true);
    let c = rt().block_on(b.complete(request("q", 7))).unwrap();
    let sent = server.stats.seeds.lock().unwrap()[0].clone();
    let expected = streamed_text_events(&format!("thinking about {sent}"), &c.content);
    assert!(expected > 3);
    assert_eq!((c.prompt_tokens, c.completion_tokens), (0, expected));
}

#[test]
fn a_500_that_is_a_validation_error_is_permanent() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let b = client(&server, "stub-model", false);
    let prompt = format!("{VALIDATION_MARKER} q");
    let c = rt().block_on(b.complete(request(&prompt, 1))).unwrap();
    let err = c.error.expect("recorded as a failed sample");
    assert!(
        err.contains("HTTP 500") && err.contains("int_parsing"),
        "{err}"
    );
    assert_eq!(c.finish_reason, FinishReason::Error);
    assert_eq!(
        server.stats.attempts_for(VALIDATION_MARKER),
        1,
        "not retried"
    );
}

#[test]
fn a_model_the_server_does_not_list_is_refused_naming_what_it_serves() {
    let server = StubServer::start(StubConfig {
        models: Some(vec![
            ("served-a".into(), Some(4096)),
            ("served-b".into(), None),
        ]),
        ..Default::default()
    })
    .unwrap();
    let bounds = RunBounds {
        max_tokens: 100,
        longest_prompt_bytes: 100,
    };
    let b = client(&server, "no-such-model", false);
    let err = rt().block_on(b.preflight(&bounds)).unwrap_err().to_string();
    for want in ["no-such-model", "served-a", "served-b", &server.base_url()] {
        assert!(err.contains(want), "{want} missing from: {err}");
    }
    assert!(rt()
        .block_on(client(&server, "served-b", false).preflight(&bounds))
        .is_ok());
    assert_eq!(
        server
            .stats
            .completions
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn max_tokens_beyond_max_model_len_is_refused_up_front() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let b = client(&server, "stub-model", false);
    let too_long = RunBounds {
        max_tokens: 32768,
        longest_prompt_bytes: 200,
    };
    let err = rt()
        .block_on(b.preflight(&too_long))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_model_len 4096") && err.contains("32768"),
        "{err}"
    );
    let fits = RunBounds {
        max_tokens: 4000,
        longest_prompt_bytes: 200,
    };
    rt().block_on(b.preflight(&fits)).unwrap();
}

#[test]
fn servers_without_a_usable_model_list_are_only_warned_about() {
    let bounds = RunBounds {
        max_tokens: 1 << 20,
        longest_prompt_bytes: 10,
    };
    for models in [Some(vec![]), None] {
        let server = StubServer::start(StubConfig {
            models,
            ..Default::default()
        })
        .unwrap();
        let b = client(&server, "anything", false);
        rt().block_on(b.preflight(&bounds)).unwrap();
        assert_eq!(
            server
                .stats
                .model_lists
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    }
}

#[test]
fn an_unreachable_base_url_is_reported_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let b = OpenAiBackend::new(OpenAiConfig {
        base_urls: vec![url.clone()],
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    let bounds = RunBounds {
        max_tokens: 10,
        longest_prompt_bytes: 10,
    };
    let err = rt().block_on(b.preflight(&bounds)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let chain = inference::error_chain(&err);
    assert!(
        chain.contains(&url) && chain.contains("unreachable"),
        "{chain}"
    );
    assert!(
        chain.to_lowercase().contains("connect"),
        "the cause is named: {chain}"
    );
}

#[test]
fn request_seeds_are_32_bit_and_distinct_when_only_high_bits_differ() {
    let server = StubServer::start(StubConfig::default()).unwrap();
    let b = client(&server, "stub-model", false);
    let base = 0x0000_0000_dead_beefu64;
    let seeds: Vec<u64> = (0..8u64).map(|i| base + (i << 32)).collect();
    let runtime = rt();
    for (i, s) in seeds.iter().enumerate() {
        runtime
            .block_on(b.complete(request(&format!("q{i}"), *s)))
            .unwrap();
    }
    let sent: Vec<u64> = server
        .stats
        .seeds
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(sent.iter().all(|&s| s <= u64::from(u32::MAX)), "{sent:?}");
    let distinct: std::collections::HashSet<_> = sent.iter().collect();
    assert_eq!(distinct.len(), seeds.len(), "{sent:?}");
    assert_eq!(
        sent[3],
        u64::from(inference::openai::request_seed(seeds[3]))
    );
}
