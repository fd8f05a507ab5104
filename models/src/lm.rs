//! The interface every causal language model architecture implements.
//!
//! Consumers (trainer, sampler, server, evaluator) code against [`CausalLm`] and never against a
//! concrete architecture, so Qwen2/Llama and DeepSeek-V3 are interchangeable everywhere.
//!
//! Two forward paths exist on purpose:
//! * the full-sequence path ([`CausalLm::forward_hidden`]) used for training and scoring: no
//!   cache, arbitrary attention layout (causal, padded, packed), differentiable;
//! * the cached path ([`CausalLm::forward_cached`]) used for generation: appends keys/values
//!   to a preallocated per-slot cache so the engine can decode many sequences of different
//!   lengths in one batched forward pass.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layers::HfLinear;

/// Which key positions each query may attend to in a full-sequence forward.
#[derive(Clone, Debug)]
pub enum AttentionLayout<B: Backend> {
    /// Plain causal attention over each row: query `i` sees keys `j <= i`.
    Causal,
    /// Causal attention restricted to real tokens. `key_mask [B, T]`: `true` = real token,
    /// `false` = padding (left or right). Padding queries still attend to themselves so they
    /// stay finite; their outputs are meaningless and must be ignored by the caller.
    CausalPadded {
        /// `true` where the token is real.
        key_mask: Tensor<B, 2, Bool>,
    },
    /// Several documents packed into one row. `segment_ids [B, T]`: query `i` attends to key
    /// `j` only if `j <= i` and both carry the same segment id. Padding can be given its own
    /// segment id. When no explicit `position_ids` are given, positions restart at 0 at the
    /// start of every segment (what the trainer wants for packed SFT).
    Packed {
        /// Document id of every token.
        segment_ids: Tensor<B, 2, Int>,
    },
}

/// Input of a full-sequence forward.
#[derive(Clone, Debug)]
pub struct ForwardInput<B: Backend> {
    /// Token ids `[B, T]`.
    pub input_ids: Tensor<B, 2, Int>,
    /// Explicit RoPE positions `[B, T]`. `None`: `0..T` per row (per segment for
    /// [`AttentionLayout::Packed`]), as transformers does when `position_ids` is not passed.
    pub position_ids: Option<Tensor<B, 2, Int>>,
    /// Attention pattern.
    pub layout: AttentionLayout<B>,
}

impl<B: Backend> ForwardInput<B> {
    /// Plain causal input with default positions: the common case.
    pub fn causal(input_ids: Tensor<B, 2, Int>) -> Self {
        ForwardInput { input_ids, position_ids: None, layout: AttentionLayout::Causal }
    }

    /// Builds a causal `[B, T]` batch from equal-length id rows.
    pub fn from_rows(rows: &[Vec<u32>], device: &B::Device) -> Result<Self, ModelError> {
        let t = rows.first().map(|r| r.len()).unwrap_or(0);
        if rows.is_empty() || t == 0 || rows.iter().any(|r| r.len() != t) {
            return Err(ModelError::InvalidInput(
                "a batch needs at least one non-empty row and all rows of equal length".into(),
            ));
        }
        let flat: Vec<i64> = rows.iter().flatten().map(|&x| x as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [rows.len(), t]), device);
        Ok(Self::causal(ids))
    }

    /// Builds a `[B, T]` batch from rows of any lengths: right-padded with `pad_id` to the
    /// longest and masked ([`AttentionLayout::CausalPadded`]), so every row's real positions
    /// see exactly what its unpadded forward sees (right padding keeps positions `0..len`).
    /// Equal lengths give the plain causal layout. Returns the input and each row's length.
    pub fn right_padded(rows: &[Vec<u32>], pad_id: u32, device: &B::Device) -> Result<(Self, Vec<usize>), ModelError> {
        if rows.is_empty() || rows.iter().any(Vec::is_empty) {
            return Err(ModelError::InvalidInput("a batch needs at least one row and no empty rows".into()));
        }
        let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
        let t = lengths.iter().copied().max().unwrap_or(0);
        let (mut flat, mut real) = (Vec::with_capacity(rows.len() * t), Vec::with_capacity(rows.len() * t));
        for r in rows {
            for j in 0..t {
                flat.push(i64::from(r.get(j).copied().unwrap_or(pad_id)));
                real.push(j < r.len());
            }
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [rows.len(), t]), device);
        let input = Self::causal(ids);
        if lengths.iter().all(|&l| l == t) {
            return Ok((input, lengths));
        }
        let key_mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(real, [rows.len(), t]), device);
        Ok((input.with_layout(AttentionLayout::CausalPadded { key_mask }), lengths))
    }

    /// Sets explicit position ids.
    pub fn with_positions(mut self, position_ids: Tensor<B, 2, Int>) -> Self {
        self.position_ids = Some(position_ids);
        self
    }

    /// Sets the attention layout.
    pub fn with_layout(mut self, layout: AttentionLayout<B>) -> Self {
        self.layout = layout;
        self
    }
}

/// Residual-stream snapshots of one forward, for comparing against reference implementations
/// (the fixtures store the same set as `single.hidden.*`).
#[derive(Clone, Debug)]
pub struct HiddenStates<B: Backend> {
    /// Embedding output `[B, T, H]`.
    pub embed: Tensor<B, 3>,
    /// Residual stream after each decoder layer, `[B, T, H]` each.
    pub layers: Vec<Tensor<B, 3>>,
    /// After the final norm (the lm_head input) `[B, T, H]`.
    pub final_norm: Tensor<B, 3>,
}

