//! KV cache of DeepSeek-V3 attention.
//!
//! The default [`KvLayout::Latent`] stores what MLA was designed to store: per token and layer
//! the normalised KV latent (`kv_lora_rank`) concatenated with the rotated shared rope key
//! (`qk_rope_head_dim`): 576 values per token and layer for DeepSeek-V3 instead of the
//! 128 heads × (192 + 128) = 40 960 of expanded K/V. Decode attends in latent space with
//! `kv_b_proj` absorbed into the query and the output ([`super::attention`]).
//!
//! [`KvLayout::Expanded`] keeps the up-projected per-head K and V, as a plain multi-head
//! attention cache would; it exists to measure what MLA saves (`distill bench mla`).

use burn::tensor::{backend::Backend, DType, Int, Tensor, TensorData};

use crate::backend_ext::assign_in_place;
use crate::lm::{KvCache, SlotLengths};

/// What the cache stores per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvLayout {
    /// Compressed latent + rope key (MLA's memory saving); decode uses weight absorption.
    #[default]
    Latent,
    /// Up-projected K `[heads, qk_head_dim]` and V `[heads, v_head_dim]` per token.
    Expanded,
}

/// Per-layer storage.
#[derive(Clone, Debug)]
pub(crate) enum LayerKv<B: Backend> {
    /// `[slots, capacity, kv_lora_rank + qk_rope_head_dim]`.
    Latent(Tensor<B, 3>),
    /// K `[slots, heads, capacity, qk]`, V `[slots, heads, capacity, v]`.
    Expanded(Tensor<B, 4>, Tensor<B, 4>),
}

/// Preallocated per-slot cache of every decoder layer.
#[derive(Clone, Debug)]
pub struct MlaCache<B: Backend> {
    pub(crate) layout: KvLayout,
    pub(crate) layers: Vec<LayerKv<B>>,
    pub(crate) lengths: SlotLengths,
    bytes_per_token: usize,
}

/// Shapes a cache needs from the model.
#[derive(Clone, Copy, Debug)]
pub struct MlaCacheShape {
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// `kv_lora_rank`.
    pub kv_lora_rank: usize,
    /// `qk_rope_head_dim`.
    pub rope_dim: usize,
    /// `qk_nope_head_dim + qk_rope_head_dim`.
    pub qk_head_dim: usize,
    /// `v_head_dim`.
    pub v_head_dim: usize,
}

impl MlaCacheShape {
    /// Cached values per token and layer in `layout`.
    pub fn values_per_token_layer(&self, layout: KvLayout) -> usize {
        match layout {
            KvLayout::Latent => self.kv_lora_rank + self.rope_dim,
            KvLayout::Expanded => self.heads * (self.qk_head_dim + self.v_head_dim),
        }
    }
}

impl<B: Backend> MlaCache<B> {
    /// Allocates `slots × capacity` tokens for every layer, zero-filled.
    pub fn new(
        shape: MlaCacheShape,
        layout: KvLayout,
        slots: usize,
        capacity: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Self {
        let layers = (0..shape.layers)
            .map(|_| match layout {
                KvLayout::Latent => LayerKv::Latent(Tensor::zeros(
                    [slots, capacity, shape.kv_lora_rank + shape.rope_dim],
                    (device, dtype),
                )),
                KvLayout::Expanded => LayerKv::Expanded(
                    Tensor::zeros([slots, shape.heads, capacity, shape.qk_head_dim], (device, dtype)),
                    Tensor::zeros([slots, shape.heads, capacity, shape.v_head_dim], (device, dtype)),
                ),
            })
            .collect();
        let bytes_per_token =
            shape.layers * shape.values_per_token_layer(layout) * dtype.size();
        Self { layout, layers, lengths: SlotLengths::new(slots, capacity), bytes_per_token }
    }

    /// Storage layout.
    pub fn layout(&self) -> KvLayout {
        self.layout
    }

    /// Bytes one cached token occupies over all layers.
    pub fn bytes_per_token(&self) -> usize {
        self.bytes_per_token
    }

    /// Writes `values` `[1, t, d]` of layer `layer` into `slot` at positions `start..start+t`.
    pub(crate) fn write_latent(&mut self, layer: usize, slot: usize, start: usize, values: Tensor<B, 3>) {
        let [_, t, d] = values.dims();
        if let LayerKv::Latent(buf) = &mut self.layers[layer] {
            assign_in_place(buf, [slot..slot + 1, start..start + t, 0..d], values);
        }
    }

    /// Writes K `[1, h, t, qk]` and V `[1, h, t, v]` into `slot` at `start..start+t`.
    pub(crate) fn write_expanded(
        &mut self,
        layer: usize,
        slot: usize,
        start: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) {
        let [_, h, t, dk] = k.dims();
        let dv = v.dims()[3];
        if let LayerKv::Expanded(kb, vb) = &mut self.layers[layer] {
            assign_in_place(kb, [slot..slot + 1, 0..h, start..start + t, 0..dk], k);
            assign_in_place(vb, [slot..slot + 1, 0..h, start..start + t, 0..dv], v);
        }
    }

    /// Rows `slots` of layer `layer`'s latent buffer, positions `0..len`: `[n, len, d]`.
    pub(crate) fn read_latent(&self, layer: usize, slots: &[usize], len: usize) -> Tensor<B, 3> {
        match &self.layers[layer] {
            LayerKv::Latent(buf) => {
                let part = buf.clone().narrow(1, 0, len);
                select_slots(part, slots)
            }
            LayerKv::Expanded(..) => unreachable!("read_latent on an expanded cache"),
        }
    }

    /// K and V of `slots`, positions `0..len`.
    pub(crate) fn read_expanded(
        &self,
        layer: usize,
        slots: &[usize],
        len: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        match &self.layers[layer] {
            LayerKv::Expanded(k, v) => (
                select_slots(k.clone().narrow(2, 0, len), slots),
                select_slots(v.clone().narrow(2, 0, len), slots),
            ),
            LayerKv::Latent(_) => unreachable!("read_expanded on a latent cache"),
        }
    }
}

/// Selects batch rows; a contiguous ascending run is a free `narrow` instead of a gather copy.
fn select_slots<B: Backend, const D: usize>(t: Tensor<B, D>, slots: &[usize]) -> Tensor<B, D> {
    let first = slots[0];
    let contiguous = slots.iter().enumerate().all(|(i, &s)| s == first + i);
    if contiguous {
        if first == 0 && slots.len() == t.dims()[0] {
            t
        } else {
            t.narrow(0, first, slots.len())
        }
    } else {
        let device = t.device();
        let idx: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
        t.select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [slots.len()]), &device))
    }
}

impl<B: Backend> KvCache for MlaCache<B> {
    fn slot_lengths(&self) -> &SlotLengths {
        &self.lengths
    }

    fn slot_lengths_mut(&mut self) -> &mut SlotLengths {
        &mut self.lengths
    }

    fn bytes(&self) -> usize {
        self.bytes_per_token * self.lengths.capacity * self.lengths.lens.len()
    }
}
