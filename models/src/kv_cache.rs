//! Preallocated per-slot key/value cache of the GQA decoder.
//!
//! One `[slots, kv_heads, capacity, head_dim]` tensor per layer for keys and one for values,
//! allocated once; new tokens are written in place (see [`crate::backend_ext::assign_in_place`]) and sequences are
//! forgotten by resetting a length.

use burn::prelude::*;
use burn::tensor::DType;

use crate::lm::{KvCache, SlotLengths};

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
    pub lengths: SlotLengths,
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
        DecoderCache { layers, lengths: SlotLengths::new(slots, capacity) }
    }
}

impl<B: Backend> KvCache for DecoderCache<B> {
    fn slot_lengths(&self) -> &SlotLengths {
        &self.lengths
    }
    fn slot_lengths_mut(&mut self) -> &mut SlotLengths {
        &mut self.lengths
    }
    fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| 2 * l.k.shape().num_elements() * l.k.dtype().size())
            .sum()
    }
}
