//! The Qwen2 and Llama-3 fixtures (reference outputs from transformers) reproduced by our
//! Burn decoder: logits, hidden states, greedy generation, cache consistency, batching.

mod common;

use burn::prelude::*;
use common::*;
use models::{
    generate, load_model, AttentionLayout, CachedInput, CausalLm, DType, ForwardInput, KvCache, LoadedModel,
    SamplingParams,
};

const FIXTURES: [&str; 2] = ["qwen2", "llama3"];

fn load(name: &str) -> LoadedModel<B> {
    load_model::<B>(&fixture(name), &device(), DType::F32).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ids_tensor(rows: &[Vec<u32>]) -> Tensor<B, 2, Int> {
    ForwardInput::<B>::from_rows(rows, &device()).unwrap().input_ids
}

#[test]
fn configs_parse_as_transformers_reads_them() {
    let q = models::ModelConfig::from_dir(&fixture("qwen2")).unwrap();
    assert_eq!(q.architecture, models::Architecture::Qwen2);
    assert!(q.attention_bias && !q.tie_word_embeddings);
    assert_eq!((q.num_attention_heads, q.num_key_value_heads, q.head_dim), (4, 2, 16));
    assert_eq!(q.rope_theta, 1e6);
    assert_eq!(q.eos_token_ids, vec![2]);
    let l = models::ModelConfig::from_dir(&fixture("llama3")).unwrap();
    assert_eq!(l.architecture, models::Architecture::Llama);
    assert!(!l.attention_bias);
    assert_eq!(l.eos_token_ids, vec![2, 3]);
    assert_eq!(l.rms_norm_eps, 1e-5);
    assert!(matches!(
        l.rope_scaling,
        Some(models::RopeScaling::Llama3 { factor, original_max_position_embeddings: 64, .. }) if factor == 8.0
    ));
}

#[test]
fn logits_match_reference_single_and_batch() {
    for name in FIXTURES {
        let m = load(name);
        assert!(m.unused_tensors.is_empty(), "{name}: unused {:?}", m.unused_tensors);
        let r = Reference::open(name);
        for case in ["single", "batch"] {
            let ids = r.ids(&format!("input_ids_{case}"));
            let logits = m.model.forward(ForwardInput::from_rows(&ids, &device()).unwrap());
            let (want, shape) = r.f32(&format!("logits_{case}"));
            assert_eq!(logits.dims().to_vec(), shape, "{name} {case}");
            assert_close(&format!("{name} logits_{case}"), &values(logits), &want, 1e-4);
        }
    }
}

#[test]
fn hidden_states_match_reference_per_layer() {
    for name in FIXTURES {
        let m = load(name);
        let r = Reference::open(name);
        let ids = r.ids("input_ids_single");
        let hs = m.model.forward_hidden_states(ForwardInput::from_rows(&ids, &device()).unwrap());
        assert_close(&format!("{name} embed"), &values(hs.embed), &r.f32("single.hidden.embed").0, 1e-4);
        assert_eq!(hs.layers.len(), m.config.num_hidden_layers);
        for (i, h) in hs.layers.into_iter().enumerate() {
            assert_close(&format!("{name} layer{i}"), &values(h), &r.f32(&format!("single.hidden.layer{i}")).0, 1e-4);
        }
        assert_close(&format!("{name} final_norm"), &values(hs.final_norm), &r.f32("single.hidden.final_norm").0, 1e-4);
    }
}

#[test]
fn greedy_generation_matches_reference_ids_and_step_logits() {
    for name in FIXTURES {
        let m = load(name);
        let r = Reference::open(name);
        let prompt = r.ids("generate.prompt_ids").remove(0);
        let want = r.ids("generate.new_ids").remove(0);
        let out = generate(&m.model, vec![prompt.clone()], &SamplingParams::greedy(want.len(), m.generation.eos_token_ids.clone()))
            .unwrap()
            .remove(0);
        assert_eq!(out.new_ids, want, "{name}");
        assert_eq!(out.finish_reason, models::FinishReason::Length);
        assert_eq!((out.prompt_tokens, out.completion_tokens), (prompt.len(), want.len()));

        // Step logits through the cache: prefill, then one token at a time.
        let (step_logits, _) = r.f32("generate.step_logits");
        let vocab = m.config.vocab_size;
        let mut cache = m.model.new_cache(1, prompt.len() + want.len());
        let mut input = prompt.clone();
        for (step, &tok) in want.iter().enumerate() {
            let h = m.model.forward_cached(CachedInput { input_ids: ids_tensor(&[input.clone()]), slots: vec![0], lengths: None }, &mut cache).unwrap();
            let t = h.dims()[1];
            let logits = values(m.model.logits(h.narrow(1, t - 1, 1)));
            assert_close(&format!("{name} step {step}"), &logits, &step_logits[step * vocab..(step + 1) * vocab], 1e-4);
            input = vec![tok];
        }
        assert_eq!(cache.len(0), prompt.len() + want.len() - 1);
    }
}

#[test]
fn cached_decode_equals_full_recompute() {
    for name in FIXTURES {
        let m = load(name);
        let seq: Vec<u32> = vec![5, 77, 300, 12, 9, 401, 250, 3, 64, 128];
        let full = values(m.model.forward(ForwardInput::from_rows(std::slice::from_ref(&seq), &device()).unwrap()));
        let vocab = m.config.vocab_size;
        // Prefill 4 tokens, then a chunk of 3, then single tokens.
        let mut cache = m.model.new_cache(2, 16);
        let mut got = Vec::new();
        for chunk in [&seq[0..4], &seq[4..7], &seq[7..8], &seq[8..9], &seq[9..10]] {
            let h = m.model.forward_cached(CachedInput { input_ids: ids_tensor(&[chunk.to_vec()]), slots: vec![1], lengths: None }, &mut cache).unwrap();
            got.extend(values(m.model.logits(h)));
        }
        assert_eq!(got.len(), seq.len() * vocab);
        assert_close(&format!("{name} cached vs full"), &got, &full, 1e-4);
        assert_eq!((cache.len(0), cache.len(1)), (0, 10));
    }
}

#[test]
fn batched_generation_of_different_lengths_equals_each_alone() {
    for name in FIXTURES {
        let m = load(name);
        let prompts: Vec<Vec<u32>> = vec![vec![11, 22, 33], vec![7, 8, 9, 10, 11, 12, 13], vec![400], vec![5, 6, 7, 8, 9]];
        let params = SamplingParams::greedy(9, vec![]);
        let batched = generate(&m.model, prompts.clone(), &params).unwrap();
        for (p, b) in prompts.iter().zip(&batched) {
            let alone = generate(&m.model, vec![p.clone()], &params).unwrap().remove(0);
            assert_eq!(alone.new_ids, b.new_ids, "{name} prompt {p:?}");
            assert_eq!(b.new_ids.len(), 9);
        }
        // Sampling is per-request seeded: batched == alone with the same seed.
        let sp = SamplingParams { temperature: 0.9, top_p: 0.95, top_k: 50, seed: 3, max_new_tokens: 8, ..Default::default() };
        let batched = generate(&m.model, prompts.clone(), &sp).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let alone = generate(&m.model, vec![p.clone()], &SamplingParams { seed: sp.seed + i as u64, ..sp.clone() }).unwrap();
            assert_eq!(alone[0].new_ids, batched[i].new_ids, "{name} sampled prompt {i}");
        }
    }
}

