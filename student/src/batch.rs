//! From training rows to micro-batches: deterministic per-epoch order, padding, attention
//! layout and shifted targets. The order is a pure function of (seed, epoch), so the data
//! position of a run is just "rows consumed so far" and resuming replays nothing and skips
//! nothing.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::loss::{ShiftedTargets, IGNORE_INDEX};
use models::lm::{AttentionLayout, ForwardInput};

/// One row of training data: a single example or several packed examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRow {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// HF-style labels aligned with `input_ids` (-100 = no loss).
    pub labels: Vec<i64>,
    /// RoPE positions (restarting at 0 for each packed document); `None` = `0..len`.
    pub position_ids: Option<Vec<i64>>,
    /// Document index of each token for packed rows; `None` = one document.
    pub segment_ids: Option<Vec<i64>>,
}

impl TrainRow {
    /// A single (unpacked) example.
    pub fn single(input_ids: Vec<u32>, labels: Vec<i64>) -> Self {
        Self {
            input_ids,
            labels,
            position_ids: None,
            segment_ids: None,
        }
    }

    /// Loss tokens after the shift.
    pub fn num_loss_tokens(&self) -> usize {
        ShiftedTargets::from_labels(
            std::slice::from_ref(&self.labels),
            self.segment_ids.as_ref().map(std::slice::from_ref),
        )
        .num_loss_tokens()
    }
}

/// A micro-batch ready for the model, plus host-side targets.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// `[B, T]` ids, right-padded with `pad_id`.
    pub input_ids: Vec<Vec<u32>>,
    /// `[B, T]` positions.
    pub position_ids: Vec<Vec<i64>>,
    /// `[B, T]` segment ids (padding gets -1) when any row is packed or rows are padded.
    pub segment_ids: Option<Vec<Vec<i64>>>,
    /// Shifted targets.
    pub targets: ShiftedTargets,
    /// Non-padding tokens.
    pub real_tokens: usize,
}

impl MicroBatch {
    /// Builds a batch from rows (right-padding to the longest).
    pub fn new(rows: &[&TrainRow], pad_id: u32) -> Self {
        let t = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        let packed = rows.iter().any(|r| r.segment_ids.is_some());
        let mut input_ids = Vec::with_capacity(rows.len());
        let mut position_ids = Vec::with_capacity(rows.len());
        let mut segment_ids = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        let mut real_tokens = 0;
        for r in rows {
            let n = r.input_ids.len();
            real_tokens += n;
            let mut ids = r.input_ids.clone();
            ids.resize(t, pad_id);
            let mut lab = r.labels.clone();
            lab.resize(t, IGNORE_INDEX);
            let mut pos = r.position_ids.clone().unwrap_or_else(|| (0..n as i64).collect());
            pos.resize(t, 0);
            let mut seg = r.segment_ids.clone().unwrap_or_else(|| vec![0; n]);
            seg.resize(t, -1);
            input_ids.push(ids);
            labels.push(lab);
            position_ids.push(pos);
            segment_ids.push(seg);
        }
        let segment_ids = if packed { Some(segment_ids) } else { None };
        let targets = ShiftedTargets::from_labels(&labels, segment_ids.as_deref());
        Self {
            input_ids,
            position_ids,
            segment_ids,
            targets,
            real_tokens,
        }
    }

    /// The model input: plain causal for unpacked rows (right padding never influences real
    /// tokens under a causal mask), per-document masks and positions for packed rows.
    pub fn to_input<B: Backend>(&self, device: &B::Device) -> ForwardInput<B> {
        let b = self.input_ids.len();
        let t = self.targets.seq;
        let ids: Vec<i64> = self.input_ids.iter().flatten().map(|&x| x as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), device);
        let input = ForwardInput::causal(ids);
        match &self.segment_ids {
            None => input,
            Some(seg) => {
                let pos: Vec<i64> = self.position_ids.iter().flatten().copied().collect();
                let seg: Vec<i64> = seg.iter().flatten().copied().collect();
                input
                    .with_positions(Tensor::from_data(TensorData::new(pos, [b, t]), device))
                    .with_layout(AttentionLayout::Packed {
                        segment_ids: Tensor::from_data(TensorData::new(seg, [b, t]), device),
                    })
            }
        }
    }
}

/// The infinite, epoch-by-epoch row stream of a run.
#[derive(Debug, Clone)]
pub struct RowStream {
    num_rows: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
    order: Vec<usize>,
    cursor: usize,
}

impl RowStream {
    /// A stream over `num_rows` rows positioned after `consumed` rows.
    pub fn new(num_rows: usize, shuffle: bool, seed: u64, consumed: u64) -> Self {
        let n = num_rows.max(1) as u64;
        let epoch = consumed / n;
        let mut s = Self {
            num_rows,
            shuffle,
            seed,
            epoch,
            order: Vec::new(),
            cursor: (consumed % n) as usize,
        };
        s.order = s.epoch_order(epoch);
        s
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.num_rows).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The next row index and the epoch it belongs to.
    pub fn next_index(&mut self) -> (usize, u64) {
        if self.cursor >= self.num_rows {
            self.epoch += 1;
            self.order = self.epoch_order(self.epoch);
            self.cursor = 0;
        }
        let i = self.order[self.cursor];
        self.cursor += 1;
        (i, self.epoch)
    }

    /// Rows consumed since the start of the run.
    pub fn consumed(&self) -> u64 {
        self.epoch * self.num_rows as u64 + self.cursor as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_resumable_and_epoch_shuffled() {
        let mut a = RowStream::new(5, true, 7, 0);
        let full: Vec<(usize, u64)> = (0..12).map(|_| a.next_index()).collect();
        let mut b = RowStream::new(5, true, 7, 7);
        let tail: Vec<(usize, u64)> = (0..5).map(|_| b.next_index()).collect();
        assert_eq!(&full[7..], &tail[..]);
        let mut e0: Vec<usize> = full[..5].iter().map(|x| x.0).collect();
        e0.sort();
        assert_eq!(e0, vec![0, 1, 2, 3, 4]);
        assert_ne!(
            full[..5].iter().map(|x| x.0).collect::<Vec<_>>(),
            full[5..10].iter().map(|x| x.0).collect::<Vec<_>>()
        );
        let mut c = RowStream::new(3, false, 7, 0);
        assert_eq!((0..4).map(|_| c.next_index().0).collect::<Vec<_>>(), vec![0, 1, 2, 0]);
        assert_eq!(c.consumed(), 4);
    }

    #[test]
    fn batch_padding_and_targets() {
        let r1 = TrainRow::single(vec![5, 6, 7], vec![-100, 6, 7]);
        let r2 = TrainRow {
            input_ids: vec![1, 2, 3, 4],
            labels: vec![-100, 2, -100, 4],
            position_ids: Some(vec![0, 1, 0, 1]),
            segment_ids: Some(vec![0, 0, 1, 1]),
        };
        let mb = MicroBatch::new(&[&r1, &r2], 0);
        assert_eq!(mb.input_ids[0], vec![5, 6, 7, 0]);
        assert_eq!(mb.segment_ids.as_ref().unwrap()[0], vec![0, 0, 0, -1]);
        assert_eq!(mb.targets.targets, vec![6, 7, -100, -100, 2, -100, 4, -100]);
        assert_eq!(mb.real_tokens, 7);
        assert_eq!(r2.num_loss_tokens(), 2);
    }
}
