//! Backend-specific fast paths behind one seam.
//!
//! Generic layers call the functions here ([`linear`], [`assign_in_place`],
//! [`adamw_in_place`], [`select_add_rows_in_place`], [`sum_squares`], [`xent_grad_in_place`],
//! [`add_matmul_tn`], [`matmul_nt_into`], [`flash_forward_fast`], [`flash_backward_fast`],
//! [`swiglu`], [`swiglu_backward`]) and never name a
//! backend; each function tries the fast path of the
//! backend it runs on and otherwise does the portable Burn op, with the same result (up to
//! float summation order). Today the only fast paths are for `Flex`, the CPU backend
//! ([`flex`]): a weight-streaming GEMV for decode-sized products ([`gemv`]), in-place KV-cache
//! writes, a one-pass in-place AdamW step, row additions into a gradient table in place,
//! an allocation-free, thread-count-independent sum of squares, and for chunked losses a
//! cross-entropy gradient computed in the logits' own buffer ([`xent`]) and GEMMs that write
//! into (or add to) buffers the caller already owns; for training, a FlashAttention-2
//! kernel ([`flash_cpu`]) and SwiGLU's activation and its backward ([`swiglu`]). A GPU
//! kernel would be one more module here, with no change to the layers.

mod adamw;
pub mod flash_cpu;
mod flex;
pub mod gemv;
pub mod sumsq;
pub mod swiglu;
pub mod xent;

pub use adamw::{adamw_tensor_ops, AdamWScalars};

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

use crate::flash_attention::{FlashGrads, FlashOutput, FlashPlan};

static GEMV: AtomicBool = AtomicBool::new(true);

/// Turns the decode GEMV fast path on or off process-wide (on by default), so `distill bench
/// generate --matmul-only` can measure what it buys against plain `matmul`. Benchmarks are its
/// only caller; results do not depend on it beyond float summation order.
pub fn set_gemv_enabled(on: bool) {
    GEMV.store(on, Ordering::Relaxed);
}

/// `x [rows, in] · wᵀ` for a weight `w [out, in]` in PyTorch's `nn.Linear` layout.
pub fn linear<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if GEMV.load(Ordering::Relaxed) {
        if let Some(y) = flex::try_linear(&x, &w) {
            return y;
        }
    }
    x.matmul(w.transpose())
}

/// `cache[ranges] = value`, writing into `cache`'s own buffer where the backend allows so a
/// step costs what it writes, not the cache's capacity.
///
/// Why not `slice_assign` alone: burn-flex 0.21's `slice_assign` (and scatter/select_assign)
/// calls `to_contiguous()` on its input, which for a contiguous tensor returns a second handle
/// to the same buffer while the first is still alive, so the copy-on-write `storage_mut` always
/// sees a shared buffer and copies the whole `[slots, heads, capacity, dim]` tensor (plus page
/// faults for the fresh allocation) on every write. On `Flex`, when `cache` is uniquely owned,
/// contiguous and of a float dtype, `value` is copied straight into its storage; anything else
/// (GPU, autodiff, a live view of the cache) falls back to `slice_assign`.
pub fn assign_in_place<B: Backend, const D: usize>(
    cache: &mut Tensor<B, D>,
    ranges: [Range<usize>; D],
    value: Tensor<B, D>,
) {
    if !flex::try_assign(cache, &ranges, &value) {
        cache.inplace(|c| c.slice_assign(ranges, value));
    }
}

/// One AdamW step of a flattened f32 parameter written into the buffers it already has:
/// `exp_avg` and `exp_avg_sq` in place, `param` in place too unless its buffer is shared
/// (then into one fresh buffer). Returns false, with nothing touched, where the backend has
/// no such path (GPU, autodiff), a tensor is not f32, the lengths differ or a moment is
/// shared or strided; the caller then runs [`adamw_tensor_ops`], which gives the same bits.
/// `grad` is the parameter's gradient in any shape of the same length, read where it lies:
/// contiguous, or a 2-D transposed view (how autodiff hands a linear weight's gradient), so
/// it is never copied.
///
/// Why: the tensor-op step allocates a result per op, and on the largest parameter (a tied
/// 151,936 × 896 embedding is 545 MB in f32) two such temporaries are alive at once next to
/// every gradient, which set the peak of a whole CPU training run. The fast path allocates
/// nothing of the parameter's size.
pub fn adamw_in_place<B: Backend, const D: usize>(
    param: &mut Tensor<B, 1>,
    grad: &Tensor<B, D>,
    exp_avg: &mut Tensor<B, 1>,
    exp_avg_sq: &mut Tensor<B, 1>,
    s: &AdamWScalars,
) -> bool {
    flex::try_adamw(param, grad, exp_avg, exp_avg_sq, s)
}

