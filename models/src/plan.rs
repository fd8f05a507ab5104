//! Where the tokens of a forward sit, computed once per forward and shared by every layer and
//! every architecture:
//! * full-sequence inputs: RoPE positions ([`positions`]) and the layout as an explicit mask
//!   ([`dense_mask`]);
//! * cached inputs: the validated [`CachePlan`] (slot, offset and valid length of each row),
//!   its positions and its mask over the cached keys.
//!
//! Masks use Burn's convention: `true` = masked (the key is not attended to).

use burn::prelude::*;

use crate::error::ModelError;
use crate::lm::{AttentionLayout, CachedInput, ForwardInput, KvCache};

/// RoPE positions `[B, T]` of a full-sequence input: explicit ones, else `0..T` per row (per
/// segment for packed rows), as transformers does when `position_ids` is not passed.
pub fn positions<B: Backend>(input: &ForwardInput<B>) -> Tensor<B, 2, Int> {
    let [b, t] = input.input_ids.dims();
    let device = input.input_ids.device();
    match (&input.position_ids, &input.layout) {
        (Some(p), _) => p.clone(),
        (None, AttentionLayout::Packed { segment_ids }) => packed_positions(segment_ids),
        (None, _) => Tensor::<B, 1, Int>::arange(0..t as i64, &device).reshape([1, t]).expand([b, t]),
    }
}

/// [`positions`] on the host, one `Vec` per row (negative ids clamp to 0), for architectures
/// that build their rotary tables on the host.
pub fn position_rows<B: Backend>(input: &ForwardInput<B>) -> Vec<Vec<usize>> {
    let [b, t] = input.input_ids.dims();
    if input.position_ids.is_none() && !matches!(input.layout, AttentionLayout::Packed { .. }) {
        return vec![(0..t).collect(); b];
    }
    let flat: Vec<i64> = positions(input).into_data().iter::<i64>().collect();
    flat.chunks(t.max(1)).map(|r| r.iter().map(|&x| x.max(0) as usize).collect()).collect()
}

/// Positions restarting at 0 at every segment change along each row.
fn packed_positions<B: Backend>(segment_ids: &Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    let [b, t] = segment_ids.dims();
    let seg: Vec<i64> = segment_ids.clone().into_data().iter::<i64>().collect();
    let mut pos = vec![0i64; b * t];
    for r in 0..b {
        for i in 1..t {
            let k = r * t + i;
            pos[k] = if seg[k] == seg[k - 1] { pos[k - 1] + 1 } else { 0 };
        }
    }
    Tensor::from_data(TensorData::new(pos, [b, t]), &segment_ids.device())
}

/// The layout as an explicit `[B, 1, T, T]` mask, built on the device; `None` for plain causal
/// rows (kernels take their `is_causal` fast path instead).
///
/// Padded rows: query `i` sees real keys `j <= i`, and padding queries see themselves so
/// they stay finite. Packed rows: query `i` sees keys `j <= i` of its own segment.
pub fn dense_mask<B: Backend>(input: &ForwardInput<B>) -> Option<Tensor<B, 4, Bool>> {
    let [b, t] = input.input_ids.dims();
    let device = input.input_ids.device();
    // tril_mask(offset) is true where j > i + offset: "above" is j > i, "upper" is j >= i.
    let causal = || Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device).reshape([1, t, t]).expand([b, t, t]);
    match &input.layout {
        AttentionLayout::Causal => None,
        AttentionLayout::CausalPadded { key_mask } => {
            let pad = key_mask.clone().bool_not().reshape([b, 1, t]).expand([b, t, t]);
            let above = Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device);
            let upper = Tensor::<B, 2, Bool>::tril_mask([t, t], -1, &device);
            let diag = upper.bool_and(above.bool_not()).reshape([1, t, t]).expand([b, t, t]);
            Some(causal().bool_or(pad.bool_and(diag.bool_not())).reshape([b, 1, t, t]))
        }
        AttentionLayout::Packed { segment_ids } => {
            let qi = segment_ids.clone().reshape([b, t, 1]).expand([b, t, t]);
            let kj = segment_ids.clone().reshape([b, 1, t]).expand([b, t, t]);
            Some(causal().bool_or(qi.not_equal(kj)).reshape([b, 1, t, t]))
        }
    }
}