#[test]
fn padded_and_packed_layouts_equal_separate_sequences() {
    let m = load("llama3");
    let a: Vec<u32> = vec![10, 20, 30, 40, 50];
    let b: Vec<u32> = vec![60, 70, 80];
    let la = values(m.model.forward(ForwardInput::from_rows(std::slice::from_ref(&a), &device()).unwrap()));
    let lb = values(m.model.forward(ForwardInput::from_rows(std::slice::from_ref(&b), &device()).unwrap()));
    let v = m.config.vocab_size;

    // Left-padded batch [a; pad pad b] with explicit positions.
    let rows = vec![a.clone(), vec![0, 0, 60, 70, 80]];
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(vec![true, true, true, true, true, false, false, true, true, true], [2, 5]), &device());
    let pos = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4, 0, 0, 0, 1, 2], [2, 5]), &device());
    let input = ForwardInput::from_rows(&rows, &device()).unwrap().with_positions(pos).with_layout(AttentionLayout::CausalPadded { key_mask: mask });
    let out = values(m.model.forward(input));
    assert!(out.iter().all(|x| x.is_finite()));
    assert_close("padded row a", &out[..5 * v], &la, 1e-4);
    assert_close("padded row b", &out[(5 + 2) * v..], &lb, 1e-4);

    // Packed row [a b] with segment ids and default (restarting) positions.
    let packed: Vec<u32> = a.iter().chain(&b).copied().collect();
    let seg = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 0, 0, 0, 0, 1, 1, 1], [1, 8]), &device());
    let input = ForwardInput::from_rows(&[packed], &device()).unwrap().with_layout(AttentionLayout::Packed { segment_ids: seg });
    let out = values(m.model.forward(input));
    assert_close("packed doc a", &out[..5 * v], &la, 1e-4);
    assert_close("packed doc b", &out[5 * v..], &lb, 1e-4);
}

#[test]
fn bf16_compute_stays_close_to_f32() {
    let m = load_model::<B>(&fixture("qwen2"), &device(), DType::BF16).unwrap();
    assert_eq!(m.model.dtype(), DType::BF16);
    let r = Reference::open("qwen2");
    let ids = r.ids("input_ids_single");
    let logits = m.model.forward(ForwardInput::from_rows(&ids, &device()).unwrap());
    assert_eq!(logits.dtype(), DType::BF16);
    let d = max_abs_diff(&values(logits), &r.f32("logits_single").0);
    assert!(d < 0.15, "bf16 logits drift {d}");
}