/// `table.select_add(0, indices, values)` (`table[indices[k]] += values[k]` for k in order,
/// the same bits) written into `table`'s own buffer where the backend allows.
///
/// Why: Burn's `select_add` on Flex copies the whole table before adding (`to_vec`), and
/// the embedding backward adds a few thousand rows into a `[vocab, hidden]` gradient (545 MB
/// for Qwen2.5's 151,936 × 896 in f32): the copy was the CPU peak of a checkpointed training
/// step. On Flex, when `table` is uniquely owned, contiguous and f32, the rows are added in
/// place; anything else falls back to `select_add`. Panics if an index is out of range.
pub fn select_add_rows_in_place<B: Backend>(
    table: &mut Tensor<B, 2>,
    indices: &[usize],
    values: Tensor<B, 2>,
) {
    if flex::try_select_add_rows(table, indices, &values) {
        return;
    }
    let rows = table.dims()[0];
    if let Some(bad) = indices.iter().find(|&&i| i >= rows) {
        panic!("select_add_rows_in_place: row {bad} out of range for a table of {rows} rows");
    }
    let device = table.device();
    let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [indices.len()]), &device);
    table.inplace(|t| t.select_assign(0, idx, values, IndexingUpdateOp::Add));
}

/// Softmax cross-entropy of `logits [rows, vocab]` (f32) against `targets`, turned in place
/// into `dL/dlogits = (softmax − onehot(target)) · keep · scale`; returns it with
/// `Σ_r (logsumexp − logit[target]) · keep_r`. `Err(logits)`, untouched, where the backend has
/// no such path (GPU, autodiff, shared or strided buffers): the caller runs tensor ops.
///
/// Why: as tensor ops this is eight passes over a `[rows, vocab]` chunk, each allocating a
/// fresh chunk-sized buffer on one thread; it was a fifth of a CPU training step
/// ([`xent`] has the kernel).
pub fn xent_grad_in_place<B: Backend>(logits: Tensor<B, 2>, targets: &[usize], keep: &[f32], scale: f32) -> Result<(Tensor<B, 2>, f64), Tensor<B, 2>> {
    flex::try_xent_grad(logits, targets, keep, scale)
}

/// `acc [m, n] += aᵀ · b` for `a [k, m]`, `b [k, n]`, added into `acc`'s own buffer where the
/// backend allows (Flex, f32, `acc` uniquely owned), else `acc + aᵀ·b` as tensor ops.
///
/// Why: a chunked loss adds one `[vocab, hidden]` product per chunk into the projection's
/// gradient; as `acc + product` each chunk allocated and faulted in two tables of 545 MB
/// (Qwen's vocabulary in f32) and read three.
pub fn add_matmul_tn<B: Backend>(acc: &mut Tensor<B, 2>, a: &Tensor<B, 2>, b: &Tensor<B, 2>) {
    if !flex::try_add_matmul_tn(acc, a, b) {
        tracing::trace!(dims = ?acc.dims(), "add_matmul_tn: accumulating through a fresh sum");
        let product = a.clone().transpose().matmul(b.clone()).cast(acc.dtype());
        acc.inplace(|t| t + product);
    }
}

/// `x [rows, k] · wᵀ` for `w [out, k]`, written into `buf`'s buffer when it is a uniquely
/// owned `[rows, out]` f32 Flex tensor (the same bits as `matmul`), else a fresh `matmul`.
///
/// Why: a chunked loss computes one `[rows, vocab]` logits chunk after another; reusing the
/// last chunk's buffer saves faulting in a fresh one (78 MB at Qwen's vocabulary) per chunk.
pub fn matmul_nt_into<B: Backend>(buf: Option<Tensor<B, 2>>, x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Tensor<B, 2> {
    if let Some(buf) = buf {
        match flex::try_matmul_nt_into(buf, x, w) {
            Ok(y) => return y,
            Err(buf) => tracing::trace!(dims = ?buf.dims(), "matmul_nt_into: buffer not reusable"),
        }
    }
    x.clone().matmul(w.clone().transpose())
}

/// [`crate::flash_attention::flash_forward`] on the backend's own kernel, or `None` where
/// there is none (then the caller runs the tensor-op version). On Flex with f32 inputs:
/// [`flash_cpu`], one rayon task per (row, query head).
pub fn flash_forward_fast<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, scale: f64, plan: &FlashPlan) -> Option<FlashOutput<B>> {
    flex::try_flash_forward(q, k, v, scale, plan).map(|(out, lse)| FlashOutput { out, lse })
}