/// Where each row of a cached forward reads and writes: validated once per forward against
/// the cache, shared by all layers.
#[derive(Clone, Debug)]
pub struct CachePlan {
    /// Cache slot of each row.
    pub slots: Vec<usize>,
    /// Tokens already cached per row (= position of the row's first new token).
    pub offsets: Vec<usize>,
    /// Valid new tokens per row (≤ t); padding after them is neither stored nor counted.
    pub lengths: Vec<usize>,
    /// New tokens per row including padding.
    pub t: usize,
    /// Keys read per row: `max(offset + t)` clamped to capacity.
    pub key_len: usize,
    /// Rows are slots `0..n` in order (reads can slice instead of gather).
    pub contiguous: bool,
}

impl CachePlan {
    /// Validates `input` against `cache` (rows = slots, slots distinct and in range, lengths
    /// ≤ t, nothing past the capacity) and computes where each row reads and writes.
    pub fn new<B: Backend, C: KvCache>(input: &CachedInput<B>, cache: &C) -> Result<Self, ModelError> {
        let [n, t] = input.input_ids.dims();
        if n != input.slots.len() || n == 0 || t == 0 {
            return Err(ModelError::InvalidInput(format!(
                "cached forward got {n} rows of {t} tokens for {} slots",
                input.slots.len()
            )));
        }
        let mut seen = vec![false; cache.num_slots()];
        for &s in &input.slots {
            if s >= cache.num_slots() || std::mem::replace(&mut seen[s], true) {
                return Err(ModelError::InvalidInput(format!(
                    "slot {s} is out of range or repeated (cache has {} slots)",
                    cache.num_slots()
                )));
            }
        }
        let lengths = match &input.lengths {
            Some(l) if l.len() != n || l.iter().any(|&x| x > t) => {
                return Err(ModelError::InvalidInput(format!(
                    "cached forward lengths {l:?} must be one per row and <= {t}"
                )))
            }
            Some(l) => l.clone(),
            None => vec![t; n],
        };
        let offsets: Vec<usize> = input.slots.iter().map(|&s| cache.len(s)).collect();
        for r in 0..n {
            if offsets[r] + lengths[r] > cache.capacity() {
                return Err(ModelError::InvalidInput(format!(
                    "slot {} would hold {} tokens, cache capacity is {}",
                    input.slots[r],
                    offsets[r] + lengths[r],
                    cache.capacity()
                )));
            }
        }
        let key_len = offsets.iter().map(|&o| o + t).max().unwrap_or(t).min(cache.capacity());
        let contiguous = input.slots.iter().enumerate().all(|(i, &s)| i == s);
        Ok(CachePlan { slots: input.slots.clone(), offsets, lengths, t, key_len, contiguous })
    }

    /// Positions of the new tokens, `offset + i`, one row per input row.
    pub fn position_rows(&self) -> Vec<Vec<usize>> {
        self.offsets.iter().map(|&o| (o..o + self.t).collect()).collect()
    }

