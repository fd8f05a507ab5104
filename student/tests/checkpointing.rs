//! Gradient checkpointing (`student::checkpointed`) gives the plain backward's gradients:
//! every parameter within 1e-6 relative, on the qwen2, llama3 and deepseek_v3 fixtures, for
//! SFT (fused and autodiff cross-entropy), logit distillation and LoRA, with packed and
//! padded rows, with the materialising and the block-wise attention. Plus an end-to-end run.

mod common;
use common::*;

use std::cell::RefCell;
use std::collections::HashMap;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use models::{AttentionImpl, AttentionLayout, CausalLm, DType, ForwardInput, Model};
use student::checkpointed::{checkpointed_backward, checkpointed_backward_into, CheckpointOptions, EmbeddingRows, GradSink};
use student::config::{KdKind, LoraSection};
use student::fused_ce::{fused_ce, projection_weight};
use student::loss::{ce_sum_chunk, kd_sum_chunk, KdSpec, ShiftedTargets};
use student::lora::Lora;
use student::optim::GradAccumulator;

type IB = Flex;
type AB = Autodiff<Flex>;

fn dev() -> burn::backend::flex::FlexDevice {
    Default::default()
}

/// A micro-batch: input + shifted targets. Row 0 packs 3 documents, row 1 2 (packed case);
/// or row 0 right-padded, row 1 left-padded (padded case).
fn batch(packed: bool, vocab: usize) -> (ForwardInput<AB>, ShiftedTargets) {
    let t = 14;
    let ids: Vec<i64> = (0..2 * t).map(|i| ((i * 53 + 7) % vocab) as i64).collect();
    let labels: Vec<Vec<i64>> = (0..2).map(|r| (0..t).map(|i| if i % 5 == 0 { -100 } else { ids[r * t + i] }).collect()).collect();
    let input = ForwardInput::causal(Tensor::<AB, 2, Int>::from_data(TensorData::new(ids, [2, t]), &dev()));
    if packed {
        let seg: Vec<Vec<i64>> = vec![(0..t).map(|i| (i * 3 / t) as i64).collect(), (0..t).map(|i| (i >= 9) as i64).collect()];
        let pos: Vec<i64> = seg
            .iter()
            .flat_map(|row| {
                let mut p = 0;
                row.iter().enumerate().map(move |(i, s)| {
                    if i > 0 && row[i - 1] != *s {
                        p = 0;
                    }
                    p += 1;
                    p - 1
                })
            })
            .collect();
        let flat: Vec<i64> = seg.iter().flatten().copied().collect();
        let targets = ShiftedTargets::from_labels(&labels, Some(seg.as_slice()));
        let input = input
            .with_positions(Tensor::from_data(TensorData::new(pos, [2, t]), &dev()))
            .with_layout(AttentionLayout::Packed { segment_ids: Tensor::from_data(TensorData::new(flat, [2, t]), &dev()) });
        (input, targets)
    } else {
        let real: Vec<bool> = (0..2 * t).map(|i| if i < t { i < t - 4 } else { i - t >= 3 }).collect();
        let labels: Vec<Vec<i64>> = labels
            .iter()
            .enumerate()
            .map(|(r, row)| row.iter().enumerate().map(|(i, &l)| if real[r * t + i] { l } else { -100 }).collect())
            .collect();
        let targets = ShiftedTargets::from_labels(&labels, None);
        let input = input.with_layout(AttentionLayout::CausalPadded { key_mask: Tensor::from_data(TensorData::new(real, [2, t]), &dev()) });
        (input, targets)
    }
}

#[derive(Clone, Copy, Debug)]
enum Loss {
    FusedCe,
    Ce,
    Kd,
}

