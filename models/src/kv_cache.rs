//! Preallocated per-slot key/value cache of the GQA decoder.
//!
//! One `[slots, kv_heads, capacity, head_dim]` tensor per layer for keys and one for values,
//! allocated once; new tokens are written in place (see [`assign_in_place`]) and sequences are
//! forgotten by resetting a length.

use std::any::Any;
use std::ops::Range;

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::{bf16, f16, DType, TensorPrimitive};

use crate::lm::KvCache;

/// Keys and values of one layer.
#[derive(Clone, Debug)]
pub struct LayerKv<B: Backend> {
    /// `[slots, kv_heads, capacity, head_dim]`.
    pub k: Tensor<B, 4>,
    /// `[slots, kv_heads, capacity, head_dim]`.
    pub v: Tensor<B, 4>,
}

/// Cache of a Qwen2/Llama decoder.
#[derive(Clone, Debug)]
pub struct DecoderCache<B: Backend> {
    /// Per layer.
    pub layers: Vec<LayerKv<B>>,
    /// Tokens cached per slot.
    pub lens: Vec<usize>,
    capacity: usize,
}

impl<B: Backend> DecoderCache<B> {
    /// Zero-filled cache for `layers` layers.
    pub fn new(
        layers: usize,
        slots: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
    ) -> Self {
        let shape = [slots, kv_heads, capacity, head_dim];
        let layers = (0..layers)
            .map(|_| LayerKv { k: Tensor::zeros(shape, (device, dtype)), v: Tensor::zeros(shape, (device, dtype)) })
            .collect();
        DecoderCache { layers, lens: vec![0; slots], capacity }
    }
}

impl<B: Backend> KvCache for DecoderCache<B> {
    fn num_slots(&self) -> usize {
        self.lens.len()
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }
    fn reset(&mut self, slot: usize) {
        self.lens[slot] = 0;
    }
    fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| 2 * l.k.shape().num_elements() * l.k.dtype().size())
            .sum()
    }
}

/// Where each row of a cached forward reads and writes: computed once per forward from the
/// cache lengths, shared by all layers.
#[derive(Clone, Debug)]
pub struct CachePlan {
    /// Cache slot of each row.
    pub slots: Vec<usize>,
    /// Tokens already cached per row (= position of the row's first new token).
    pub offsets: Vec<usize>,
    /// Valid new tokens per row (≤ t).
    pub lengths: Vec<usize>,
    /// New tokens per row including padding.
    pub t: usize,
    /// Keys read per row: `max(offset + t)` clamped to capacity.
    pub key_len: usize,
    /// Rows are slots `0..n` in order (reads can slice instead of gather).
    pub contiguous: bool,
}

/// `cache[ranges] = value`, writing into `cache`'s own buffer so a step costs what it writes,
/// not the cache's capacity.
///
/// Why not `slice_assign`: burn-flex 0.21's `slice_assign` (and scatter/select_assign) calls
/// `to_contiguous()` on its input, which for a contiguous tensor returns a second handle to the
/// same buffer while the first is still alive, so the copy-on-write `storage_mut` always sees a
/// shared buffer and copies the whole `[slots, heads, capacity, dim]` tensor (plus page faults
/// for the fresh allocation) on every write. On `Flex`, when `cache` is uniquely owned,
/// contiguous and of a float dtype, this copies `value` straight into its storage; anything
/// else (GPU, autodiff, a live view of the cache) falls back to `slice_assign`.
pub fn assign_in_place<B: Backend, const D: usize>(cache: &mut Tensor<B, D>, ranges: [Range<usize>; D], value: Tensor<B, D>) {
    let device = cache.device();
    let taken = std::mem::replace(cache, Tensor::empty([0; D], &device));
    let (restored, done) = match (to_flex::<B, D>(taken.clone()), to_flex::<B, D>(value.clone())) {
        (Some(mut dst), Some(src)) => {
            drop(taken);
            let done = write_flex(&mut dst, &ranges, &src.to_contiguous());
            (from_flex::<B, D>(dst), done)
        }
        _ => (taken, false),
    };
    *cache = restored;
    if !done {
        cache.inplace(|c| c.slice_assign(ranges, value));
    }
}

fn to_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<FlexTensor> {
    let TensorPrimitive::Float(p) = t.into_primitive() else { return None };
    let any: Box<dyn Any> = Box::new(p);
    any.downcast::<FlexTensor>().ok().map(|b| *b)
}

fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let any: Box<dyn Any> = Box::new(t);
    let p = *any.downcast::<B::FloatTensorPrimitive>().expect("primitive came from this backend");
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// Copies contiguous `src` into `dst[ranges]`; false (nothing written) when `dst` is shared,
/// strided or offset, the dtypes differ, or the shapes do not match.
fn write_flex(dst: &mut FlexTensor, ranges: &[Range<usize>], src: &FlexTensor) -> bool {
    let shape = dst.layout().shape().to_vec();
    let lens: Vec<usize> = ranges.iter().map(|r| r.end.saturating_sub(r.start)).collect();
    if !dst.is_unique()
        || !dst.is_contiguous()
        || dst.layout().start_offset() != 0
        || dst.dtype() != src.dtype()
        || shape.len() != ranges.len()
        || ranges.iter().zip(&shape).any(|(r, &n)| r.start > r.end || r.end > n)
        || src.layout().shape().to_vec() != lens
    {
        return false;
    }
    match dst.dtype() {
        DType::F32 => copy_block(dst.try_storage_mut::<f32>(), &shape, ranges, src.as_slice::<f32>()),
        DType::F16 => copy_block(dst.try_storage_mut::<f16>(), &shape, ranges, src.as_slice::<f16>()),
        DType::BF16 => copy_block(dst.try_storage_mut::<bf16>(), &shape, ranges, src.as_slice::<bf16>()),
        _ => false,
    }
}

/// Row-major block copy of `src` (shape = range lengths) into `dst` (shape `shape`) at `ranges`,
/// in runs as long as the trailing full dimensions allow.
fn copy_block<E: Copy>(dst: Option<&mut [E]>, shape: &[usize], ranges: &[Range<usize>], src: Option<&[E]>) -> bool {
    let (Some(dst), Some(src)) = (dst, src) else { return false };
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
        let off: usize = (0..k).map(|j| (ranges[j].start + idx[j]) * strides[j]).sum::<usize>() + ranges[k].start * strides[k];
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
    use burn::backend::Flex;

    fn ptr(t: &Tensor<Flex, 4>) -> *const u8 {
        to_flex::<Flex, 4>(t.clone()).unwrap().bytes().as_ptr()
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
            let v = Tensor::<Flex, 4>::from_data(TensorData::new(vals, [dims[0], dims[2], dims[1], dims[3]]), &dev).swap_dims(1, 2);
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
        assign_in_place(&mut cache, [0..1, 0..1, 0..1, 0..2], Tensor::ones([1, 1, 1, 2], &dev));
        assert_eq!(view.sum().into_scalar(), 0.0);
        assert_eq!(cache.sum().into_scalar(), 2.0);
    }
}