/// Input of a cached forward: new tokens for some cache slots.
#[derive(Clone, Debug)]
pub struct CachedInput<B: Backend> {
    /// New token ids `[n, t]`; row `r` continues the sequence in cache slot `slots[r]` at
    /// positions `cache.len(slot) ..`.
    pub input_ids: Tensor<B, 2, Int>,
    /// The cache slot of each row; distinct.
    pub slots: Vec<usize>,
    /// Valid (non-padding) tokens per row when rows are right-padded to `t`; `None` = all `t`.
    /// Only valid tokens advance the slot's length; hidden states at padded positions are
    /// meaningless.
    pub lengths: Option<Vec<usize>>,
}

/// A model's output projection: logits are `hidden · weightᵀ`.
pub struct OutputProjection<'a, B: Backend> {
    /// `[vocab, hidden]`.
    pub weight: &'a Param<Tensor<B, 2>>,
    /// Its HF tensor name: `lm_head.weight`, or `model.embed_tokens.weight` when tied.
    pub name: &'static str,
}

impl<'a, B: Backend> OutputProjection<'a, B> {
    /// `lm_head` when the model has one, else the tied embedding table.
    pub fn head_or_tied(lm_head: Option<&'a HfLinear<B>>, embed_tokens: &'a Param<Tensor<B, 2>>) -> Self {
        match lm_head {
            Some(head) => OutputProjection { weight: &head.weight, name: "lm_head.weight" },
            None => OutputProjection { weight: embed_tokens, name: "model.embed_tokens.weight" },
        }
    }
}

/// Tokens cached per slot and the per-slot capacity: the bookkeeping every cache shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLengths {
    /// Tokens cached in each slot.
    pub lens: Vec<usize>,
    /// Maximum tokens per slot.
    pub capacity: usize,
}

impl SlotLengths {
    /// `slots` empty slots of `capacity` tokens each.
    pub fn new(slots: usize, capacity: usize) -> Self {
        SlotLengths { lens: vec![0; slots], capacity }
    }
}

/// Per-slot key/value cache of one model: what the generation engine needs to know about it.
///
/// A cache has a fixed number of slots (concurrent sequences) and a fixed capacity (tokens per
/// slot), allocated up front so decode never reallocates.
pub trait KvCache {
    /// Tokens per slot and capacity.
    fn slot_lengths(&self) -> &SlotLengths;
    /// Mutable [`Self::slot_lengths`] (a cached forward advances them).
    fn slot_lengths_mut(&mut self) -> &mut SlotLengths;
    /// Bytes held by the cache tensors (for memory reporting).
    fn bytes(&self) -> usize;
    /// Number of sequences the cache holds at once.
    fn num_slots(&self) -> usize {
        self.slot_lengths().lens.len()
    }
    /// Maximum tokens (prompt + generated) per slot.
    fn capacity(&self) -> usize {
        self.slot_lengths().capacity
    }
    /// Tokens currently cached in `slot`.
    fn len(&self, slot: usize) -> usize {
        self.slot_lengths().lens[slot]
    }
    /// Forgets the sequence in `slot` (O(1): the memory is reused).
    fn reset(&mut self, slot: usize) {
        self.slot_lengths_mut().lens[slot] = 0;
    }
}

/// A decoder-only causal LM. Implemented by the Qwen2/Llama decoder, DeepSeek-V3 and the
/// [`crate::Model`] enum that dispatches between them.
pub trait CausalLm<B: Backend> {
    /// The architecture's KV cache (plain K/V for GQA models, latent cache for MLA).
    type Cache: KvCache;

    /// The parsed config the model was built from.
    fn config(&self) -> &ModelConfig;

    /// Device the weights live on.
    fn device(&self) -> B::Device;

    /// Float dtype of weights and activations.
    fn dtype(&self) -> DType;

    /// Full-sequence forward up to and including the final norm: `[B, T, H]`. The trainer
    /// projects chunks of this itself (chunked cross-entropy) instead of materialising
    /// `[B, T, vocab]` logits.
    fn forward_hidden(&self, input: ForwardInput<B>) -> Tensor<B, 3>;

    /// Same as [`Self::forward_hidden`] but also returns every layer's residual stream.
    fn forward_hidden_states(&self, input: ForwardInput<B>) -> HiddenStates<B>;

    /// The `[vocab, hidden]` output projection: `lm_head.weight`, or the embedding table when
    /// embeddings are tied. Trainers that compute its gradient themselves (fused cross-entropy)
    /// take it from here rather than searching the parameters by name.
    fn output_projection(&self) -> OutputProjection<'_, B>;

    /// Projects final-norm hidden states `[B, T, H]` (or any chunk of them) to logits
    /// `[B, T, vocab]` in the compute dtype: `hidden · Wᵀ` with [`Self::output_projection`].
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, h] = hidden.dims();
        let w = self.output_projection().weight.val();
        let v = w.dims()[0];
        crate::backend_ext::linear(hidden.reshape([b * t, h]), w).reshape([b, t, v])
    }

    /// Full-sequence logits `[B, T, vocab]`.
    fn forward(&self, input: ForwardInput<B>) -> Tensor<B, 3> {
        self.logits(self.forward_hidden(input))
    }

    /// Allocates a cache for `slots` concurrent sequences of up to `capacity` tokens each.
    fn new_cache(&self, slots: usize, capacity: usize) -> Self::Cache;

    /// Runs new tokens through the model, reading and extending the cache. Returns final-norm
    /// hidden states `[n, t, H]`. Errors if a slot would exceed the capacity or slots repeat.
    fn forward_cached(
        &self,
        input: CachedInput<B>,
        cache: &mut Self::Cache,
    ) -> Result<Tensor<B, 3>, ModelError>;
}