/// Scalar loss of final-norm hidden states; the fused CE also returns its projection gradient.
fn head(model: &Model<AB>, h: Tensor<AB, 3>, targets: &ShiftedTargets, loss: Loss, teacher: &Tensor<IB, 3>) -> (Tensor<AB, 1>, Option<(ParamId, Tensor<IB, 2>)>) {
    let n = targets.num_loss_tokens() as f64;
    let t = targets.seq;
    match loss {
        Loss::FusedCe => {
            let (proj, w) = projection_weight(model).unwrap();
            let f = fused_ce(h.clone().inner(), w.inner(), targets, 5, targets.num_loss_tokens(), true);
            ((h * Tensor::from_inner(f.grad_hidden)).sum(), f.grad_weight.map(|g| (proj.id, g)))
        }
        Loss::Ce => (ce_sum_chunk(model.logits(h), targets, 0, t).div_scalar(n), None),
        Loss::Kd => {
            let logits = model.logits(h);
            let spec = KdSpec { kind: KdKind::Jsd, beta: 0.3, temperature: 1.5 };
            let kd = kd_sum_chunk(logits.clone(), Tensor::from_inner(teacher.clone()), targets, 0, t, spec);
            ((ce_sum_chunk(logits, targets, 0, t) * 0.4 + kd * 0.6).div_scalar(n), None)
        }
    }
}

/// Makes every float parameter a trainable leaf (the cast model's are not).
struct Trainable;

impl ModuleMapper<AB> for Trainable {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, t, _) = p.consume();
        Param::initialized(id, t.detach().require_grad())
    }
}

struct Grads<'a> {
    g: &'a GradientsParams,
    out: HashMap<ParamId, Vec<f32>>,
}

impl ModuleVisitor<AB> for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.g.get::<IB, D>(p.id) {
            self.out.insert(p.id, g.into_data().iter::<f32>().collect());
        }
    }
}

/// Gradients by HF parameter name.
fn grads_of<M: AutodiffModule<AB>>(m: &M, g: &GradientsParams) -> HashMap<String, Vec<f32>> {
    let mut v = Grads { g, out: HashMap::new() };
    m.visit(&mut v);
    let names: HashMap<ParamId, String> = student::params::list_params(m).into_iter().map(|p| (p.id, p.name)).collect();
    v.out.into_iter().map(|(id, g)| (names[&id].clone(), g)).collect()
}

fn compare(what: &str, a: &HashMap<String, Vec<f32>>, b: &HashMap<String, Vec<f32>>, tol: f32) {
    assert!(b.len() >= 8, "{what}: only {} gradients", b.len());
    assert_eq!(a.len(), b.len(), "{what}: gradient sets differ");
    let mut report = Vec::new();
    for (id, want) in b {
        let got = &a[id];
        // ‖got − want‖₂ / ‖want‖₂ ≤ tol, and no element off by more than 10·tol of the
        // tensor's largest entry (f32 noise of a different summation order is ~1e-7).
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        let diff = norm(&mut got.iter().zip(want).map(|(x, y)| (*x - *y) as f64));
        let rel = diff / norm(&mut want.iter().map(|&y| y as f64)).max(1e-30);
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-20);
        let worst = got.iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale;
        if !(rel <= tol as f64 && worst <= 10.0 * tol) {
            report.push(format!("{id}: relative error {rel:.3e} (worst element {worst:.3e}, norm {:.3e})", norm(&mut want.iter().map(|&y| y as f64))));
        }
    }
    assert!(report.is_empty(), "{what}:\n{}", report.join("\n"));
}

/// Plain backward vs checkpointed backward of the same loss; LoRA when `lora`. In f64, so
/// a difference is a bug and not float noise of another summation order; f32 only within
/// 1e-5 (its noise alone reaches ~1e-6 on sums that cancel).
fn check(name: &str, loss: Loss, packed: bool, lora: bool, opts: CheckpointOptions) {
    check_in(DType::F64, 1e-6, name, loss, packed, lora, opts)
}

