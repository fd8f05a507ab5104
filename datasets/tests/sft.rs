//! SFT example building and packing with the real tokenizers in `tests/fixtures/tokenizers`.

use std::path::PathBuf;

use datasets::sft::{
    build_examples, load_training_rows, pack, pack_with, pad_example, prepare_examples, shuffle,
    write_token_file, Conversation, OverflowPolicy, PackStrategy, SftBuildConfig, SftExample,
    TrainingData, TrainingFormat, IGNORE_INDEX, PAD_SEGMENT,
};
use datasets::{ChatMessage, TextTokenizer};

fn tokenizer(name: &str) -> TextTokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers").join(name);
    TextTokenizer::from_dir(&dir).unwrap()
}

const REASONING: &str = "The problem asks for 2+2. Adding two and two gives four.";
const ANSWER: &str = "The answer is $\\boxed{4}$.";

fn conv(problem: &str) -> Conversation {
    Conversation {
        messages: vec![
            ChatMessage::user(format!("{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.")),
            ChatMessage::assistant(format!("<think>\n{REASONING}\n</think>\n\n{ANSWER}")),
        ],
        origin: "test".into(),
    }
}

/// For each model family: the prompt ids are exactly the generation-prompt rendering, the labels
/// cover exactly the assistant tokens (EOS included), and the EOS is the family's end-of-turn token.
#[test]
fn masks_cover_exactly_the_assistant_turn_with_the_right_eos() {
    let cases = [
        ("qwen2.5", 151645u32, "<think>\n"),                // <|im_end|>; prompt ends "assistant\n"
        ("deepseek-r1-distill-qwen", 151643, ""),           // <｜end▁of▁sentence｜>; prompt opens <think>\n
        ("llama3.1", 128009, "<think>\n"),                  // <|eot_id|>
    ];
    for (name, eos, think_in_response) in cases {
        let tok = tokenizer(name);
        let c = conv("What is 2+2?");
        let (examples, stats) = build_examples(std::slice::from_ref(&c), &tok, &SftBuildConfig::default()).unwrap();
        assert_eq!(stats.eos_token_id, Some(eos), "{name}");
        let ex = &examples[0];
        assert_eq!(ex.input_ids.len(), ex.labels.len());
        let prompt_ids = tok.encode(&tok.apply_chat_template(&c.messages[..1], true).unwrap(), false).unwrap();
        let n_prompt = prompt_ids.len();
        assert_eq!(&ex.input_ids[..n_prompt], prompt_ids.as_slice(), "{name}: prompt ids");
        assert!(ex.labels[..n_prompt].iter().all(|&l| l == IGNORE_INDEX), "{name}: prompt masked");
        let trained: Vec<u32> = ex.labels[n_prompt..].iter().map(|&l| l as u32).collect();
        assert_eq!(trained, ex.input_ids[n_prompt..], "{name}: assistant labels equal ids");
        assert_eq!(*ex.input_ids.last().unwrap(), eos, "{name}: ends with EOS");
        assert_eq!(ex.label_count(), ex.input_ids.len() - n_prompt);
        let response = tok.decode(&ex.input_ids[n_prompt..ex.input_ids.len() - 1], false).unwrap();
        assert_eq!(response, format!("{think_in_response}{REASONING}\n</think>\n\n{ANSWER}"), "{name}");
        // Prompt + response reads as one R1 turn with exactly one opening <think>.
        let full = tok.decode(&ex.input_ids, false).unwrap();
        assert_eq!(full.matches("<think>").count(), 1, "{name}: {full}");
        assert_eq!(stats.label_tokens, ex.label_count());
        assert_eq!(stats.tokens, ex.input_ids.len());
    }
}

#[test]
fn explicit_eos_and_prompt_training() {
    let tok = tokenizer("qwen2.5");
    let cfg = SftBuildConfig { eos_token: Some("<|endoftext|>".into()), train_on_prompt: true, ..SftBuildConfig::default() };
    let (ex, stats) = build_examples(&[conv("x")], &tok, &cfg).unwrap();
    assert_eq!(*ex[0].input_ids.last().unwrap(), 151643);
    assert_eq!(stats.label_tokens, ex[0].input_ids.len());
    let bad = SftBuildConfig { eos_token: Some("<nope>".into()), ..SftBuildConfig::default() };
    assert!(build_examples(&[conv("x")], &tok, &bad).is_err());
    let mut wrong = conv("x");
    wrong.messages.pop();
    wrong.origin = "file.jsonl:7".into();
    let err = build_examples(&[wrong], &tok, &SftBuildConfig::default()).unwrap_err().to_string();
    assert!(err.contains("file.jsonl:7"), "{err}");
}

