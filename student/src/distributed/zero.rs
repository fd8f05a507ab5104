//! ZeRO-1 (`train.shard_optimizer`): each data-parallel peer owns about 1/N of the trainable
//! parameters (whole tensors, balanced by size) and keeps AdamW moments for those only.
//!
//! A step: gradients are all-reduced as without sharding (every peer needs the global norm
//! for the clip), each peer applies AdamW to the parameters it owns, then the new values are
//! shared: every peer contributes its owned parameters and zeros elsewhere to a sum
//! all-reduce, which is an all-gather (`x + 0 = x` exactly, so every peer ends with the same
//! bits the owner computed). burn-collective 0.21 has no all-gather and its broadcast is not
//! implemented across nodes (`global/node/base.rs`, `Node::broadcast`), so the zero-padded sum
//! is the one form that works on one node and across nodes; it moves about twice the bytes
//! of a ring all-gather.
//!
//! Checkpoints hold the full optimizer state: the moments are gathered the same way to the
//! leader, which writes the ordinary `optimizer.safetensors`; a resume loads it on every peer
//! and keeps its own share, so any peer count (sharded or not) can continue a run.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Tensor};

use super::peers::Peer;
use super::sync::buckets;
use crate::error::Result;
use crate::optim::AdamW;
use crate::params::PathStack;

/// Names and sizes of a module's trainable parameters in visit order (the order AdamW steps
/// them and the gradient all-reduce flattens them).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// HF names.
    pub names: Vec<String>,
    /// Element counts.
    pub sizes: Vec<usize>,
}

impl Layout {
    /// The trainable parameters of `module`.
    pub fn of<B: Backend, M: burn::module::Module<B>>(module: &M) -> Self {
        let mut v = LayoutVisitor { stack: PathStack::default(), layout: Layout { names: Vec::new(), sizes: Vec::new() } };
        module.visit(&mut v);
        v.layout
    }
}

struct LayoutVisitor {
    stack: PathStack,
    layout: Layout,
}

impl<B: Backend> ModuleVisitor<B> for LayoutVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        if t.is_require_grad() {
            self.layout.names.push(self.stack.path());
            self.layout.sizes.push(t.dims().iter().product());
        }
    }
}

/// The owner (peer rank) of each parameter: largest first, each to the peer with the least
/// elements so far (ties to the lower rank). Deterministic, so every peer computes the same.
pub fn balanced_owners(sizes: &[usize], world: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
    let mut load = vec![0usize; world.max(1)];
    let mut owner = vec![0; sizes.len()];
    for i in order {
        let r = (0..load.len()).min_by_key(|&r| (load[r], r)).unwrap_or(0);
        owner[i] = r;
        load[r] += sizes[i];
    }
    owner
}

/// One peer's share of a sharded optimizer.
#[derive(Debug, Clone)]
pub struct Shard {
    /// The trainable parameters.
    pub layout: Layout,
    /// Owner rank of each.
    pub owners: Vec<usize>,
}

impl Shard {
    /// Partitions `module`'s trainable parameters over `peer`'s group and restricts `opt` to
    /// this peer's share (dropping the other moments of a resumed state).
    pub fn apply<B: Backend, M: burn::module::Module<B>, IB: Backend>(module: &M, peer: &Peer, opt: &mut AdamW<IB>) -> Self {
        let layout = Layout::of::<B, M>(module);
        let owners = balanced_owners(&layout.sizes, peer.world());
        opt.shard(owners.iter().map(|&o| o == peer.rank()).collect(), &layout.names);
        let mine: usize = layout.sizes.iter().zip(&owners).filter(|(_, &o)| o == peer.rank()).map(|(n, _)| n).sum();
        tracing::info!(rank = peer.rank(), params = mine, of = layout.sizes.iter().sum::<usize>(), "ZeRO-1 optimizer shard");
        Self { layout, owners }
    }

    fn mine(&self, peer: &Peer, i: usize) -> bool {
        self.owners[i] == peer.rank()
    }

    /// Shares the values each owner just computed: every peer ends with all parameters.
    pub fn share_params<AB: AutodiffBackend, M: AutodiffModule<AB>>(&self, peer: &Peer, module: M, device: &AB::Device) -> Result<M> {
        let mut parts: Vec<Tensor<AB::InnerBackend, 1>> = Vec::with_capacity(self.layout.sizes.len());
        module.visit(&mut Contribute::<AB> { shard: self, peer, index: 0, parts: &mut parts, device });
        let reduced = self.all_gather(peer, parts)?;
        Ok(module.map(&mut Replace::<AB> { shard: self, peer, index: 0, parts: reduced.into_iter() }))
    }