#[allow(clippy::too_many_arguments)]
fn check_in(dtype: DType, tol: f32, name: &str, loss: Loss, packed: bool, lora: bool, opts: CheckpointOptions) {
    // Loading accepts f32/f16/bf16 only: load f32, cast the values, re-wrap as leaves.
    let inner = models::load_model::<IB>(&fixture(name), &dev(), DType::F32).unwrap().model;
    let inner = if dtype == DType::F32 { inner } else { student::lora::cast_view(inner, dtype) };
    let mut model = Model::<AB>::from_inner(inner).map(&mut Trainable);
    let vocab = model.config().vocab_size;
    let (input, targets) = batch(packed, vocab);
    let teacher = {
        let n = 2 * targets.seq * vocab;
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1009) as f32 / 300.0) - 1.5).collect();
        Tensor::<IB, 3>::from_data(TensorData::new(v, [2, targets.seq, vocab]), &dev()).cast(dtype)
    };
    let adapters = lora.then(|| {
        model = model.clone().no_grad();
        let section = LoraSection {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: ["q_proj", "v_proj", "o_proj", "down_proj", "kv_b_proj", "q_a_proj"].map(String::from).to_vec(),
        };
        let mut l = Lora::<AB>::init(&model, &section, 3, &dev()).unwrap();
        for (i, p) in l.adapters.pairs.iter_mut().enumerate() {
            let [o, r] = p.lora_b.val().dims();
            let v: Vec<f32> = (0..o * r).map(|j| (((i + j) * 31 % 17) as f32 - 8.0) / 40.0).collect();
            p.lora_b = Param::from_tensor(Tensor::<AB, 2>::from_data(TensorData::new(v, [o, r]), &dev()).cast(dtype));
            p.lora_a = Param::from_tensor(Tensor::<AB, 2>::from_inner(p.lora_a.val().inner().cast(dtype)));
        }
        l
    });
    let view = || match &adapters {
        Some(l) => l.apply(model.clone(), None),
        None => model.clone(),
    };
    let add = |acc: &mut GradAccumulator, g: <AB as AutodiffBackend>::Gradients| match &adapters {
        Some(l) => acc.add(&l.adapters, g),
        None => acc.add(&model, g),
    };
    let finish = |mut acc: GradAccumulator, extra: Option<(ParamId, Tensor<IB, 2>)>| {
        if let (Some((id, g)), None) = (extra, &adapters) {
            acc.add_tensor::<IB, 2>(id, g);
        }
        let g = acc.take();
        match &adapters {
            Some(l) => grads_of(&l.adapters, &g),
            None => grads_of(&model, &g),
        }
    };

    let mut plain = GradAccumulator::new();
    let v = view();
    let (l, extra) = head(&v, v.forward_hidden(input.clone()), &targets, loss, &teacher);
    add(&mut plain, l.backward());
    let want = finish(plain, extra);

    let mut ck = GradAccumulator::new();
    let mut extra = None;
    checkpointed_backward(
        view,
        &input,
        &opts,
        |h| {
            let v = view();
            let (l, e) = head(&v, h, &targets, loss, &teacher);
            extra = e;
            l
        },
        |g| add(&mut ck, g),
    );
    let got = finish(ck, extra);
    compare(&format!("{name} {dtype:?} {loss:?} packed={packed} lora={lora} {opts:?}"), &got, &want, tol);

    // The trainer's path: the embedding's gradient as rows added into an existing table
    // gives the same bits as Burn's embedding backward (the fixtures are untied; tied
    // tables are covered by tests/embedding_rows.rs).
    let pending = RefCell::new(None);
    let mut sink = RowsSink { acc: GradAccumulator::new(), model: &model, lora: adapters.as_ref(), pending: &pending, took: false };
    checkpointed_backward_into(
        view,
        &input,
        &opts,
        |h| {
            let v = view();
            let (l, e) = head(&v, h, &targets, loss, &teacher);
            *pending.borrow_mut() = e;
            l
        },
        &mut sink,
    );
    assert_eq!(sink.took, adapters.is_none(), "rows are taken with full fine-tuning only");
    let rows = finish(sink.acc, pending.into_inner());
    assert_eq!(rows.len(), got.len());
    for (k, g) in &got {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&rows[k]) == bits(g), "{name} {dtype:?} {loss:?} packed={packed}: {k} differs with the embedding as rows");
    }
}