#[test]
fn max_length_drop_and_truncate_are_counted() {
    let tok = tokenizer("qwen2.5");
    let long = Conversation {
        messages: vec![ChatMessage::user("q"), ChatMessage::assistant("word ".repeat(300))],
        origin: "long".into(),
    };
    let rows = vec![conv("a"), long.clone(), conv("b")];
    let short_len = build_examples(&rows[..1], &tok, &SftBuildConfig::default()).unwrap().0[0].input_ids.len();
    let cfg = SftBuildConfig { max_seq_len: short_len + 5, ..SftBuildConfig::default() };
    let (ex, stats) = build_examples(&rows, &tok, &cfg).unwrap();
    assert_eq!((ex.len(), stats.dropped_too_long, stats.truncated), (2, 1, 0));
    let cfg = SftBuildConfig { overflow: OverflowPolicy::Truncate, ..cfg };
    let (ex, stats) = build_examples(&rows, &tok, &cfg).unwrap();
    assert_eq!((ex.len(), stats.dropped_too_long, stats.truncated), (3, 0, 1));
    assert_eq!(ex[1].input_ids.len(), short_len + 5);
    // A prompt longer than the limit leaves nothing to train on: dropped and counted.
    let cfg = SftBuildConfig { max_seq_len: 10, overflow: OverflowPolicy::Truncate, ..SftBuildConfig::default() };
    let (ex, stats) = build_examples(&rows, &tok, &cfg).unwrap();
    assert_eq!((ex.len(), stats.dropped_no_labels), (0, 3));
}

fn synthetic(n: usize, seed: u64) -> Vec<SftExample> {
    let mut out = Vec::new();
    for i in 0..n {
        let len = 3 + (i * 7 + seed as usize) % 23;
        let prompt = 1 + i % 4;
        let ids: Vec<u32> = (0..len as u32).map(|t| 1000 * i as u32 + t).collect();
        let labels = ids.iter().enumerate().map(|(j, &t)| if j < prompt { IGNORE_INDEX } else { i64::from(t) }).collect();
        out.push(SftExample { input_ids: ids, labels });
    }
    out
}

#[test]
fn packing_conserves_tokens_and_labels_and_restarts_positions() {
    let mut examples = synthetic(40, 3);
    shuffle(&mut examples, 1234);
    for strategy in [PackStrategy::Sequential, PackStrategy::BestFitDecreasing] {
        let rows = pack_with(&examples, 32, strategy, 99);
        assert!(rows.iter().all(|r| r.len() == 32 && r.position_ids.len() == 32 && r.segment_ids.len() == 32));
        let tokens: usize = rows.iter().map(|r| r.num_tokens()).sum();
        assert_eq!(tokens, examples.iter().map(|e| e.input_ids.len()).sum::<usize>());
        // Every trained label survives except a document's first position, which the shifted
        // loss never uses (it would be predicted from the previous document).
        let labels: usize = rows.iter().map(|r| r.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()).sum();
        let want: usize = examples.iter().map(|e| e.labels[1..].iter().filter(|&&l| l != IGNORE_INDEX).count()).sum();
        assert_eq!(labels, want);
        // Reassemble documents from segments: each equals one input example, positions restart.
        let mut docs: Vec<Vec<u32>> = Vec::new();
        for r in &rows {
            for s in 0..r.num_documents() as i32 {
                let idx: Vec<usize> = (0..r.len()).filter(|&i| r.segment_ids[i] == s).collect();
                assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "segments are contiguous");
                let pos: Vec<u32> = idx.iter().map(|&i| r.position_ids[i]).collect();
                assert_eq!(pos, (0..idx.len() as u32).collect::<Vec<_>>());
                docs.push(idx.iter().map(|&i| r.input_ids[i]).collect());
                assert!(!r.may_attend(idx[0], idx[0].saturating_sub(1)) || idx[0] == 0);
            }
            for i in 0..r.len() {
                if r.segment_ids[i] == PAD_SEGMENT {
                    assert_eq!((r.input_ids[i], r.labels[i]), (99, IGNORE_INDEX));
                }
            }
        }
        let mut want_docs: Vec<Vec<u32>> = examples.iter().map(|e| e.input_ids.clone()).collect();
        if strategy == PackStrategy::Sequential {
            assert_eq!(docs, want_docs, "sequential packing keeps the shuffled order");
        }
        docs.sort();
        want_docs.sort();
        assert_eq!(docs, want_docs);
    }
    // Best-fit decreasing never needs more rows than in-order filling.
    assert!(pack_with(&examples, 32, PackStrategy::BestFitDecreasing, 0).len() <= pack(&examples, 32).len());
}

