//! The real Qwen2.5 / R1-Distill-Qwen / Llama-3.1 / DeepSeek-V3 / DeepSeek-R1 tokenizers must
//! encode, decode and render chat templates exactly as transformers does (expected.json was
//! produced by transformers and tokenizers in Python; see fixtures/tokenizers/README.md).

use datasets::stop::{IncrementalDecoder, StopStringMatcher};
use datasets::{ChatMessage, TextTokenizer};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const DIRS: &[&str] = &[
    "qwen2.5",
    "deepseek-r1-distill-qwen",
    "llama3.1",
    "deepseek-v3",
    "deepseek-r1",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

fn expected() -> &'static Value {
    static E: OnceLock<Value> = OnceLock::new();
    E.get_or_init(|| {
        let s = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
        serde_json::from_str(&s).unwrap()
    })
}

fn load(name: &str) -> TextTokenizer {
    TextTokenizer::from_dir(&fixtures().join(name)).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).unwrap()
}

/// One test per tokenizer family keeps each test's work (loading a 7 MB tokenizer) small and
/// lets the test harness run them in parallel.
fn check_dir(name: &str) {
    let tok = load(name);
    let exp = &expected()[name];
    assert_eq!(
        tok.vocab_size() as u64,
        exp["vocab_size_with_added"].as_u64().unwrap(),
        "{name} vocab"
    );
    for s in exp["samples"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        let plain = tok.encode(text, false).unwrap();
        assert_eq!(plain, ids(&s["ids"]), "{name}: ids of {text:?}");
        assert_eq!(
            tok.encode(text, true).unwrap(),
            ids(&s["ids_with_special_tokens"]),
            "{name}: ids+special of {text:?}"
        );
        assert_eq!(
            tok.decode(&plain, false).unwrap(),
            s["decoded"].as_str().unwrap(),
            "{name}: decode of {text:?}"
        );
        // Streaming detokenisation reproduces the full decode piece by piece.
        let mut dec = IncrementalDecoder::new(false);
        let mut streamed = String::new();
        for &id in &plain {
            let piece = dec.push(&tok, id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "{name}: broken char in {piece:?}"
            );
            streamed.push_str(&piece);
        }
        streamed.push_str(&dec.finish(&tok).unwrap());
        assert_eq!(
            streamed,
            s["decoded"].as_str().unwrap(),
            "{name}: streamed {text:?}"
        );
    }
    let batch: Vec<&str> = exp["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let enc = tok.encode_batch(&batch, false).unwrap();
    for (e, s) in enc.iter().zip(exp["samples"].as_array().unwrap()) {
        assert_eq!(e, &ids(&s["ids"]), "{name}: batch encode");
    }
    for variant in [
        "chat.full_conversation_gen_prompt",
        "chat.single_user_gen_prompt",
    ] {
        let c = &exp[variant];
        let msgs = messages(&c["messages"]);
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let rendered = tok.apply_chat_template(&msgs, gen).unwrap();
        assert_eq!(
            rendered,
            c["rendered"].as_str().unwrap(),
            "{name}: {variant}"
        );
        assert_eq!(
            tok.encode_chat(&msgs, gen).unwrap(),
            ids(&c["ids"]),
            "{name}: {variant} ids"
        );
    }
    let special = &exp["special"];
    let want = |k: &str| special.get(k).map(|v| v["id"].as_u64().unwrap() as u32);
    assert_eq!(tok.bos_token_id(), want("bos_token"), "{name} bos");
    assert_eq!(tok.eos_token_id(), want("eos_token"), "{name} eos");
    assert_eq!(
        tok.eos_token_ids().first().copied(),
        want("eos_token"),
        "{name} eos ids"
    );
    assert_eq!(tok.pad_token_id(), want("pad_token"), "{name} pad");
    for key in ["bos_token", "eos_token", "pad_token"] {
        if let Some(v) = special.get(key) {
            assert_eq!(
                tok.token_to_id(v["token"].as_str().unwrap()),
                Some(v["id"].as_u64().unwrap() as u32)
            );
        }
    }
}

#[test]
fn qwen25_matches_transformers() {
    check_dir(DIRS[0]);
}

#[test]
fn r1_distill_qwen_matches_transformers() {
    check_dir(DIRS[1]);
    let tok = load(DIRS[1]);
    // <think> is an ordinary (non-special) added token: skip_special_tokens keeps it.
    let think = tok.token_to_id("<think>").unwrap();
    assert_eq!(think, 151648);
    let eos = tok.eos_token_id().unwrap();
    let text = tok.decode(&[think, 9707, eos], true).unwrap();
    assert_eq!(text, "<think>Hello");
}

#[test]
fn llama31_matches_transformers() {
    check_dir(DIRS[2]);
}

#[test]
fn deepseek_v3_matches_transformers() {
    check_dir(DIRS[3]);
}

#[test]
fn deepseek_r1_matches_transformers() {
    check_dir(DIRS[4]);
}

#[test]
fn generation_config_adds_eos_ids_and_template_extras_work() {
    let dir = tempfile::tempdir().unwrap();
    let copied =
        datasets::tokenizer::copy_tokenizer_files(&fixtures().join("llama3.1"), dir.path())
            .unwrap();
    assert!(copied.contains(&"tokenizer.json".to_string()));
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}"#,
    )
    .unwrap();
    let tok = TextTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.eos_token_ids(), &[128009, 128001, 128008]);
    assert_eq!(tok.eos_token_id(), Some(128009));
    // `date_string` and tools are template variables, as in transformers.
    let mut extra = serde_json::Map::new();
    extra.insert("date_string".into(), Value::from("01 Jan 2025"));
    extra.insert(
        "tools".into(),
        serde_json::json!([{"type": "function", "function": {"name": "add"}}]),
    );
    let s = tok
        .apply_chat_template_with(&[ChatMessage::user("hi")], true, &extra)
        .unwrap();
    assert!(s.contains("Today Date: 01 Jan 2025"), "{s}");
    assert!(s.contains("Environment: ipython"), "{s}");
    assert!(s.contains("    \"type\": \"function\""), "{s}");
    assert!(s.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
}