/// The trainer's sink: autodiff gradients into the accumulator, the embedding's rows into
/// an existing table (unless LoRA).
struct RowsSink<'a> {
    acc: GradAccumulator,
    model: &'a Model<AB>,
    lora: Option<&'a Lora<AB>>,
    pending: &'a RefCell<Option<(ParamId, Tensor<IB, 2>)>>,
    took: bool,
}

impl GradSink<AB> for RowsSink<'_> {
    fn grads(&mut self, g: <AB as AutodiffBackend>::Gradients) {
        match self.lora {
            Some(l) => self.acc.add(&l.adapters, g),
            None => self.acc.add(self.model, g),
        }
    }
    fn embedding_rows(&mut self, rows: EmbeddingRows<IB>) -> Option<EmbeddingRows<IB>> {
        if self.lora.is_some() {
            return Some(rows);
        }
        self.took = true;
        self.acc.add_embedding_rows(rows, &mut self.pending.borrow_mut());
        None
    }
}

const BLOCKWISE: CheckpointOptions = CheckpointOptions { every: 1, attention: AttentionImpl::Blockwise { block_q: 4, block_k: 3 } };
const DENSE: CheckpointOptions = CheckpointOptions { every: 1, attention: AttentionImpl::Materialise };

#[test]
fn sft_gradients_equal_plain_backward() {
    for name in ["qwen2", "llama3", "deepseek_v3"] {
        for packed in [true, false] {
            for loss in [Loss::FusedCe, Loss::Ce] {
                check(name, loss, packed, false, BLOCKWISE);
            }
        }
        check(name, Loss::Ce, true, false, DENSE);
        check_in(DType::F32, 1e-5, name, Loss::FusedCe, true, false, BLOCKWISE);
        check(name, Loss::FusedCe, true, false, CheckpointOptions { every: 2, ..BLOCKWISE });
    }
}

#[test]
fn kd_and_lora_gradients_equal_plain_backward() {
    for name in ["qwen2", "llama3", "deepseek_v3"] {
        check(name, Loss::Kd, true, false, BLOCKWISE);
        check(name, Loss::Ce, true, true, BLOCKWISE);
        check(name, Loss::Kd, false, true, CheckpointOptions { every: 2, ..BLOCKWISE });
    }
}

#[test]
fn checkpointed_training_run_has_the_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.jsonl");
    let rows = sft_rows("qwen2");
    let mut many = rows.clone();
    many.extend(rows.iter().rev().cloned());
    write_tokens(&train, &many);
    let model = fixture("qwen2");
    let sets = ["data.packing=true", "data.max_seq_len=16", "train.batch_size=1", "train.max_steps=3"];
    let a = tiny_config_with(&model, &train, &tmp.path().join("plain"), &sets);
    let mut with: Vec<&str> = sets.to_vec();
    with.push("train.gradient_checkpointing=true");
    let b = tiny_config_with(&model, &train, &tmp.path().join("ckpt"), &with);
    assert!(b.train.gradient_checkpointing);
    run(&a, false);
    run(&b, false);
    let (ma, mb) = (student::read_metrics(&tmp.path().join("plain")).unwrap(), student::read_metrics(&tmp.path().join("ckpt")).unwrap());
    assert_eq!(ma.len(), 3);
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        // Step 1 sees identical weights; later steps inherit AdamW's g/√v of float noise.
        let tol = if x.step == 1 { 1e-6 } else { 1e-5 };
        assert!((x.loss - y.loss).abs() <= tol * x.loss.abs(), "step {}: loss {} vs {}", x.step, x.loss, y.loss);
        assert!((x.grad_norm - y.grad_norm).abs() <= 1e-5 * x.grad_norm.abs(), "step {}: grad norm {} vs {}", x.step, x.grad_norm, y.grad_norm);
    }
}