/// The shifted next-token targets of a packed row are exactly those of its documents alone.
#[test]
fn packed_targets_equal_unpacked_targets() {
    let examples = synthetic(12, 5);
    let rows = pack(&examples, 40);
    let mut packed: Vec<i64> = Vec::new();
    for r in &rows {
        let t = r.shifted_targets();
        packed.extend((0..r.len()).filter(|&i| r.segment_ids[i] != PAD_SEGMENT).map(|i| t[i]));
    }
    let mut unpacked: Vec<i64> = Vec::new();
    for e in &examples {
        let r = pad_example(e, e.input_ids.len() + 3, 0);
        let t = r.shifted_targets();
        unpacked.extend_from_slice(&t[..e.input_ids.len()]);
        let direct: Vec<i64> = (0..e.labels.len()).map(|i| e.labels.get(i + 1).copied().unwrap_or(IGNORE_INDEX)).collect();
        assert_eq!(&t[..e.input_ids.len()], direct.as_slice());
    }
    assert_eq!(packed, unpacked);
}

#[test]
fn token_files_round_trip_and_feed_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.parquet");
    let examples = synthetic(10, 1);
    write_token_file(&path, &examples).unwrap();
    let TrainingData::Tokens(back) = load_training_rows(&path, TrainingFormat::Tokens).unwrap() else { panic!() };
    assert_eq!(back, examples);
    let cfg = SftBuildConfig { max_seq_len: 12, ..SftBuildConfig::default() };
    let (kept, stats) = prepare_examples(&path, TrainingFormat::Tokens, None, &cfg).unwrap();
    assert_eq!(kept.len() + stats.dropped_too_long, 10);
    assert!(kept.iter().all(|e| e.input_ids.len() <= 12));
    // JSONL with a bad row names file and line.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"input_ids\": [1, 2], \"labels\": [-100, 2]}\n{\"input_ids\": [1, 2], \"labels\": [2]}\n").unwrap();
    let err = load_training_rows(&bad, TrainingFormat::Tokens).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2"), "{err}");
}

#[test]
fn messages_jsonl_builds_like_in_memory_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let c = conv("What is 2+2?");
    std::fs::write(&path, format!("{}\n", serde_json::json!({"messages": c.messages}))).unwrap();
    let tok = tokenizer("deepseek-r1-distill-qwen");
    let cfg = SftBuildConfig::default();
    let (from_file, _) = prepare_examples(&path, TrainingFormat::Traces, Some(&tok), &cfg).unwrap();
    let (direct, _) = build_examples(&[c], &tok, &cfg).unwrap();
    assert_eq!(from_file, direct);
}

/// Throughput benchmark (not a test; run with `--ignored --nocapture`): 2,000 R1-style
/// conversations of ~1,000 words through the Qwen2.5 tokenizer, then packing into 16k rows.
#[test]
#[ignore]
fn build_and_pack_throughput() {
    let tok = tokenizer("qwen2.5");
    let words = ["so", "the", "sum", "is", "12", "+", "7", "=", "19", "wait", "let", "me", "check", "again", "\\frac{1}{2}"];
    let rows: Vec<Conversation> = (0..2000)
        .map(|i| {
            let body: Vec<&str> = (0..1000).map(|j| words[(i * 31 + j * 7) % words.len()]).collect();
            Conversation {
                messages: vec![
                    ChatMessage::user(format!("Problem {i}: compute the sum.")),
                    ChatMessage::assistant(format!("<think>\n{}\n</think>\n\n\\boxed{{19}}", body.join(" "))),
                ],
                origin: format!("row {i}"),
            }
        })
        .collect();
    let start = std::time::Instant::now();
    let (examples, stats) = build_examples(&rows, &tok, &SftBuildConfig::default()).unwrap();
    let build = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let packed = pack(&examples, 16384);
    let pack_s = start.elapsed().as_secs_f64();
    println!(
        "built {} examples ({} tokens) in {build:.2}s: {:.0} examples/s, {:.0} tokens/s; packed into {} rows in {pack_s:.3}s",
        examples.len(),
        stats.tokens,
        examples.len() as f64 / build,
        stats.tokens as f64 / build,
        packed.len()
    );
}
