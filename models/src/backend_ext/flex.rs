//! The `Flex` (CPU) side of the seam: the only code in the crate that knows the Flex tensor
//! type. Everything here answers "can this tensor take the fast path?" and returns `None` /
//! `false` when not, so [`super`] falls back to the portable op.

use std::any::{Any, TypeId};
use std::ops::Range;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{bf16, f16, DType, TensorPrimitive};

use super::adamw::{step_in_place, step_in_place_transposed, AdamWScalars};
use super::gemv::{gemv_rows, MAX_ROWS, MIN_ROWS};
use super::sumsq::sum_squares_f32;

mod train;
pub(super) use train::{try_add_matmul_tn, try_flash_backward, try_flash_forward, try_matmul_nt_into, try_swiglu, try_swiglu_backward, try_xent_grad};

/// The Flex primitive behind `t`; `None` on any other backend (GPU, autodiff) or for
/// quantized tensors.
pub(super) fn to_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<FlexTensor> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() {
        return None;
    }
    let TensorPrimitive::Float(p) = t.into_primitive() else {
        return None;
    };
    let any: Box<dyn Any> = Box::new(p);
    any.downcast::<FlexTensor>().ok().map(|b| *b)
}

/// Wraps a Flex primitive back into a tensor of `B` (only called after [`to_flex`] succeeded,
/// so `B` is `Flex`).
pub(super) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let any: Box<dyn Any> = Box::new(t);
    let p = *any
        .downcast::<B::FloatTensorPrimitive>()
        .expect("primitive came from this backend");
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// `x [rows, in] · wᵀ` for `w [out, in]` through the GEMV kernel, when `B` is Flex, both are
/// f32 and `rows` is in `MIN_ROWS..=MAX_ROWS`; `None` otherwise.
pub(super) fn try_linear<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let [rows, k] = x.dims();
    let [out, k2] = w.dims();
    if !(MIN_ROWS..=MAX_ROWS).contains(&rows) || k != k2 {
        return None;
    }
    let wf = to_flex(w.clone())?;
    let ws = wf.as_slice::<f32>()?;
    let xf = to_flex(x.clone())?.to_contiguous();
    let xs = xf.as_slice::<f32>()?;
    let y = gemv_rows(xs, rows, ws, out, k);
    Some(from_flex::<B, 2>(FlexTensor::from_data(TensorData::new(
        y,
        [rows, out],
    ))))
}

/// `cache[ranges] = value` written straight into `cache`'s buffer; false (cache untouched)
/// when `B` is not Flex or the buffer cannot be written in place.
pub(super) fn try_assign<B: Backend, const D: usize>(
    cache: &mut Tensor<B, D>,
    ranges: &[Range<usize>],
    value: &Tensor<B, D>,
) -> bool {
    if TypeId::of::<B>() != TypeId::of::<Flex>() {
        return false;
    }
    let device = cache.device();
    let taken = std::mem::replace(cache, Tensor::empty([0; D], &device));
    let (restored, done) = match (
        to_flex::<B, D>(taken.clone()),
        to_flex::<B, D>(value.clone()),
    ) {
        (Some(mut dst), Some(src)) => {
            drop(taken);
            let done = write_flex(&mut dst, ranges, &src.to_contiguous());
            (from_flex::<B, D>(dst), done)
        }
        _ => (taken, false),
    };
    *cache = restored;
    done
}