#[test]
fn stop_strings_over_streamed_tokens() {
    let tok = load("qwen2.5");
    let text = "Let me think.\n</think>\n\nThe answer is 4. DONE trailing";
    let ids = tok.encode(text, false).unwrap();
    let mut dec = IncrementalDecoder::new(true);
    let mut stop = StopStringMatcher::new(&["DONE", "never"]);
    let mut out = String::new();
    let mut stopped = None;
    for id in ids {
        let piece = dec.push(&tok, id).unwrap();
        let r = stop.push(&piece);
        out.push_str(&r.emit);
        if r.stopped.is_some() {
            stopped = r.stopped;
            break;
        }
    }
    assert_eq!(stopped.as_deref(), Some("DONE"));
    assert_eq!(out, "Let me think.\n</think>\n\nThe answer is 4. ");
}

#[test]
fn missing_files_and_bad_special_tokens_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = TextTokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::copy(
        fixtures().join("qwen2.5/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "<|no_such_token|>"}"#,
    )
    .unwrap();
    let err = TextTokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("eos_token") && err.contains("no_such_token"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("special_tokens_map.json"),
        r#"{"eos_token": "<|endoftext|>", "pad_token": {"content": "<|endoftext|>"}}"#,
    )
    .unwrap();
    let tok = TextTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.eos_token(), Some("<|im_end|>"), "tokenizer_config wins");
    assert_eq!(
        tok.pad_token_id(),
        Some(151643),
        "gap filled from special_tokens_map.json"
    );
    assert!(!tok.has_chat_template());
    let err = tok
        .apply_chat_template(&[ChatMessage::user("x")], true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chat_template"), "{err}");
}