    /// The full optimizer state gathered from the owners (on the leader; `None` elsewhere).
    /// Every peer of the group must call it at the same point.
    pub fn gather_optimizer<B: Backend>(&self, peer: &Peer, opt: &AdamW<B>, device: &B::Device) -> Result<Option<AdamW<B>>> {
        if opt.step == 0 {
            // No step yet: nobody holds moments.
            return Ok(peer.is_leader().then(|| opt.with_moments(Vec::new())));
        }
        let mut parts = Vec::with_capacity(self.layout.sizes.len());
        for (i, (name, &n)) in self.layout.names.iter().zip(&self.layout.sizes).enumerate() {
            let part = match (self.mine(peer, i), opt.moments_f32(name)) {
                (true, Some((m, v))) => Tensor::cat(vec![m, v], 0),
                _ => Tensor::<B, 1>::zeros([2 * n], device),
            };
            parts.push(part);
        }
        let reduced = self.all_gather(peer, parts)?;
        if !peer.is_leader() {
            return Ok(None);
        }
        let moments = self
            .layout
            .names
            .iter()
            .zip(&self.layout.sizes)
            .zip(reduced)
            .map(|((name, &n), mv)| (name.clone(), mv.clone().narrow(0, 0, n), mv.narrow(0, n, n)))
            .collect();
        Ok(Some(opt.with_moments(moments)))
    }

    /// Sums flat per-parameter tensors over the peers in buckets (each part is non-zero on
    /// one peer only, so the sum is that peer's part).
    fn all_gather<B: Backend>(&self, peer: &Peer, parts: Vec<Tensor<B, 1>>) -> Result<Vec<Tensor<B, 1>>> {
        let lens: Vec<usize> = parts.iter().map(|t| t.dims()[0]).collect();
        let mut parts = parts.into_iter();
        let mut out = Vec::with_capacity(lens.len());
        for range in buckets(&lens) {
            let bucket: Vec<_> = parts.by_ref().take(range.len()).collect();
            let summed = peer.all_reduce_sum(Tensor::cat(bucket, 0))?;
            let mut off = 0;
            for &n in &lens[range] {
                out.push(summed.clone().narrow(0, off, n));
                off += n;
            }
        }
        Ok(out)
    }
}

/// This peer's owned parameter values (f32, flat) and zeros for the others.
struct Contribute<'a, AB: AutodiffBackend> {
    shard: &'a Shard,
    peer: &'a Peer,
    index: usize,
    parts: &'a mut Vec<Tensor<AB::InnerBackend, 1>>,
    device: &'a AB::Device,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Contribute<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let n = self.shard.layout.sizes[self.index];
        let part = if self.shard.mine(self.peer, self.index) {
            t.inner().reshape([n]).cast(FloatDType::F32)
        } else {
            Tensor::zeros([n], self.device)
        };
        self.parts.push(part);
        self.index += 1;
    }
}

/// Puts the gathered values into the parameters this peer does not own.
struct Replace<'a, AB: AutodiffBackend> {
    shard: &'a Shard,
    peer: &'a Peer,
    index: usize,
    parts: std::vec::IntoIter<Tensor<AB::InnerBackend, 1>>,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for Replace<'_, AB> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let flat = self.parts.next().expect("one gathered value per trainable parameter");
        let mine = self.shard.mine(self.peer, self.index);
        self.index += 1;
        if mine {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let inner = tensor.inner();
        let (dims, dtype) = (inner.dims(), inner.dtype());
        let value = flat.reshape(dims).cast(dtype);
        let new = Tensor::<AB, D>::from_inner(value).require_grad();
        Param::from_mapped_value(id, new, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_balance_sizes_deterministically() {
        let sizes = [100, 10, 10, 60, 40, 1];
        let o = balanced_owners(&sizes, 2);
        assert_eq!(o, balanced_owners(&sizes, 2));
        let load = |r: usize| sizes.iter().zip(&o).filter(|(_, &x)| x == r).map(|(n, _)| n).sum::<usize>();
        assert_eq!(load(0) + load(1), 221);
        assert!(load(0).abs_diff(load(1)) <= 11, "{} vs {}", load(0), load(1));
        assert_eq!(balanced_owners(&sizes, 1), vec![0; 6]);
        // more peers than parameters: every parameter still has exactly one owner
        assert_eq!(balanced_owners(&[5, 3], 4), vec![0, 1]);
    }
}
