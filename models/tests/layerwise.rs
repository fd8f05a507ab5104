//! The layer-wise API composes to `forward_hidden`, and the block-wise (FlashAttention-2)
//! attention matches the materialising attention in values and gradients.

mod common;

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use common::*;
use models::flash_attention::{flash_backward, flash_backward_ops, flash_forward, flash_forward_ops, FlashPlan, KeyLayout};
use models::{load_model, AttentionImpl, AttentionLayout, CausalLm, DType, ForwardInput, LayerwiseLm};

type AB = Autodiff<B>;

const FIXTURES: [&str; 3] = ["qwen2", "llama3", "deepseek_v3"];

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-12);
    max_abs_diff(got, want) / scale
}

/// Rows of `t` ids, in 3 layouts: causal, right+left padded, packed (3 documents per row).
fn inputs<Bk: Backend>(t: usize, vocab: usize, dev: &Bk::Device) -> Vec<(&'static str, ForwardInput<Bk>)> {
    let ids: Vec<i64> = (0..2 * t).map(|i| ((i * 37 + 11) % vocab) as i64).collect();
    let ids = || Tensor::<Bk, 2, Int>::from_data(TensorData::new(ids.clone(), [2, t]), dev);
    let km: Vec<bool> = (0..2 * t).map(|i| if i < t { i < t - 3 } else { i - t >= 2 }).collect();
    let seg: Vec<i64> = (0..2 * t).map(|i| if i < t { (i * 3 / t) as i64 } else if i - t < 2 { 0 } else { 1 }).collect();
    vec![
        ("causal", ForwardInput::causal(ids())),
        (
            "padded",
            ForwardInput::causal(ids()).with_layout(AttentionLayout::CausalPadded {
                key_mask: Tensor::from_data(TensorData::new(km, [2, t]), dev),
            }),
        ),
        (
            "packed",
            ForwardInput::causal(ids()).with_layout(AttentionLayout::Packed {
                segment_ids: Tensor::from_data(TensorData::new(seg, [2, t]), dev),
            }),
        ),
    ]
}

#[test]
fn layers_compose_to_forward_hidden_with_both_attentions() {
    for name in FIXTURES {
        let m = load_model::<B>(&fixture(name), &device(), DType::F32).unwrap().model;
        let vocab = m.config().vocab_size;
        for (case, input) in inputs::<B>(13, vocab, &device()) {
            let want = values(m.forward_hidden(input.clone()));
            for (attn, tol) in [(AttentionImpl::Materialise, 0.0), (AttentionImpl::Blockwise { block_q: 4, block_k: 3 }, 1e-5)] {
                let ctx = m.layer_ctx(&input, attn);
                let mut x = m.embed_ids(input.input_ids.clone());
                for i in 0..m.num_layers() {
                    x = m.layer_forward(i, x, &ctx);
                }
                let got = values(m.final_norm(x));
                let e = rel_err(&got, &want);
                assert!(e <= tol, "{name} {case} {attn:?}: relative error {e}");
            }
        }
    }
}

/// Where a layer splits at its MLP activation, the split composes to the whole second half
/// bit for bit (Qwen2/Llama); mixture-of-experts models decline the split.
#[test]
fn mlp_split_composes_to_layer_after_attention() {
    for name in FIXTURES {
        let m = load_model::<B>(&fixture(name), &device(), DType::F32).unwrap().model;
        let (_, input) = inputs::<B>(13, m.config().vocab_size, &device()).remove(0);
        let ctx = m.layer_ctx(&input, AttentionImpl::Blockwise { block_q: 4, block_k: 3 });
        let plan = ctx.plan.clone().unwrap();
        let mut x = m.embed_ids(input.input_ids.clone());
        for i in 0..m.num_layers() {
            let a = m.layer_attention_inputs(i, x.clone(), &ctx);
            let o = flash_forward(a.q, a.k, a.v, a.scale, &plan).out;
            let whole = m.layer_after_attention(i, x.clone(), o.clone());
            match m.layer_mlp_inputs(i, x.clone(), o) {
                Some(mi) => {
                    let split = m.layer_mlp_output(i, mi.h, models::backend_ext::swiglu(mi.gate, mi.up));
                    assert_eq!(values(split), values(whole.clone()), "{name} layer {i}");
                }
                None => assert!(name.contains("deepseek"), "{name} layer {i} declined the split"),
            }
            x = whole;
        }
    }
}

/// Materialising reference on the autodiff backend: returns (out, dq, dk, dv).
fn reference(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, d_out: &Tensor<B, 4>, layout: &KeyLayout, scale: f64) -> [Vec<f32>; 4] {
    let [b, hq, t, _] = q.dims();
    let hkv = k.dims()[1];
    let rep = hq / hkv;
    let leaf = |x: &Tensor<B, 4>| Tensor::<AB, 4>::from_inner(x.clone()).require_grad();
    let (ql, kl, vl) = (leaf(q), leaf(k), leaf(v));
    let expand = |x: Tensor<AB, 4>| {
        let [b, h, t, d] = x.dims();
        x.unsqueeze_dim::<5>(2).expand([b, h, rep, t, d]).reshape([b, h * rep, t, d])
    };
    let mut hidden = Vec::with_capacity(b * t * t);
    for r in 0..b {
        for i in 0..t {
            for j in 0..t {
                let vis = j <= i
                    && match layout {
                        KeyLayout::Causal => true,
                        KeyLayout::Padded(m) => i == j || m[r * t + j],
                        KeyLayout::Packed(s) => s[r * t + i] == s[r * t + j],
                    };
                hidden.push(!vis);
            }
        }
    }
    let mask = Tensor::<AB, 4, Bool>::from_data(TensorData::new(hidden, [b, 1, t, t]), &device()).expand([b, hq, t, t]);
    let s = ql.clone().matmul(expand(kl.clone()).swap_dims(2, 3)) * scale;
    let p = softmax(s.mask_fill(mask, f32::NEG_INFINITY), 3);
    let out = p.matmul(expand(vl.clone()));
    let grads = (out.clone() * Tensor::from_inner(d_out.clone())).sum().backward();
    let g = |x: &Tensor<AB, 4>| values(x.grad(&grads).unwrap());
    [values(out.inner()), g(&ql), g(&kl), g(&vl)]
}

