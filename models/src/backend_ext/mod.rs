//! Backend-specific fast paths behind one seam.
//!
//! Generic layers call the functions here ([`linear`], [`assign_in_place`],
//! [`adamw_in_place`]) and never name a backend; each function tries the fast path of the
//! backend it runs on and otherwise does the portable Burn op, with the same result (up to
//! float summation order). Today the only fast paths are for `Flex`, the CPU backend
//! ([`flex`]): a weight-streaming GEMV for decode-sized products ([`gemv`]), in-place KV-cache
//! writes and a one-pass in-place AdamW step. A GPU kernel would be one more module here, with
//! no change to the layers.

mod adamw;
mod flex;
pub mod gemv;

pub use adamw::{adamw_tensor_ops, AdamWScalars};

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;

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
///
/// Why: the tensor-op step allocates a result per op, and on the largest parameter (a tied
/// 151,936 × 896 embedding is 545 MB in f32) two such temporaries are alive at once next to
/// every gradient, which set the peak of a whole CPU training run. The fast path allocates
/// nothing of the parameter's size.
pub fn adamw_in_place<B: Backend>(
    param: &mut Tensor<B, 1>,
    grad: &Tensor<B, 1>,
    exp_avg: &mut Tensor<B, 1>,
    exp_avg_sq: &mut Tensor<B, 1>,
    s: &AdamWScalars,
) -> bool {
    flex::try_adamw(param, grad, exp_avg, exp_avg_sq, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn ptr(t: &Tensor<Flex, 4>) -> *const u8 {
        flex::to_flex::<Flex, 4>(t.clone())
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