/// [`crate::flash_attention::flash_backward`] on the backend's own kernel, or `None` where
/// there is none.
pub fn flash_backward_fast<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, fwd: &FlashOutput<B>, d_out: &Tensor<B, 4>, scale: f64, plan: &FlashPlan) -> Option<FlashGrads<B>> {
    flex::try_flash_backward([q, k, v, &fwd.out, &fwd.lse, d_out], scale, plan).map(|(dq, dk, dv)| FlashGrads { dq, dk, dv })
}

/// SwiGLU's activation `silu(gate) · up`. On Flex f32 one parallel pass
/// ([`swiglu::swiglu_in_place`], into `up`'s buffer when it is uniquely owned); elsewhere
/// (GPU, autodiff graphs, bf16) Burn's `silu(gate) * up`, which autodiff differentiates.
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    match flex::try_swiglu(&gate, up) {
        Ok(act) => act,
        Err(up) => burn::tensor::activation::silu(gate) * up,
    }
}

/// `(dL/dgate, dL/dup)` of [`swiglu`] given `d_act = dL/d(silu(gate)·up)`, for trainers that
/// run the activation outside autodiff. On Flex f32 one parallel pass
/// ([`swiglu::swiglu_backward`]); elsewhere the same formula as tensor ops.
pub fn swiglu_backward<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>, d_act: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
    if let Some(grads) = flex::try_swiglu_backward(&gate, &up, &d_act) {
        return grads;
    }
    let s = burn::tensor::activation::sigmoid(gate.clone());
    let d_up = d_act.clone() * (gate.clone() * s.clone());
    let d_gate = (d_act * up) * (s.clone() * (gate * s.neg().add_scalar(1.0)).add_scalar(1.0));
    (d_gate, d_up)
}