fn rand4(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &device())
}

#[test]
fn blockwise_attention_matches_materialising_values_and_grads() {
    let (b, t) = (2, 37);
    let layouts = [
        ("causal", KeyLayout::Causal),
        ("padded", KeyLayout::Padded((0..b * t).map(|i| !(i % t < 3 || i % t > 33 || i % t == 17)).collect())),
        ("packed", KeyLayout::Packed((0..b * t).map(|i| if i < t { (i % t / 10) as i64 } else { ((i % t) / 20) as i64 + 7 }).collect())),
    ];
    // (Hq, Hkv, dk, dv): MHA, GQA, MLA-like dv != dk.
    for (hq, hkv, dk, dv) in [(2, 2, 8, 8), (4, 2, 8, 8), (3, 1, 12, 8)] {
        let q = rand4([b, hq, t, dk], 1);
        let k = rand4([b, hkv, t, dk], 2);
        let v = rand4([b, hkv, t, dv], 3);
        let d_out = rand4([b, hq, t, dv], 4);
        let scale = 0.7 / (dk as f64).sqrt();
        for (name, layout) in &layouts {
            let want = reference(&q, &k, &v, &d_out, layout, scale);
            for (bq, bk) in [(8, 8), (5, 7), (64, 64), (1, 3)] {
                let plan = FlashPlan::new(layout, b, t, bq, bk);
                let fwd = flash_forward(q.clone(), k.clone(), v.clone(), scale, &plan);
                let g = flash_backward(q.clone(), k.clone(), v.clone(), &fwd, d_out.clone(), scale, &plan);
                let got = [values(fwd.out), values(g.dq), values(g.dk), values(g.dv)];
                for (what, (x, y)) in ["out", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
                    let e = rel_err(x, y);
                    assert!(e <= 1e-5, "{name} h{hq}/{hkv} d{dk}/{dv} blocks {bq}x{bk} {what}: relative error {e}");
                }
            }
        }
    }
}

/// The CPU kernel (what `flash_forward`/`flash_backward` run on Flex f32) against the
/// tensor-op version on strided inputs as the layers hand them over (`[B, T, H, d]` views
/// swapped to `[B, H, T, d]`), GQA, every layout and ragged blocks: outputs, log-sum-exp and
/// the three gradients within 1e-5 relative.
#[test]
fn cpu_kernel_matches_tensor_ops_on_strided_views() {
    let (b, t, hq, hkv, d) = (2, 45, 6, 2, 16);
    let layouts = [
        KeyLayout::Causal,
        KeyLayout::Padded((0..b * t).map(|i| i % t != 4 && i % t < 40).collect()),
        KeyLayout::Packed((0..b * t).map(|i| ((i % t) / 13 + 3 * (i / t)) as i64).collect()),
    ];
    let view = |shape: [usize; 4], seed| rand4([shape[0], shape[2], shape[1], shape[3]], seed).swap_dims(1, 2);
    let (q, k, v) = (view([b, hq, t, d], 11), view([b, hkv, t, d], 12), view([b, hkv, t, d], 13));
    let d_out = view([b, hq, t, d], 14);
    for layout in &layouts {
        for (bq, bk) in [(16, 16), (7, 11), (64, 64)] {
            let plan = FlashPlan::new(layout, b, t, bq, bk);
            let fast = flash_forward(q.clone(), k.clone(), v.clone(), 0.25, &plan);
            let ops = flash_forward_ops(q.clone(), k.clone(), v.clone(), 0.25, &plan);
            let gf = flash_backward(q.clone(), k.clone(), v.clone(), &fast, d_out.clone(), 0.25, &plan);
            let go = flash_backward_ops(q.clone(), k.clone(), v.clone(), &ops, d_out.clone(), 0.25, &plan);
            let pairs = [(fast.out, ops.out, "out"), (fast.lse, ops.lse, "lse"), (gf.dq, go.dq, "dq"), (gf.dk, go.dk, "dk"), (gf.dv, go.dv, "dv")];
            for (x, y, what) in pairs {
                let e = rel_err(&values(x), &values(y));
                assert!(e <= 1e-5, "{layout:?} blocks {bq}x{bk} {what}: relative error {e}");
            }
        }
    }
}

#[test]
fn packed_plans_skip_blocks_across_documents() {
    // 4 documents of 64 tokens in one row of 256, blocks of 32: only the two diagonal-adjacent
    // blocks of each document's own 2×2 block triangle are computed.
    let seg: Vec<i64> = (0..256).map(|i| (i / 64) as i64).collect();
    let packed = FlashPlan::new(&KeyLayout::Packed(seg), 1, 256, 32, 32);
    let causal = FlashPlan::new(&KeyLayout::Causal, 1, 256, 32, 32);
    assert_eq!(causal.computed_blocks(), 8 * 9 / 2);
    assert_eq!(packed.computed_blocks(), 4 * 3);
}
