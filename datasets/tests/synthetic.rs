//! The synthetic quickstart task: deterministic, disjoint splits, answers the grader accepts,
//! short traces under the trained tokenizer, and a chat template whose generation prompt is a
//! prefix of the rendered SFT conversation.

use datasets::synthetic::{self, SyntheticConfig, TokenizerTrainConfig};
use datasets::{load_problems, ChatMessage, ProblemColumns};
use std::collections::HashSet;

fn small() -> SyntheticConfig {
    SyntheticConfig {
        n_train: 600,
        n_test: 50,
        seed: 7,
        ..Default::default()
    }
}

#[test]
fn splits_are_deterministic_disjoint_and_correct() {
    let a = synthetic::generate(&small()).unwrap();
    let b = synthetic::generate(&small()).unwrap();
    assert_eq!(a, b);
    let c = synthetic::generate(&SyntheticConfig { seed: 8, ..small() }).unwrap();
    assert_ne!(a.train, c.train);
    assert_eq!((a.train.len(), a.test.len()), (600, 50));
    let train: HashSet<&str> = a.train.iter().map(|e| e.problem.problem.as_str()).collect();
    assert_eq!(train.len(), 600, "no duplicate problems");
    assert!(a
        .test
        .iter()
        .all(|e| !train.contains(e.problem.problem.as_str())));
    for e in a.train.iter().chain(&a.test) {
        let expr = e
            .problem
            .problem
            .strip_prefix("Compute ")
            .and_then(|s| s.strip_suffix('.'))
            .unwrap();
        // Independent evaluation of the left-to-right chain.
        let toks: Vec<&str> = expr.split(' ').collect();
        let mut acc: i64 = toks[0].parse().unwrap();
        for pair in toks[1..].chunks(2) {
            let b: i64 = pair[1].parse().unwrap();
            acc = match pair[0] {
                "+" => acc + b,
                "-" => acc - b,
                _ => panic!("unexpected operator in {expr}"),
            };
            assert!((0..=9).contains(&acc), "{expr}");
        }
        assert_eq!(e.problem.answer, acc.to_string());
        assert!(e.trace.starts_with("<think>\n") && e.trace.contains("\n</think>\n\n"));
        let g = grader::grade(&e.problem.answer, &e.trace);
        assert_eq!(g.verdict, grader::Verdict::Correct, "{}", e.trace);
        let ops = toks.len() / 2;
        assert!((2..=3).contains(&ops));
    }
}

#[test]
fn files_load_as_problem_sets_and_tokenizer_fits_the_task() {
    let splits = synthetic::generate(&small()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = splits.write(dir.path()).unwrap();
    let test = load_problems(&files.test_problems, &ProblemColumns::default()).unwrap();
    assert_eq!(test.len(), 50);
    assert_eq!(test[0], splits.test[0].problem);
    let gold: Vec<serde_json::Value> = datasets::jsonl::read_jsonl(&files.train_gold).unwrap();
    assert_eq!(gold.len(), 600);
    let msgs: Vec<ChatMessage> = serde_json::from_value(gold[0]["messages"].clone()).unwrap();
    assert_eq!(msgs, splits.train[0].messages());

    let tok_dir = dir.path().join("tok");
    let tok = synthetic::train_tokenizer(
        &splits.tokenizer_corpus(),
        &TokenizerTrainConfig::default(),
        &tok_dir,
    )
    .unwrap();
    assert!(tok.vocab_size() <= 384, "{}", tok.vocab_size());
    assert!(tok_dir.join("tokenizer.json").is_file());
    // Every digit is its own token, with or without a leading space.
    for text in ["1234567890", " 42 + 9 = 51"] {
        let ids = tok.encode(text, false).unwrap();
        for &id in &ids {
            let piece = tok.decode(&[id], false).unwrap();
            let digits = piece.chars().filter(char::is_ascii_digit).count();
            assert!(digits <= 1, "{piece:?} in {text:?}");
        }
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    // Arbitrary text still round-trips (byte-level).
    let odd = "naïve 🤖 {x}";
    assert_eq!(
        tok.decode(&tok.encode(odd, false).unwrap(), false).unwrap(),
        odd
    );
    for t in ["<think>", "</think>", "<|user|>", "<|assistant|>"] {
        assert_eq!(tok.encode(t, false).unwrap().len(), 1, "{t}");
    }
    assert_eq!(
        tok.eos_token_ids(),
        &[tok.token_to_id("<|end_of_text|>").unwrap()]
    );
    assert!(tok.bos_token_id().is_some() && tok.pad_token_id().is_some());

    // Generation prompt = prefix of the full SFT conversation; traces are short.
    let (mut longest, mut total, mut prompt_total) = (0, 0, 0);
    for e in &splits.train {
        let prompt = tok.apply_chat_template(&e.messages()[..1], true).unwrap();
        let full = tok.apply_chat_template(&e.messages(), false).unwrap();
        assert!(prompt.ends_with("<|assistant|><think>\n"));
        assert!(full.starts_with(&prompt), "{full}");
        assert!(full.ends_with("<|end_of_text|>"));
        let p_ids = tok.encode(&prompt, false).unwrap();
        let f_ids = tok.encode(&full, false).unwrap();
        assert_eq!(&f_ids[..p_ids.len()], &p_ids[..], "token-level prefix");
        longest = longest.max(f_ids.len() - p_ids.len());
        total += f_ids.len() - p_ids.len();
        prompt_total += p_ids.len();
    }
    let n = splits.train.len();
    eprintln!(
        "synthetic: vocab {}, mean prompt {} tokens, mean completion {} tokens (max {longest})",
        tok.vocab_size(),
        prompt_total / n,
        total / n
    );
    assert!(longest <= 80, "completion of {longest} tokens");
    // skip_special_tokens keeps the reasoning delimiters.
    let ids = tok
        .encode("<think>\n1\n</think><|end_of_text|>", false)
        .unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "<think>\n1\n</think>");
}

/// The defaults the quickstart uses: traces stay short under the trained tokenizer, which is
/// what lets a tiny model learn the task in CPU minutes.
#[test]
fn default_config_traces_are_short() {
    let splits = synthetic::generate(&SyntheticConfig::default()).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (4000, 100));
    let dir = tempfile::tempdir().unwrap();
    let tok = synthetic::train_tokenizer(
        &splits.tokenizer_corpus(),
        &TokenizerTrainConfig::default(),
        dir.path(),
    )
    .unwrap();
    let (mut max_c, mut sum_c, mut sum_p) = (0, 0, 0);
    for e in splits.train.iter().chain(&splits.test) {
        let p = tok.encode_chat(&e.messages()[..1], true).unwrap().len();
        let f = tok.encode_chat(&e.messages(), false).unwrap().len();
        max_c = max_c.max(f - p);
        sum_c += f - p;
        sum_p += p;
    }
    let n = splits.train.len() + splits.test.len();
    eprintln!(
        "default synthetic task: vocab {}, mean prompt {:.1} tokens, mean completion {:.1} \
         tokens (max {max_c})",
        tok.vocab_size(),
        sum_p as f64 / n as f64,
        sum_c as f64 / n as f64
    );
    assert!(max_c <= 80, "{max_c}");
}