/// One AdamW step written into the buffers of `exp_avg`, `exp_avg_sq` and `param` (a fresh
/// buffer for `param` when it is shared); false (all untouched) when `B` is not Flex, a
/// tensor is not f32, the lengths differ, a moment is shared or strided, or `param`/`grad`
/// are strided.
pub(super) fn try_adamw<B: Backend, const D: usize>(
    param: &mut Tensor<B, 1>,
    grad: &Tensor<B, D>,
    exp_avg: &mut Tensor<B, 1>,
    exp_avg_sq: &mut Tensor<B, 1>,
    s: &AdamWScalars,
) -> bool {
    if TypeId::of::<B>() != TypeId::of::<Flex>()
        || [
            param.dtype(),
            grad.dtype(),
            exp_avg.dtype(),
            exp_avg_sq.dtype(),
        ]
        .iter()
        .any(|d| *d != DType::F32)
    {
        return false;
    }
    let Some(g) = to_flex(grad.clone()) else {
        return false;
    };
    match [take_flex(param), take_flex(exp_avg), take_flex(exp_avg_sq)] {
        [Some(mut p), Some(mut m), Some(mut v)] => {
            let done = adamw_flex(&mut p, &g, &mut m, &mut v, s);
            *param = from_flex(p);
            *exp_avg = from_flex(m);
            *exp_avg_sq = from_flex(v);
            done
        }
        [p, m, v] => {
            for (slot, t) in [(param, p), (exp_avg, m), (exp_avg_sq, v)] {
                if let Some(t) = t {
                    *slot = from_flex(t);
                }
            }
            false
        }
    }
}

/// `table[indices[k]] += values[k]` for k in order, written into `table`'s buffer; false
/// (table untouched) when `B` is not Flex, a tensor is not f32, the shapes disagree, an
/// index is out of range or `table` is shared, strided or offset.
pub(super) fn try_select_add_rows<B: Backend>(
    table: &mut Tensor<B, 2>,
    indices: &[usize],
    values: &Tensor<B, 2>,
) -> bool {
    let [rows, cols] = table.dims();
    if TypeId::of::<B>() != TypeId::of::<Flex>()
        || table.dtype() != DType::F32
        || values.dtype() != DType::F32
        || values.dims() != [indices.len(), cols]
        || indices.iter().any(|&i| i >= rows)
    {
        return false;
    }
    let Some(v) = to_flex(values.clone()).map(|v| v.to_contiguous()) else {
        return false;
    };
    let Some(vs) = v.as_slice::<f32>() else {
        return false;
    };
    let Some(mut t) = take_flex(table) else {
        return false;
    };
    let done = write_in_place(&mut t, rows * cols, |ts| {
        for (&i, src) in indices.iter().zip(vs.chunks_exact(cols.max(1))) {
            for (d, s) in ts[i * cols..(i + 1) * cols].iter_mut().zip(src) {
                *d += *s;
            }
        }
    });
    *table = from_flex(t);
    done
}

/// `Σ t²` through [`sum_squares_f32`] when `B` is Flex and `t` is a contiguous f32 tensor;
/// `None` otherwise.
pub(super) fn try_sum_squares<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<f64> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let f = to_flex(t.clone())?;
    if let Some(s) = f.as_slice::<f32>() {
        return Some(sum_squares_f32(s));
    }
    // A permuted view (a transposed weight gradient) that covers its whole buffer exactly
    // once: the sum over the buffer, in buffer order (deterministic, like the contiguous case).
    let layout = f.layout();
    let mut strides: Vec<(usize, isize)> = layout.shape().iter().copied().zip(layout.strides().iter().copied()).collect();
    strides.sort_by_key(|&(_, s)| s);
    let mut expect = 1isize;
    let dense = strides.iter().all(|&(d, s)| {
        let ok = s == expect || d == 1;
        expect *= d as isize;
        ok
    });
    let storage = f.storage::<f32>();
    (dense && layout.start_offset() == 0 && storage.len() == layout.num_elements()).then(|| sum_squares_f32(storage))
}

/// Moves `t`'s Flex primitive out (as uniquely owned as `t` was), leaving an empty tensor;
/// `None` (and `t` as it was) when it has none.
fn take_flex<B: Backend, const D: usize>(t: &mut Tensor<B, D>) -> Option<FlexTensor> {
    let device = t.device();
    let taken = std::mem::replace(t, Tensor::empty([0; D], &device));
    match to_flex::<B, D>(taken.clone()) {
        Some(f) => {
            drop(taken);
            Some(f)
        }
        None => {
            *t = taken;
            None
        }
    }
}

