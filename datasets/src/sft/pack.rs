//! Packing several examples into fixed-length rows without cross-document attention.
//!
//! Padding every example to `max_seq_len` wastes most of the compute on R1 traces (lengths range
//! from a few hundred to 16k+ tokens). Packing concatenates examples into rows of exactly
//! `max_seq_len` tokens; each row carries
//! * `position_ids` restarting at 0 at every document, so RoPE sees each document as if alone;
//! * `segment_ids` — the document's index within the row (0, 1, …) and [`PAD_SEGMENT`] on
//!   padding — so attention can be restricted to query/key pairs of the same segment
//!   (causal within the document), which makes the packed loss equal the unpacked one;
//! * `labels` with the first token of every document masked: under the shifted loss that label
//!   would be predicted from the previous document's last token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::build::{SftExample, IGNORE_INDEX};

/// Segment id of padding positions (never equal to a document's index).
pub const PAD_SEGMENT: i32 = -1;

/// One fixed-length training row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedRow {
    /// Token ids; padding positions hold the pad id.
    pub input_ids: Vec<u32>,
    /// HF-convention labels (see [`super::build`]); -100 on padding and document starts.
    pub labels: Vec<i64>,
    /// Position within the document, restarting at 0; 0 on padding.
    pub position_ids: Vec<u32>,
    /// Document index within the row; [`PAD_SEGMENT`] on padding.
    pub segment_ids: Vec<i32>,
}

impl PackedRow {
    /// Row length (padding included).
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the row has no positions at all.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Non-padding positions.
    pub fn num_tokens(&self) -> usize {
        self.segment_ids.iter().filter(|&&s| s != PAD_SEGMENT).count()
    }

    /// Documents in the row.
    pub fn num_documents(&self) -> usize {
        self.segment_ids.iter().filter(|&&s| s != PAD_SEGMENT).max().map_or(0, |&m| m as usize + 1)
    }

    /// Whether query position `q` may attend to key position `k`: same document and causal.
    /// Padding attends to nothing (its outputs are never trained).
    pub fn may_attend(&self, q: usize, k: usize) -> bool {
        k <= q && self.segment_ids[q] != PAD_SEGMENT && self.segment_ids[q] == self.segment_ids[k]
    }

    /// Next-token targets aligned with the logits: `targets[i]` is what position `i` must predict
    /// (`labels[i + 1]` within the same document, -100 at document ends, padding and the last
    /// position). For trainers that compute the loss without shifting.
    pub fn shifted_targets(&self) -> Vec<i64> {
        let n = self.len();
        (0..n)
            .map(|i| {
                if i + 1 < n && self.segment_ids[i] != PAD_SEGMENT && self.segment_ids[i] == self.segment_ids[i + 1] {
                    self.labels[i + 1]
                } else {
                    IGNORE_INDEX
                }
            })
            .collect()
    }
}

/// How documents are assigned to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackStrategy {
    /// In order: fill a row until the next document does not fit, then start a new one. Keeps the
    /// (shuffled) order, so training is reproducible from the seed. Default.
    #[default]
    Sequential,
    /// Best-fit decreasing (TRL's `bfd`): fewer rows, less padding; rows are returned in order of
    /// their earliest document so the shuffle still decides what comes first.
    BestFitDecreasing,
}

/// Packs examples into rows of exactly `max_seq_len` (pad id 0) in order. See [`pack_with`].
pub fn pack(examples: &[SftExample], max_seq_len: usize) -> Vec<PackedRow> {
    pack_with(examples, max_seq_len, PackStrategy::Sequential, 0)
}