    /// [`Self::position_rows`] as a `[n, t]` tensor.
    pub fn positions<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        let pos: Vec<i64> = self.position_rows().into_iter().flatten().map(|p| p as i64).collect();
        Tensor::from_data(TensorData::new(pos, [self.slots.len(), self.t]), device)
    }

    /// Every row starts at the same offset and reads exactly up to its last new token, so
    /// plain bottom-right-aligned causal attention is the right pattern (no mask needed).
    pub fn aligned(&self) -> bool {
        self.offsets.iter().all(|&o| o == self.offsets[0]) && self.offsets[0] + self.t == self.key_len
    }

    /// `[n, 1, t, key_len]`: query `i` of row `r` (position `offset + i`) sees keys
    /// `0..=offset + i`.
    pub fn key_mask<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4, Bool> {
        let (n, t, lk) = (self.slots.len(), self.t, self.key_len);
        let mut m = Vec::with_capacity(n * t * lk);
        for &o in &self.offsets {
            for i in 0..t {
                m.extend((0..lk).map(|j| j > o + i));
            }
        }
        Tensor::from_data(TensorData::new(m, [n, 1, t, lk]), device)
    }

    /// [`Self::key_mask`], or `None` when the rows are [`Self::aligned`].
    pub fn mask<B: Backend>(&self, device: &B::Device) -> Option<Tensor<B, 4, Bool>> {
        (!self.aligned()).then(|| self.key_mask(device))
    }

    /// Advances each row's cached length by its valid tokens (after every layer wrote).
    pub fn commit<C: KvCache>(&self, cache: &mut C) {
        let lens = &mut cache.slot_lengths_mut().lens;
        for (r, &s) in self.slots.iter().enumerate() {
            lens[s] = self.offsets[r] + self.lengths[r];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::SlotLengths;
    use burn::backend::Flex;

    struct Lens(SlotLengths);
    impl KvCache for Lens {
        fn slot_lengths(&self) -> &SlotLengths {
            &self.0
        }
        fn slot_lengths_mut(&mut self) -> &mut SlotLengths {
            &mut self.0
        }
        fn bytes(&self) -> usize {
            0
        }
    }

    fn lens(lens: Vec<usize>, capacity: usize) -> Lens {
        Lens(SlotLengths { lens, capacity })
    }

    fn input(n: usize, t: usize, slots: Vec<usize>, lengths: Option<Vec<usize>>) -> CachedInput<Flex> {
        CachedInput { input_ids: Tensor::zeros([n, t], &Default::default()), slots, lengths }
    }

    #[test]
    fn plan_rejects_bad_inputs_with_the_reason() {
        let cache = lens(vec![0, 3], 4);
        let err = |i| CachePlan::new(&i, &cache).unwrap_err().to_string();
        assert!(err(input(2, 1, vec![1, 1], None)).contains("repeated"));
        assert!(err(input(1, 1, vec![2], None)).contains("out of range"));
        assert!(err(input(1, 2, vec![0], Some(vec![3]))).contains("lengths"));
        assert!(err(input(1, 2, vec![1], None)).contains("capacity is 4"));
        assert!(err(input(2, 1, vec![0], None)).contains("2 rows"));
    }

    #[test]
    fn plan_positions_mask_and_commit() {
        let dev = Default::default();
        let mut cache = lens(vec![2, 0], 8);
        let p = CachePlan::new(&input(2, 2, vec![1, 0], Some(vec![2, 1])), &cache).unwrap();
        assert_eq!((p.offsets.clone(), p.key_len, p.contiguous, p.aligned()), (vec![0, 2], 4, false, false));
        assert_eq!(p.position_rows(), vec![vec![0, 1], vec![2, 3]]);
        let m: Vec<bool> = p.key_mask::<Flex>(&dev).into_data().iter::<bool>().collect();
        let want = [[false, true, true, true], [false, false, true, true], [false, false, false, true], [false, false, false, false]];
        assert_eq!(m, want.concat());
        p.commit(&mut cache);
        assert_eq!(cache.0.lens, vec![3, 2]);
        let q = CachePlan::new(&input(2, 1, vec![0, 1], None), &cache).unwrap();
        assert!(q.contiguous && q.mask::<Flex>(&dev).is_some());
        let r = CachePlan::new(&input(1, 3, vec![1], None), &cache).unwrap();
        assert!(r.aligned() && r.mask::<Flex>(&dev).is_none());
    }

    #[test]
    fn full_sequence_positions_and_masks() {
        let dev = Default::default();
        let ids = Tensor::<Flex, 2, Int>::zeros([1, 4], &dev);
        let seg = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![0i64, 0, 1, 1], [1, 4]), &dev);
        let packed = ForwardInput::causal(ids.clone()).with_layout(AttentionLayout::Packed { segment_ids: seg });
        assert_eq!(position_rows(&packed), vec![vec![0, 1, 0, 1]]);
        let m: Vec<bool> = dense_mask(&packed).unwrap().into_data().iter::<bool>().collect();
        let allowed: Vec<bool> = m.iter().map(|x| !x).collect();
        let want = [[true, false, false, false], [true, true, false, false], [false, false, true, false], [false, false, true, true]];
        assert_eq!(allowed, want.concat());
        let key_mask = Tensor::<Flex, 2, Bool>::from_data(TensorData::new(vec![false, true, true, true], [1, 4]), &dev);
        let padded = ForwardInput::causal(ids.clone()).with_layout(AttentionLayout::CausalPadded { key_mask });
        let m: Vec<bool> = dense_mask(&padded).unwrap().into_data().iter::<bool>().collect();
        let allowed: Vec<bool> = m.iter().map(|x| !x).collect();
        let want = [[true, false, false, false], [false, true, false, false], [false, true, true, false], [false, true, true, true]];
        assert_eq!(allowed, want.concat());
        assert!(dense_mask(&ForwardInput::causal(ids.clone())).is_none());
        assert_eq!(position_rows(&ForwardInput::causal(ids)), vec![vec![0, 1, 2, 3]]);
    }
}
