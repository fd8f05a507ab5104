//! The checkpointed trainer's embedding gradient ([`EmbeddingRows`] added into a table by
//! `GradAccumulator::add_embedding_rows`) equals Burn's autodiff embedding backward bit for
//! bit: untied (fresh zero table), tied (rows added into the fused loss's pending projection
//! gradient), onto a running sum, with repeated ids (padding-like runs of one id), f32 and
//! bf16 rows.

use burn::backend::{Autodiff, Flex};
use burn::module::{Param, ParamId};
use burn::tensor::module::embedding;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use student::checkpointed::EmbeddingRows;
use student::optim::GradAccumulator;

type IB = Flex;
type AB = Autodiff<Flex>;

const VOCAB: usize = 11;
const H: usize = 6;

fn dev() -> burn::backend::flex::FlexDevice {
    Default::default()
}

fn floats(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 377.0)
        .collect()
}

/// Ids `[2, 7]` with repeats: a run of 0s (padding) and 3 and 9 several times.
fn ids() -> Tensor<IB, 2, Int> {
    let v: Vec<i64> = vec![3, 9, 3, 3, 1, 9, 0, 0, 0, 5, 3, 10, 9, 0];
    Tensor::from_data(TensorData::new(v, [2, 7]), &dev())
}

fn rows(dtype: DType, id: ParamId) -> EmbeddingRows<IB> {
    let g = Tensor::<IB, 3>::from_data(TensorData::new(floats(2 * 7 * H, 1), [2, 7, H]), &dev())
        .cast(dtype);
    EmbeddingRows {
        id,
        table_dims: [VOCAB, H],
        ids: ids(),
        grad: g,
    }
}

/// Burn's autodiff gradient of `Σ embedding(W, ids) ⊙ g` w.r.t. `W`, cast to f32.
fn autodiff_table(dtype: DType) -> Tensor<IB, 2> {
    let w = Tensor::<IB, 2>::from_data(TensorData::new(floats(VOCAB * H, 2), [VOCAB, H]), &dev())
        .cast(dtype);
    let w = Param::from_tensor(Tensor::<AB, 2>::from_inner(w))
        .val()
        .require_grad();
    let g = rows(dtype, ParamId::new()).grad;
    let e = embedding(w.clone(), Tensor::from_inner(ids()));
    let grads = (e * Tensor::from_inner(g)).sum().backward();
    w.grad(&grads).expect("a gradient").cast(FloatDType::F32)
}

fn bits(t: Tensor<IB, 2>) -> Vec<u32> {
    t.into_data().iter::<f32>().map(f32::to_bits).collect()
}

fn table(seed: usize) -> Tensor<IB, 2> {
    Tensor::from_data(TensorData::new(floats(VOCAB * H, seed), [VOCAB, H]), &dev())
}

fn taken(mut acc: GradAccumulator, id: ParamId) -> Tensor<IB, 2> {
    acc.take().get::<IB, 2>(id).expect("the table's gradient")
}

#[test]
fn untied_rows_equal_burns_embedding_backward() {
    for dtype in [DType::F32, DType::BF16] {
        let id = ParamId::new();
        let mut acc = GradAccumulator::new();
        let other = (ParamId::new(), table(3));
        let mut pending = Some(other.clone());
        acc.add_embedding_rows(rows(dtype, id), &mut pending);
        assert!(
            pending.is_some_and(|(p, _)| p == other.0),
            "another parameter's pending gradient stays pending"
        );
        let want = autodiff_table(dtype);
        assert_eq!(bits(taken(acc, id)), bits(want.clone()), "{dtype:?}");
        assert_eq!(
            bits(rows(dtype, id).table()),
            bits(want),
            "EmbeddingRows::table is Burn's backward"
        );
    }
}

#[test]
fn tied_rows_go_into_the_pending_projection_gradient() {
    for dtype in [DType::F32, DType::BF16] {
        let id = ParamId::new();
        let p = table(4);
        let mut acc = GradAccumulator::new();
        let mut pending = Some((id, p.clone()));
        acc.add_embedding_rows(rows(dtype, id), &mut pending);
        assert!(
            pending.is_none(),
            "the projection gradient became the running sum"
        );
        // Today's order: Burn's table registered, then the projection gradient added.
        let mut old = GradAccumulator::new();
        old.add_tensor::<IB, 2>(id, autodiff_table(dtype));
        old.add_tensor::<IB, 2>(id, p);
        assert_eq!(bits(taken(acc, id)), bits(taken(old, id)), "{dtype:?}");
    }
}

#[test]
fn rows_onto_a_running_sum_then_the_pending_gradient() {
    let id = ParamId::new();
    let (prev, p) = (table(5), table(6));
    let mut acc = GradAccumulator::new();
    acc.add_tensor::<IB, 2>(id, prev.clone());
    let mut pending = Some((id, p.clone()));
    acc.add_embedding_rows(rows(DType::F32, id), &mut pending);
    let (pid, p2) = pending
        .take()
        .expect("a running sum exists: the pending gradient waits");
    acc.add_tensor::<IB, 2>(pid, p2);
    let mut old = GradAccumulator::new();
    old.add_tensor::<IB, 2>(id, prev);
    old.add_tensor::<IB, 2>(id, autodiff_table(DType::F32));
    old.add_tensor::<IB, 2>(id, p);
    assert_eq!(bits(taken(acc, id)), bits(taken(old, id)));
}