/// `Σ t²` as a one-element f32 tensor, like `t.square().sum()` up to float summation order.
///
/// Why: `square()` allocates a temporary the size of `t` (545 MB for an embedding gradient
/// of Qwen2.5's vocabulary, the CPU peak of the global-norm pass), and Flex's parallel
/// `sum` rounds differently on different thread counts. On Flex, for a contiguous f32 `t`,
/// [`sumsq::sum_squares_f32`] reads `t` once with a fixed reduction tree (the same bits on
/// any number of threads; within 1e-6 relative of an f64 reference in its tests); anything
/// else (GPU, other dtypes, strided) runs `square().sum()`.
pub fn sum_squares<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Tensor<B, 1> {
    match flex::try_sum_squares(t) {
        Some(s) => Tensor::from_data(
            TensorData::new(vec![s as f32], [1]),
            (&t.device(), t.dtype()),
        ),
        None => t.clone().square().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// Address of a tensor's buffer (to tell an in-place write from a reallocation).
    fn ptr<const D: usize>(t: &Tensor<Flex, D>) -> *const u8 {
        flex::to_flex::<Flex, D>(t.clone())
            .unwrap()
            .bytes()
            .as_ptr()
    }

    /// The write lands in the cache's own buffer (no whole-cache copy) and matches `slice_assign`.
    #[test]
    fn assign_in_place_reuses_buffer_and_matches_slice_assign() {
        let dev = Default::default();
        let shape = [3, 2, 7, 4];
        let mut cache = Tensor::<Flex, 4>::zeros(shape, &dev);
        let mut expected = Tensor::<Flex, 4>::zeros(shape, &dev);
        let before = ptr(&cache);
        let writes: [([Range<usize>; 4], usize); 3] = [
            ([0..3, 0..2, 0..2, 0..4], 0),
            ([1..2, 0..2, 2..5, 0..4], 100),
            ([2..3, 1..2, 6..7, 1..3], 200),
        ];
        for (ranges, base) in writes {
            let dims: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
            let n: usize = dims.iter().product();
            let vals: Vec<f32> = (0..n).map(|i| (base + i) as f32).collect();
            // A transposed (strided) value, as k/v projections arrive.
            let v = Tensor::<Flex, 4>::from_data(
                TensorData::new(vals, [dims[0], dims[2], dims[1], dims[3]]),
                &dev,
            )
            .swap_dims(1, 2);
            assign_in_place(&mut cache, ranges.clone(), v.clone());
            expected = expected.slice_assign(ranges, v);
        }
        assert_eq!(ptr(&cache), before, "cache buffer was reallocated");
        cache.into_data().assert_eq(&expected.into_data(), true);
    }

    /// A live view of the cache forces the copy-on-write fallback, which must not alter the view.
    #[test]
    fn assign_in_place_with_live_view_keeps_view_intact() {
        let dev = Default::default();
        let mut cache = Tensor::<Flex, 4>::zeros([1, 1, 4, 2], &dev);
        let view = cache.clone().slice([0..1, 0..1, 0..2, 0..2]);
        assign_in_place(
            &mut cache,
            [0..1, 0..1, 0..1, 0..2],
            Tensor::ones([1, 1, 1, 2], &dev),
        );
        assert_eq!(view.sum().into_scalar(), 0.0);
        assert_eq!(cache.sum().into_scalar(), 2.0);
    }

    /// Rows (repeated indices included) are added in index order into the table's own
    /// buffer: the bits of `select_assign(.., Add)`; a shared table takes the portable path
    /// and leaves the other handle intact.
    #[test]
    fn select_add_rows_in_place_reuses_buffer_and_matches_select_add() {
        let dev = Default::default();
        let vals = |n: usize, s: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 37 + s * 11) % 23) as f32 / 7.0 - 1.3)
                .collect()
        };
        let mut table = Tensor::<Flex, 2>::from_data(TensorData::new(vals(9 * 5, 1), [9, 5]), &dev);
        let want0 = table.clone().into_data();
        let idx = [4usize, 0, 4, 8, 4];
        let rows = Tensor::<Flex, 2>::from_data(TensorData::new(vals(5 * 5, 2), [5, 5]), &dev);
        let ids = Tensor::<Flex, 1, Int>::from_data(
            TensorData::new(idx.iter().map(|&i| i as i64).collect::<Vec<_>>(), [5]),
            &dev,
        );
        let want = Tensor::<Flex, 2>::from_data(want0.clone(), &dev).select_assign(
            0,
            ids,
            rows.clone(),
            IndexingUpdateOp::Add,
        );
        let before = ptr(&table);
        select_add_rows_in_place(&mut table, &idx, rows.clone());
        assert_eq!(ptr(&table), before, "table buffer was reallocated");
        table
            .clone()
            .into_data()
            .assert_eq(&want.clone().into_data(), true);
        let bits = |t: Tensor<Flex, 2>| {
            t.into_data()
                .iter::<f32>()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(table.clone()), bits(want.clone()));
        // Shared: the other handle keeps its values.
        let mut shared = Tensor::<Flex, 2>::from_data(want0.clone(), &dev);
        let keep = shared.clone();
        select_add_rows_in_place(&mut shared, &idx, rows);
        keep.into_data().assert_eq(&want0, true);
        assert_eq!(bits(shared), bits(want));
    }

    /// The fused sum of squares is `square().sum()` within 1e-6 relative and the same bits
    /// on 1 and 4 threads (on a tensor above Flex's parallel-sum threshold).
    #[test]
    fn sum_squares_matches_square_sum_on_any_thread_count() {
        let dev = Default::default();
        let n = 5 * (1 << 20) + 77;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 1e-3)
            .collect();
        let t = Tensor::<Flex, 1>::from_data(TensorData::new(v, [n]), &dev);
        let want = t.clone().square().sum().into_scalar() as f64;
        let on = |k: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .unwrap()
                .install(|| sum_squares(&t).into_scalar())
        };
        let one = on(1);
        assert!(
            ((one as f64) - want).abs() <= 1e-6 * want,
            "{one} vs {want}"
        );
        assert_eq!(one.to_bits(), on(4).to_bits());
        type Ad = burn::backend::Autodiff<Flex>;
        let a = Tensor::<Ad, 1>::from_data(TensorData::new(vec![3.0f32, 4.0], [2]), &dev);
        assert_eq!(
            sum_squares(&a).into_scalar(),
            25.0,
            "other backends: square().sum()"
        );
    }

    /// A transposed view (a linear weight's gradient) is summed over its buffer without a
    /// copy: the same bits as the contiguous buffer; a narrowed view (not the whole buffer)
    /// takes the portable path and still agrees.
    #[test]
    fn sum_squares_reads_a_transposed_view_in_place() {
        let dev = Default::default();
        let buf = Tensor::<Flex, 2>::random([300, 77], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let t = buf.clone().transpose();
        assert_eq!(flex::try_sum_squares(&t).map(f64::to_bits), flex::try_sum_squares(&buf).map(f64::to_bits));
        let narrowed = t.clone().narrow(1, 5, 100);
        assert!(flex::try_sum_squares(&narrowed).is_none());
        let want = narrowed.clone().square().sum().into_scalar();
        let got = sum_squares(&narrowed).into_scalar();
        assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    }

    /// The chunked-loss GEMMs: `matmul_nt_into` writes into the given buffer with the bits of
    /// `matmul`, and `add_matmul_tn` adds `aᵀ·b` into the accumulator's own buffer (and falls
    /// back to a fresh sum when it is shared).
    #[test]
    fn chunked_loss_gemms_reuse_buffers() {
        let dev = Default::default();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let x = Tensor::<Flex, 2>::random([33, 40], normal, &dev);
        let w = Tensor::<Flex, 2>::random([501, 40], normal, &dev);
        let buf = Tensor::<Flex, 2>::zeros([33, 501], &dev);
        let before = ptr(&buf);
        let y = matmul_nt_into(Some(buf), &x, &w);
        assert_eq!(ptr(&y), before, "logits buffer was not reused");
        y.clone().into_data().assert_eq(&x.clone().matmul(w.clone().transpose()).into_data(), true);

        let mut acc = Tensor::<Flex, 2>::random([501, 40], normal, &dev);
        let want = acc.clone() + y.clone().transpose().matmul(x.clone());
        let before = ptr(&acc);
        add_matmul_tn(&mut acc, &y, &x);
        assert_eq!(ptr(&acc), before, "accumulator was reallocated");
        acc.clone().into_data().assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::rel_abs(1e-5, 1e-4));

        // An accumulator that is itself a product of a transposed view (the first chunk's
        // `dᵀ · h`, as the fused loss starts it) is written in place too.
        let mut first = y.clone().transpose().matmul(x.clone());
        let before = ptr(&first);
        add_matmul_tn(&mut first, &y, &x);
        assert_eq!(ptr(&first), before, "a product accumulator was reallocated");

        let shared = acc.clone();
        add_matmul_tn(&mut acc, &y, &x);
        assert_ne!(ptr(&acc), ptr(&shared), "a shared accumulator must not be written");
    }

    /// SwiGLU on Flex (the kernel) against the portable path (what autodiff backends run):
    /// the activation matches Burn's `silu(g) * u` and both backward formulas agree.
    #[test]
    fn swiglu_kernel_matches_portable_path() {
        type Ad = burn::backend::Autodiff<Flex>;
        let dev = Default::default();
        let normal = burn::tensor::Distribution::Normal(0.0, 3.0);
        let g = Tensor::<Flex, 3>::random([2, 5, 301], normal, &dev);
        let u = Tensor::<Flex, 3>::random([2, 5, 301], normal, &dev);
        let d = Tensor::<Flex, 3>::random([2, 5, 301], normal, &dev);
        // f32 rounding of σ, and of d_gate's factor 1 + g·(1 − σ), which changes sign near g ≈ −1.28
        let tol = burn::tensor::Tolerance::<f32>::rel_abs(2e-5, 1e-5);
        let want = burn::tensor::activation::silu(g.clone()) * u.clone();
        swiglu(g.clone(), u.clone() * 1.0).into_data().assert_approx_eq::<f32>(&want.into_data(), tol);
        let ad = |t: &Tensor<Flex, 3>| Tensor::<Ad, 3>::from_data(t.to_data(), &dev);
        let (dg, du) = swiglu_backward(g.clone(), u.clone(), d.clone());
        let (rg, ru) = swiglu_backward(ad(&g), ad(&u), ad(&d));
        dg.into_data().assert_approx_eq::<f32>(&rg.into_data(), tol);
        du.into_data().assert_approx_eq::<f32>(&ru.into_data(), tol);
        // The portable backward is the autodiff gradient of silu(g)·u.
        let (gl, ul) = (ad(&g).require_grad(), ad(&u).require_grad());
        let grads = (burn::tensor::activation::silu(gl.clone()) * ul.clone() * ad(&d)).sum().backward();
        let (ag, au) = (gl.grad(&grads).unwrap(), ul.grad(&grads).unwrap());
        let (pg, pu) = swiglu_backward(ad(&g), ad(&u), ad(&d));
        pg.into_data().assert_approx_eq::<f32>(&ag.into_data(), tol);
        pu.into_data().assert_approx_eq::<f32>(&au.into_data(), tol);
    }

    /// `linear` agrees with `matmul` on a shape the GEMV takes.
    #[test]
    fn linear_matches_matmul() {
        let dev = Default::default();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let x = Tensor::<Flex, 2>::random([4, 6], normal, &dev);
        let w = Tensor::<Flex, 2>::random([7, 6], normal, &dev);
        let want = x.clone().matmul(w.clone().transpose());
        let got = linear(x, w);
        let d = (got - want).abs().max().into_scalar();
        assert!(d < 1e-5, "{d}");
    }
}