/// Packs examples into rows of exactly `max_seq_len` tokens padded with `pad_id`. An example
/// longer than `max_seq_len` (not possible after [`super::build_examples`]) is truncated with a
/// warning rather than silently dropped.
pub fn pack_with(examples: &[SftExample], max_seq_len: usize, strategy: PackStrategy, pad_id: u32) -> Vec<PackedRow> {
    assert!(max_seq_len > 0, "max_seq_len must be at least 1");
    let len = |i: usize| examples[i].input_ids.len().min(max_seq_len);
    let mut bins: Vec<Vec<usize>> = Vec::new();
    match strategy {
        PackStrategy::Sequential => {
            let mut used = 0;
            for i in 0..examples.len() {
                if len(i) == 0 {
                    continue;
                }
                if bins.is_empty() || used + len(i) > max_seq_len {
                    bins.push(Vec::new());
                    used = 0;
                }
                bins.last_mut().expect("a bin").push(i);
                used += len(i);
            }
        }
        PackStrategy::BestFitDecreasing => {
            let mut order: Vec<usize> = (0..examples.len()).filter(|&i| len(i) > 0).collect();
            order.sort_by_key(|&i| (std::cmp::Reverse(len(i)), i));
            // Remaining capacity → bins with exactly that much room (smallest sufficient first).
            let mut by_room: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            let mut room: Vec<usize> = Vec::new();
            for i in order {
                let need = len(i);
                let found = by_room.range_mut(need..).next().map(|(&r, v)| (r, v.pop().expect("non-empty")));
                let bin = match found {
                    Some((r, b)) => {
                        if by_room.get(&r).is_some_and(Vec::is_empty) {
                            by_room.remove(&r);
                        }
                        b
                    }
                    None => {
                        bins.push(Vec::new());
                        room.push(max_seq_len);
                        bins.len() - 1
                    }
                };
                bins[bin].push(i);
                room[bin] -= need;
                if room[bin] > 0 {
                    by_room.entry(room[bin]).or_default().push(bin);
                }
            }
            for b in &mut bins {
                b.sort_unstable();
            }
            bins.sort_by_key(|b| b[0]);
        }
    }
    bins.iter().map(|docs| build_row(examples, docs, max_seq_len, pad_id)).collect()
}

fn build_row(examples: &[SftExample], docs: &[usize], max_seq_len: usize, pad_id: u32) -> PackedRow {
    let mut row = PackedRow {
        input_ids: Vec::with_capacity(max_seq_len),
        labels: Vec::with_capacity(max_seq_len),
        position_ids: Vec::with_capacity(max_seq_len),
        segment_ids: Vec::with_capacity(max_seq_len),
    };
    for (segment, &d) in docs.iter().enumerate() {
        let ex = &examples[d];
        let n = ex.input_ids.len().min(max_seq_len);
        if n == 0 {
            continue;
        }
        if n < ex.input_ids.len() {
            tracing::warn!(example = d, len = ex.input_ids.len(), max_seq_len, "truncating over-long example while packing");
        }
        row.input_ids.extend_from_slice(&ex.input_ids[..n]);
        row.labels.push(IGNORE_INDEX);
        row.labels.extend_from_slice(&ex.labels[1..n]);
        row.position_ids.extend(0..n as u32);
        row.segment_ids.extend(std::iter::repeat_n(segment as i32, n));
    }
    let pad = max_seq_len - row.input_ids.len();
    row.input_ids.extend(std::iter::repeat_n(pad_id, pad));
    row.labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad));
    row.position_ids.extend(std::iter::repeat_n(0, pad));
    row.segment_ids.extend(std::iter::repeat_n(PAD_SEGMENT, pad));
    row
}

/// One example alone in a row padded to `len` (≥ its length): the unpacked layout, with the same
/// fields so a trainer has a single code path.
pub fn pad_example(example: &SftExample, len: usize, pad_id: u32) -> PackedRow {
    build_row(std::slice::from_ref(example), &[0], len.max(example.input_ids.len()), pad_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: usize, first: u32) -> SftExample {
        let ids: Vec<u32> = (first..first + n as u32).collect();
        let labels = ids.iter().enumerate().map(|(i, &t)| if i < 2 { IGNORE_INDEX } else { i64::from(t) }).collect();
        SftExample { input_ids: ids, labels }
    }

    #[test]
    fn sequential_rows_fill_in_order() {
        let rows = pack(&[ex(5, 0), ex(4, 100), ex(3, 200)], 10);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].segment_ids, [0, 0, 0, 0, 0, 1, 1, 1, 1, -1]);
        assert_eq!(rows[0].position_ids, [0, 1, 2, 3, 4, 0, 1, 2, 3, 0]);
        assert_eq!(rows[1].num_tokens(), 3);
        assert!(rows[0].may_attend(7, 5) && !rows[0].may_attend(7, 4) && !rows[0].may_attend(5, 7));
    }

    #[test]
    fn bfd_uses_fewer_rows() {
        let exs = [ex(6, 0), ex(6, 10), ex(4, 20), ex(4, 30)];
        assert_eq!(pack(&exs, 10).len(), 3);
        let rows = pack_with(&exs, 10, PackStrategy::BestFitDecreasing, 7);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.num_tokens() == 10 && r.num_documents() == 2));
    }

    #[test]
    fn shifted_targets_stay_inside_documents() {
        let rows = pack(&[ex(3, 0), ex(3, 10)], 8);
        // labels: doc0 [-100,-100,2], doc1 [-100,-100,12], pads.
        assert_eq!(rows[0].shifted_targets(), [-100, 2, -100, -100, 12, -100, -100, -100]);
        let single = pad_example(&ex(3, 10), 5, 0);
        assert_eq!(single.shifted_targets(), [-100, 12, -100, -100, -100]);
    }
}