/// Runs `f` on the first `n` f32 elements of `t`'s own buffer when [`writable`]; false (and
/// `f` not run) otherwise.
fn write_in_place(t: &mut FlexTensor, n: usize, f: impl FnOnce(&mut [f32])) -> bool {
    if !writable(t, n) {
        return false;
    }
    match t.try_storage_mut::<f32>() {
        Some(s) => {
            f(&mut s[..n]);
            true
        }
        None => false,
    }
}

/// Whether `t` holds its `n` elements alone, contiguous from offset 0 (writable in place).
fn writable(t: &FlexTensor, n: usize) -> bool {
    t.is_unique() && t.layout().contiguous_offsets() == Some((0, n))
}

/// How a gradient's buffer is laid out for the fused AdamW step.
enum GradLayout<'a> {
    /// Row-major like the parameter.
    Contiguous(&'a [f32]),
    /// A 2-D `[rows, cols]` view of a row-major `[cols, rows]` buffer (`transpose()` of it).
    Transposed(&'a [f32], usize, usize),
}

/// The gradient's layout, when the fused step can read it without a copy.
fn grad_layout(g: &FlexTensor, n: usize) -> Option<GradLayout<'_>> {
    if let Some(gs) = g.as_slice::<f32>() {
        return (gs.len() == n).then_some(GradLayout::Contiguous(gs));
    }
    let (shape, strides) = (g.layout().shape().to_vec(), g.layout().strides());
    let whole = g.layout().start_offset() == 0 && g.storage::<f32>().len() == n;
    match (shape.as_slice(), strides) {
        (&[rows, cols], &[1, rs]) if whole && rs == rows as isize && rows * cols == n => {
            Some(GradLayout::Transposed(g.storage::<f32>(), rows, cols))
        }
        _ => None,
    }
}

/// The step on Flex primitives (see [`try_adamw`]); false before anything is written.
fn adamw_flex(
    p: &mut FlexTensor,
    g: &FlexTensor,
    m: &mut FlexTensor,
    v: &mut FlexTensor,
    s: &AdamWScalars,
) -> bool {
    let n = p.layout().num_elements();
    let Some(gl) = grad_layout(g, n) else {
        return false;
    };
    if p.as_slice::<f32>().is_none() || !writable(m, n) || !writable(v, n) {
        return false;
    }
    let in_place = writable(p, n);
    let (Some(ms), Some(vs)) = (m.try_storage_mut::<f32>(), v.try_storage_mut::<f32>()) else {
        return false;
    };
    let (ms, vs) = (&mut ms[..n], &mut vs[..n]);
    let step = |ps: &mut [f32], ms: &mut [f32], vs: &mut [f32]| match gl {
        GradLayout::Contiguous(gs) => step_in_place(ps, gs, ms, vs, s),
        GradLayout::Transposed(gt, rows, cols) => step_in_place_transposed(ps, gt, rows, cols, ms, vs, s),
    };
    if in_place {
        if let Some(ps) = p.try_storage_mut::<f32>() {
            step(&mut ps[..n], ms, vs);
            return true;
        }
    }
    let Some(old) = p.as_slice::<f32>() else {
        return false;
    };
    tracing::trace!(n, "adamw: parameter buffer shared, writing a fresh one");
    let mut out = old.to_vec();
    step(&mut out, ms, vs);
    *p = FlexTensor::from_data(TensorData::new(out, [n]));
    true
}

/// Copies contiguous `src` into `dst[ranges]`; false (nothing written) when `dst` is shared,
/// strided or offset, the dtypes differ, or the shapes do not match.
fn write_flex(dst: &mut FlexTensor, ranges: &[Range<usize>], src: &FlexTensor) -> bool {
    let shape = dst.layout().shape().to_vec();
    let lens: Vec<usize> = ranges
        .iter()
        .map(|r| r.end.saturating_sub(r.start))
        .collect();
    if !dst.is_unique()
        || !dst.is_contiguous()
        || dst.layout().start_offset() != 0
        || dst.dtype() != src.dtype()
        || shape.len() != ranges.len()
        || ranges
            .iter()
            .zip(&shape)
            .any(|(r, &n)| r.start > r.end || r.end > n)
        || src.layout().shape().to_vec() != lens
    {
        return false;
    }
    match dst.dtype() {
        DType::F32 => copy_block(
            dst.try_storage_mut::<f32>(),
            &shape,
            ranges,
            src.as_slice::<f32>(),
        ),
        DType::F16 => copy_block(
            dst.try_storage_mut::<f16>(),
            &shape,
            ranges,
            src.as_slice::<f16>(),
        ),
        DType::BF16 => copy_block(
            dst.try_storage_mut::<bf16>(),
            &shape,
            ranges,
            src.as_slice::<bf16>(),
        ),
        _ => false,
    }
}

