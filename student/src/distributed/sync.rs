//! Gradient synchronisation of one optimizer step: every peer's accumulated gradients (each
//! micro-batch loss already divided by the step's global loss-token count) are summed over
//! the peers, so every peer holds exactly the gradient that single-device accumulation over
//! the same micro-batches gives, and takes the same optimizer step.

use std::ops::Range;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use super::peers::Peer;
use crate::error::Result;

/// Most elements all-reduced in one call: gradients are flattened into buckets of this size
/// (a few collective calls per step instead of one per parameter, with bounded extra memory).
const BUCKET_ELEMENTS: usize = 1 << 25;

/// Fewest host values all-reduced in one call (zero-padded): the global (multi-node) ring
/// all-reduce fails on a tensor shorter than the node count (`RingReduceImpossible`).
const MIN_HOST_VALUES: usize = 64;

/// Sums the gradients in `grads` of `module`'s trainable parameters, and the host-side
/// values `host` (loss sums for the metrics), over all peers. A parameter this peer has no
/// gradient for contributes zeros (AdamW treats a missing gradient as zero, so this is
/// the same step). No-op for a solo peer.
pub fn sync_step<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    peer: &Peer,
    step: u64,
    module: &M,
    grads: &mut GradientsParams,
    host: &mut [f64],
    device: &AB::Device,
) -> Result<()> {
    if peer.is_solo() {
        return Ok(());
    }
    peer.injected_fault(step)?;
    let mut flat = Flatten::<AB> { grads, parts: Vec::new() };
    module.visit(&mut flat);
    let parts = flat.parts;
    // Padded: burn-collective's global ring all-reduce needs at least one element per node.
    let mut host_vals: Vec<f32> = host.iter().map(|&v| v as f32).collect();
    host_vals.resize(host.len().max(MIN_HOST_VALUES), 0.0);
    let n_host = host_vals.len();
    let host_t = Tensor::<AB::InnerBackend, 1>::from_data(TensorData::new(host_vals, [n_host]), device);

    let lens: Vec<usize> = parts.iter().map(|t| t.dims()[0]).collect();
    let mut parts = parts.into_iter();
    let mut reduced = Vec::with_capacity(lens.len());
    for range in buckets(&lens) {
        let bucket: Vec<_> = parts.by_ref().take(range.len()).collect();
        let summed = peer.all_reduce_sum(Tensor::cat(bucket, 0))?;
        let mut off = 0;
        for &n in &lens[range] {
            reduced.push(summed.clone().narrow(0, off, n));
            off += n;
        }
    }
    let host_sum = peer.all_reduce_sum(host_t)?;
    for (h, v) in host.iter_mut().zip(host_sum.into_data().iter::<f64>()) {
        *h = v;
    }
    let mut unflat = Unflatten::<AB> { grads, parts: reduced.into_iter() };
    module.visit(&mut unflat);
    Ok(())
}

/// Groups consecutive flat gradients (their lengths) into index ranges of at most
/// [`BUCKET_ELEMENTS`] elements (a larger single gradient gets a bucket of its own).
pub(super) fn buckets(lens: &[usize]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut size = 0;
    for (i, &n) in lens.iter().enumerate() {
        match out.last_mut() {
            Some(b) if size + n <= BUCKET_ELEMENTS => {
                b.end = i + 1;
                size += n;
            }
            _ => {
                out.push(i..i + 1);
                size = n;
            }
        }
    }
    out
}

/// Takes every trainable parameter's gradient out of `grads` as a flat tensor (zeros when
/// absent), in the module's visiting order (the same on every peer).
struct Flatten<'a, AB: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<AB::InnerBackend, 1>>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Flatten<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let n: usize = t.dims().iter().product();
        let g = match self.grads.remove::<AB::InnerBackend, D>(param.id) {
            Some(g) => g.reshape([n]),
            None => Tensor::zeros([n], &t.device()),
        };
        self.parts.push(g);
    }
}

/// Puts the summed flat gradients back, in the same order [`Flatten`] took them.
struct Unflatten<'a, AB: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: std::vec::IntoIter<Tensor<AB::InnerBackend, 1>>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Unflatten<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let flat = self.parts.next().expect("one reduced gradient per trainable parameter");
        self.grads.register::<AB::InnerBackend, D>(param.id, flat.reshape(t.dims()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_the_size_limit_and_keep_order() {
        let big = BUCKET_ELEMENTS;
        assert_eq!(buckets(&[3, big - 3, 1, big + 5, 2]), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(buckets(&[1, 1, 1]), vec![0..3]);
        assert!(buckets(&[]).is_empty());
    }
}
