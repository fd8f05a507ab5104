//! Gradients between the backward pass and the optimizer: summed over micro-batches (and
//! the embedding's row-wise gradient added in place), then measured by their global norm and
//! clipped as `torch.nn.utils.clip_grad_norm_` does.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, ElementConversion, FloatDType, Tensor};

use crate::checkpointed::EmbeddingRows;

/// Sums gradients over micro-batches, keyed by `ParamId`, on the inner backend.
#[derive(Default)]
pub struct GradAccumulator {
    grads: GradientsParams,
}

struct Collect<'a, AB: AutodiffBackend> {
    src: &'a mut AB::Gradients,
    dst: &'a mut GradientsParams,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Collect<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        if let Some(g) = t.grad_remove(self.src) {
            // Sums are f32 whatever the parameter dtype (bf16 parameters, many micro-batches).
            let g = g.cast(FloatDType::F32);
            let g = match self.dst.remove::<AB::InnerBackend, D>(param.id) {
                Some(prev) => prev + g,
                None => g,
            };
            self.dst.register::<AB::InnerBackend, D>(param.id, g);
        }
    }
}

impl GradAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the gradients of one backward pass for every trainable parameter of `module`.
    pub fn add<AB: AutodiffBackend, M: AutodiffModule<AB>>(&mut self, module: &M, mut grads: AB::Gradients) {
        let mut c = Collect::<AB> {
            src: &mut grads,
            dst: &mut self.grads,
        };
        module.visit(&mut c);
    }

    /// Adds a gradient computed outside autodiff (the hand-written output-projection
    /// gradient of the fused cross-entropy) for parameter `id`.
    pub fn add_tensor<B: Backend, const D: usize>(&mut self, id: burn::module::ParamId, g: Tensor<B, D>) {
        let g = g.cast(FloatDType::F32);
        let g = match self.grads.remove::<B, D>(id) {
            Some(prev) => prev + g,
            None => g,
        };
        self.grads.register::<B, D>(id, g);
    }

    /// Adds an embedding gradient given as rows ([`EmbeddingRows`], from the checkpointed
    /// backward) by adding each distinct id's summed rows into a table in place, never
    /// building a second `[vocab, H]` table: into the running sum of `rows.id` when there is
    /// one; else into `pending` when it holds a not-yet-added gradient of the same parameter
    /// (the fused loss's projection gradient of a tied table), which becomes the running
    /// sum; else into a zero table. The same bits as adding Burn's embedding backward (and
    /// then `pending`) with [`GradAccumulator::add`] and [`GradAccumulator::add_tensor`].
    pub fn add_embedding_rows<B: Backend>(&mut self, rows: EmbeddingRows<B>, pending: &mut Option<(ParamId, Tensor<B, 2>)>) {
        let (id, dims, device) = (rows.id, rows.table_dims, rows.grad.device());
        let (distinct, sums) = rows.summed();
        let mut table = match self.grads.remove::<B, 2>(id) {
            Some(t) => t,
            None => match pending.take_if(|(p, _)| *p == id) {
                Some((_, p)) => p.cast(FloatDType::F32),
                None => Tensor::zeros(dims, (&device, DType::F32)),
            },
        };
        models::backend_ext::select_add_rows_in_place(&mut table, &distinct, sums);
        self.grads.register::<B, 2>(id, table);
    }

    /// Takes the sum, leaving the accumulator empty.
    pub fn take(&mut self) -> GradientsParams {
        std::mem::take(&mut self.grads)
    }
}

struct SquareSum<'a, AB: AutodiffBackend> {
    grads: &'a GradientsParams,
    acc: Option<Tensor<AB::InnerBackend, 1>>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for SquareSum<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            // No gradient-sized temporary; on Flex a fixed reduction tree (thread-count
            // independent bits).
            let s = models::backend_ext::sum_squares(&g);
            self.acc = Some(match self.acc.take() {
                Some(a) => a + s,
                None => s,
            });
        }
    }
}

/// Global L2 norm of all gradients of `module`'s parameters (a tied weight counted once),
/// as `torch.nn.utils.clip_grad_norm_` reports it before clipping.
pub fn global_grad_norm<AB: AutodiffBackend, M: AutodiffModule<AB>>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquareSum::<AB> { grads, acc: None };
    module.visit(&mut v);
    match v.acc {
        Some(a) => a.into_scalar().elem::<f64>().sqrt(),
        None => 0.0,
    }
}

/// The factor `clip_grad_norm_` multiplies gradients by: `min(1, max_norm / (norm + 1e-6))`;
/// 1 when clipping is off (`max_norm == 0`).
pub fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        1.0
    } else {
        (max_norm / (norm + 1e-6)).min(1.0)
    }
}