/// Row-major block copy of `src` (shape = range lengths) into `dst` (shape `shape`) at `ranges`,
/// in runs as long as the trailing full dimensions allow.
fn copy_block<E: Copy>(
    dst: Option<&mut [E]>,
    shape: &[usize],
    ranges: &[Range<usize>],
    src: Option<&[E]>,
) -> bool {
    let (Some(dst), Some(src)) = (dst, src) else {
        return false;
    };
    let lens: Vec<usize> = ranges.iter().map(|r| r.end - r.start).collect();
    if dst.len() != shape.iter().product::<usize>() || src.len() != lens.iter().product::<usize>() {
        return false;
    }
    if src.is_empty() {
        return true;
    }
    let nd = shape.len();
    let mut strides = vec![1usize; nd];
    for j in (0..nd.saturating_sub(1)).rev() {
        strides[j] = strides[j + 1] * shape[j + 1];
    }
    // First dimension of the contiguous run: every later one is written whole.
    let mut k = nd - 1;
    while k > 0 && lens[k] == shape[k] {
        k -= 1;
    }
    let run = lens[k] * strides[k];
    let outer: Vec<usize> = lens[..k].to_vec();
    let mut idx = vec![0usize; k];
    for chunk in src.chunks_exact(run) {
        let off: usize = (0..k)
            .map(|j| (ranges[j].start + idx[j]) * strides[j])
            .sum::<usize>()
            + ranges[k].start * strides[k];
        dst[off..off + run].copy_from_slice(chunk);
        for j in (0..k).rev() {
            idx[j] += 1;
            if idx[j] < outer[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_linear_applies_only_to_small_f32_flex_inputs() {
        let dev = burn::backend::flex::FlexDevice;
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new((0..24).map(|i| i as f32 * 0.1).collect::<Vec<_>>(), [3, 8]),
            &dev,
        );
        let w = Tensor::<Flex, 2>::from_data(
            TensorData::new(
                (0..40)
                    .map(|i| (i as f32 - 20.0) * 0.05)
                    .collect::<Vec<_>>(),
                [5, 8],
            ),
            &dev,
        );
        let fast = try_linear(&x, &w).expect("fast path");
        let slow = x.clone().matmul(w.clone().transpose());
        let d = (fast - slow).abs().max().into_scalar();
        assert!(d < 1e-5, "{d}");
        let big = Tensor::<Flex, 2>::zeros([MAX_ROWS + 1, 8], &dev);
        assert!(try_linear(&big, &w).is_none());
        let one = Tensor::<Flex, 2>::zeros([1, 8], &dev);
        assert!(try_linear(&one, &w).is_none());
        type Ad = burn::backend::Autodiff<Flex>;
        let xa = Tensor::<Ad, 2>::zeros([3, 8], &dev);
        let wa = Tensor::<Ad, 2>::zeros([5, 8], &dev);
        assert!(try_linear(&xa, &wa).is_none());
    }

    #[test]
    fn try_assign_declines_other_backends() {
        type Ad = burn::backend::Autodiff<Flex>;
        let dev = Default::default();
        let mut cache = Tensor::<Ad, 2>::zeros([2, 2], &dev);
        assert!(!try_assign(
            &mut cache,
            &[0..1, 0..2],
            &Tensor::<Ad, 2>::ones([1, 2], &dev)
        ));
        assert_eq!(cache.sum().into_scalar(), 0.0);
    }
}
