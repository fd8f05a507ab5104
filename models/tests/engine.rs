//! The continuous-batching engine: requests joining mid-flight, stop conditions, cancellation,
//! and agreement with one-at-a-time generation.

mod common;

use common::*;
use models::{generate, load_model, DType, Engine, EngineConfig, FinishReason, GenerationRequest, SamplingParams};

#[test]
fn requests_joining_mid_flight_match_running_alone() {
    let m = load_model::<B>(&fixture("qwen2"), &device(), DType::F32).unwrap();
    let prompts: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4], vec![100, 200], vec![300, 301, 302, 303, 304, 305], vec![42]];
    let lens = [10usize, 4, 7, 6];
    let mut engine = Engine::new(&m.model, EngineConfig { max_batch: 2, max_seq_len: 32, prefill_chunk: 3 });
    let mut ids = Vec::new();
    let mut outputs = std::collections::HashMap::new();
    let mut streamed: std::collections::HashMap<u64, Vec<u32>> = Default::default();
    // Two requests first, the rest arrive while those decode; only 2 slots exist.
    for i in 0..2 {
        ids.push(engine.add_request(GenerationRequest::new(prompts[i].clone(), SamplingParams::greedy(lens[i], vec![]))).unwrap());
    }
    let mut steps = 0;
    while engine.has_work() {
        if steps == 2 {
            for i in 2..4 {
                ids.push(engine.add_request(GenerationRequest::new(prompts[i].clone(), SamplingParams::greedy(lens[i], vec![]))).unwrap());
            }
        }
        assert!(engine.num_running() <= 2);
        for ev in engine.step().unwrap() {
            streamed.entry(ev.id).or_default().extend(&ev.new_tokens);
            if let Some(o) = ev.finished {
                outputs.insert(ev.id, o);
            }
        }
        steps += 1;
    }
    for (i, id) in ids.iter().enumerate() {
        let alone = generate(&m.model, vec![prompts[i].clone()], &SamplingParams::greedy(lens[i], vec![])).unwrap().remove(0);
        let got = &outputs[id];
        assert_eq!(got.new_ids, alone.new_ids, "request {i}");
        assert_eq!(streamed[id], got.new_ids, "stream == final for request {i}");
        assert_eq!(got.completion_tokens, lens[i]);
        assert_eq!(got.finish_reason, FinishReason::Length);
        for (a, b) in got.token_logprobs.iter().zip(&alone.token_logprobs) {
            assert!((a - b).abs() < 1e-4 && *a <= 0.0);
        }
    }
}

#[test]
fn stop_ids_stop_checks_cancel_and_limits() {
    let m = load_model::<B>(&fixture("llama3"), &device(), DType::F32).unwrap();
    let prompt = vec![5u32, 6, 7];
    let free = generate(&m.model, vec![prompt.clone()], &SamplingParams::greedy(8, vec![])).unwrap().remove(0);
    // Stop on the 3rd generated id: output ends with it, finish reason stop.
    let stop_id = free.new_ids[2];
    let first = free.new_ids.iter().position(|&t| t == stop_id).unwrap();
    let out = generate(&m.model, vec![prompt.clone()], &SamplingParams::greedy(8, vec![stop_id])).unwrap().remove(0);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.new_ids, free.new_ids[..=first].to_vec());

    // A caller stop check (stands in for stop strings) fires after 4 tokens.
    let req = GenerationRequest::new(prompt.clone(), SamplingParams::greedy(8, vec![])).with_stop_check(|ids| ids.len() == 4);
    let out = models::generate_requests(&m.model, vec![req], 4).unwrap().remove(0);
    assert_eq!((out.finish_reason, out.new_ids.len()), (FinishReason::Stop, 4));
    assert_eq!(out.new_ids, free.new_ids[..4].to_vec());

    // max_new_tokens 0 finishes at once; a context limit ends with length.
    let out = generate(&m.model, vec![prompt.clone()], &SamplingParams::greedy(0, vec![])).unwrap().remove(0);
    assert_eq!((out.finish_reason, out.completion_tokens), (FinishReason::Length, 0));
    let mut engine = Engine::new(&m.model, EngineConfig { max_batch: 1, max_seq_len: 6, prefill_chunk: 512 });
    let id = engine.add_request(GenerationRequest::new(prompt.clone(), SamplingParams::greedy(100, vec![]))).unwrap();
    let mut last = None;
    while engine.has_work() {
        for ev in engine.step().unwrap() {
            assert_eq!(ev.id, id);
            last = ev.finished.or(last);
        }
    }
    let last = last.unwrap();
    assert_eq!((last.finish_reason, last.completion_tokens), (FinishReason::Length, 3));
    assert!(engine.add_request(GenerationRequest::new(vec![1; 6], SamplingParams::greedy(1, vec![]))).is_err());
    assert!(engine.add_request(GenerationRequest::new(vec![], SamplingParams::greedy(1, vec![]))).is_err());
    assert!(engine.add_request(GenerationRequest::new(vec![99999], SamplingParams::greedy(1, vec![]))).is_err());

    // Cancel frees the slot for the next request.
    let mut engine = Engine::new(&m.model, EngineConfig { max_batch: 1, max_seq_len: 64, prefill_chunk: 512 });
    let a = engine.add_request(GenerationRequest::new(prompt.clone(), SamplingParams::greedy(50, vec![]))).unwrap();
    let b = engine.add_request(GenerationRequest::new(prompt.clone(), SamplingParams::greedy(2, vec![]))).unwrap();
    engine.step().unwrap();
    assert_eq!((engine.num_running(), engine.num_waiting()), (1, 1));
    assert!(engine.cancel(a));
    assert!(!engine.cancel(a));
    let mut done = None;
    while engine.has_work() {
        for ev in engine.step().unwrap() {
            assert_eq!(ev.id, b);
            done = ev.finished.or(done);
        }
    }
    assert_eq!(done.unwrap().new_ids, free.new_ids[..2].to_vec());
}

#[test]
fn seeded_sampling_is_reproducible_and_seed_dependent() {
    let m = load_model::<B>(&fixture("qwen2"), &device(), DType::F32).unwrap();
    let p = SamplingParams { temperature: 1.0, top_p: 0.9, top_k: 40, seed: 11, max_new_tokens: 12, ..Default::default() };
    let a = generate(&m.model, vec![vec![1, 2, 3]], &p).unwrap();
    let b = generate(&m.model, vec![vec![1, 2, 3]], &p).unwrap();
    assert_eq!(a, b);
    let c = generate(&m.model, vec![vec![1, 2, 3]], &SamplingParams { seed: 12, ..p }).unwrap();
    assert_ne!(a[0].new_ids, c[0].new_ids);
}
