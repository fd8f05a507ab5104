//! AdamW with PyTorch's exact semantics, gradient accumulation and global-norm clipping.
//!
//! Burn 0.21's AdamW has no parameter groups, clips per tensor and leaves params without a
//! gradient untouched; `torch.optim.AdamW` decays every trainable parameter it steps (a
//! zero gradient still decays), and HF clips by the global norm. This module keeps its own
//! moments, keyed by HF parameter name so that they survive a save/load (Burn's `ParamId`s do
//! not), and applies the update of `torch.optim.AdamW(foreach=False)`:
//! `p ← p·(1 − lr·wd)`, `m ← lerp(m, g, 1 − β1)`, `v ← β2·v + (1 − β2)·g²`,
//! `p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)`.
//!
//! The moments can be stored lean (bf16 or block-wise 8-bit) and the parameters in bf16
//! with stochastic rounding; see [`crate::optim_lean`]. The math is f32 in every case.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor};

use models::backend_ext::{adamw_in_place, adamw_tensor_ops, AdamWScalars};

use crate::config::{OptimKind, StateDtype};
use crate::error::{Result, StudentError};
use crate::optim_lean::{rounding_seed, stochastic_round_bf16, MomentStore, StateMode, MIN_8BIT_SIZE};
use crate::params::{is_no_decay, PathStack};
pub use crate::grads::{clip_coefficient, global_grad_norm, GradAccumulator};

/// Hyperparameters of one AdamW instance.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWParams {
    /// (β1, β2).
    pub betas: [f64; 2],
    /// ε outside the square root.
    pub eps: f64,
    /// Decoupled weight decay for parameters not matched by `no_decay`.
    pub weight_decay: f64,
    /// Name substrings exempt from decay (`[]` = decay everything).
    pub no_decay: Vec<String>,
    /// `adamw` or block-wise 8-bit `adamw_8bit`.
    pub kind: OptimKind,
    /// Moment storage of `adamw`.
    pub state_dtype: StateDtype,
    /// Seed of the stochastic rounding of bf16 parameters.
    pub seed: u64,
}

impl AdamWParams {
    /// Plain PyTorch AdamW (f32 moments).
    pub fn torch(betas: [f64; 2], eps: f64, weight_decay: f64, no_decay: Vec<String>) -> Self {
        Self { betas, eps, weight_decay, no_decay, kind: OptimKind::Adamw, state_dtype: StateDtype::F32, seed: 0 }
    }

    /// How the moments of an `n`-element parameter are stored.
    fn mode(&self, n: usize) -> StateMode {
        match (self.kind, self.state_dtype) {
            (OptimKind::Adamw8bit, _) if n as u64 >= MIN_8BIT_SIZE => StateMode::Q8,
            (OptimKind::Adamw8bit, _) | (OptimKind::Adamw, StateDtype::F32) => StateMode::F32,
            (OptimKind::Adamw, StateDtype::Bf16) => StateMode::Bf16,
        }
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    exp_avg: MomentStore<B>,
    exp_avg_sq: MomentStore<B>,
}

/// AdamW state: step count and moments keyed by parameter name.
#[derive(Debug)]
pub struct AdamW<B: Backend> {
    /// Hyperparameters.
    pub params: AdamWParams,
    /// Optimizer steps taken so far (PyTorch's per-param `step`, equal for all params here).
    pub step: u64,
    moments: HashMap<String, Moments<B>>,
    /// ZeRO-1: which trainable parameters (by visit index) this peer updates; `None` = all.
    /// A parameter it does not own is left unchanged and gets no moments (its owner updates
    /// it and shares the new value; see `distributed::zero`).
    owned: Option<Vec<bool>>,
    /// Whether f32 parameters with f32 moments may take the in-place step
    /// (`models::backend_ext::adamw_in_place`); off only in tests comparing the two paths.
    fused: bool,
    /// Parameter updates that took the in-place step (tests check the path was taken).
    #[cfg(test)]
    fused_updates: u64,
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimizer (no moments, step 0).
    pub fn new(params: AdamWParams) -> Self {
        Self {
            params,
            step: 0,
            moments: HashMap::new(),
            owned: None,
            fused: true,
            #[cfg(test)]
            fused_updates: 0,
        }
    }

    /// `(param, exp_avg, exp_avg_sq)` after one step of f32 `param`: in place when `fuse`
    /// and the backend allows, else as tensor ops (the same bits).
    fn update<const D: usize>(
        &mut self,
        mut p: Tensor<B, 1>,
        g: Tensor<B, D>,
        mut m: Tensor<B, 1>,
        mut v: Tensor<B, 1>,
        s: &AdamWScalars,
        fuse: bool,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        if fuse && adamw_in_place(&mut p, &g, &mut m, &mut v, s) {
            #[cfg(test)]
            {
                self.fused_updates += 1;
            }
            return (p, m, v);
        }
        let n = p.dims()[0];
        adamw_tensor_ops(p, g.reshape([n]).cast(FloatDType::F32), m, v, s)
    }

    /// Restricts updates and moments to the trainable parameters whose visit index is marked
    /// in `owned` (ZeRO-1); moments of the others (a resumed full state) are dropped.
    /// `names[i]` is the name of trainable parameter i.
    pub fn shard(&mut self, owned: Vec<bool>, names: &[String]) {
        let keep: std::collections::HashSet<&String> = names.iter().zip(&owned).filter(|(_, o)| **o).map(|(n, _)| n).collect();
        self.moments.retain(|k, _| keep.contains(k));
        self.owned = Some(owned);
    }

    /// Whether this optimizer updates trainable parameter `index` (always, unless sharded).
    pub fn owns(&self, index: usize) -> bool {
        self.owned.as_ref().is_none_or(|o| o.get(index).copied().unwrap_or(false))
    }

    /// Elements per moment summed over the tracked parameters (each has two moments): what
    /// this optimizer holds, in parameters.
    pub fn state_elements(&self) -> usize {
        self.moments.values().map(|m| store_len(&m.exp_avg)).sum()
    }

    /// The f32 moments `(exp_avg, exp_avg_sq)` of parameter `name`, if tracked.
    pub fn moments_f32(&self, name: &str) -> Option<(Tensor<B, 1>, Tensor<B, 1>)> {
        self.moments.get(name).map(|m| (m.exp_avg.to_f32(), m.exp_avg_sq.to_f32()))
    }

    /// An unsharded copy (same hyperparameters and step) holding `moments` (f32, stored as
    /// this optimizer's settings say): the full state a sharded group gathers to save it.
    pub fn with_moments(&self, moments: Vec<(String, Tensor<B, 1>, Tensor<B, 1>)>) -> Self {
        let mut out = Self::new(self.params.clone());
        out.step = self.step;
        for (name, m, v) in moments {
            let mode = self.params.mode(m.dims()[0]);
            let stored = Moments { exp_avg: MomentStore::store(m, mode, true), exp_avg_sq: MomentStore::store(v, mode, false) };
            out.moments.insert(name, stored);
        }
        out
    }

    /// Applies one update to every trainable float parameter of `module`.
    ///
    /// `grads` holds the (accumulated) gradients on the inner backend; a trainable parameter
    /// without one is stepped with a zero gradient (so it is decayed, as in PyTorch).
    /// `grad_scale` multiplies every gradient first (the global-norm clip coefficient).
    pub fn step<AB, M>(&mut self, module: M, grads: &mut GradientsParams, lr: f64, grad_scale: f64) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.step += 1;
        let t = self.step as i32;
        let [b1, b2] = self.params.betas;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let mut mapper = AdamWMapper::<AB> {
            opt: self,
            grads,
            lr,
            grad_scale,
            step_size: lr / bc1,
            bc2_sqrt,
            stack: PathStack::default(),
            index: 0,
            _b: std::marker::PhantomData,
        };
        module.map(&mut mapper)
    }

    /// Writes the moments to a safetensors file: `<name>.exp_avg` / `<name>.exp_avg_sq` as
    /// f32 (or bf16 with `state_dtype = "bf16"`), 8-bit moments as `<key>.q8codes` (u8) and
    /// `<key>.q8absmax` (f32).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut entries = Vec::new();
        let mut names: Vec<&String> = self.moments.keys().collect();
        names.sort();
        for name in names {
            let m = &self.moments[name];
            entries.push((format!("{name}.exp_avg"), &m.exp_avg));
            entries.push((format!("{name}.exp_avg_sq"), &m.exp_avg_sq));
        }
        crate::optim_state::save_stores(path, &entries)
    }

    /// Restores moments written by [`AdamW::save`] (the step count lives in the trainer state).
    pub fn load(&mut self, path: &Path, step: u64, device: &B::Device) -> Result<()> {
        let ck = |msg: String| StudentError::Checkpoint {
            path: path.into(),
            msg,
        };
        let mut stores = crate::optim_state::load_stores::<B>(path, device)?;
        let mut names: Vec<String> = stores.keys().filter_map(|k| k.strip_suffix(".exp_avg").map(str::to_string)).collect();
        names.sort();
        self.moments.clear();
        for name in names {
            let m = stores.remove(&format!("{name}.exp_avg"));
            let v = stores.remove(&format!("{name}.exp_avg_sq"));
            match (m, v) {
                (Some(exp_avg), Some(exp_avg_sq)) => {
                    self.moments.insert(name, Moments { exp_avg, exp_avg_sq });
                }
                _ => return Err(ck(format!("{name}: exp_avg/exp_avg_sq incomplete"))),
            }
        }
        if let Some(k) = stores.keys().next() {
            return Err(ck(format!("{k}: no matching exp_avg")));
        }
        self.step = step;
        Ok(())
    }

    /// Number of parameters with moments.
    pub fn num_tracked(&self) -> usize {
        self.moments.len()
    }

    /// How the moments of parameter `name` are stored, if it has any.
    pub fn state_mode(&self, name: &str) -> Option<StateMode> {
        self.moments.get(name).map(|m| m.exp_avg.mode())
    }
}

fn store_len<B: Backend>(s: &MomentStore<B>) -> usize {
    match s {
        MomentStore::F32(t) | MomentStore::Bf16(t) => t.dims()[0],
        MomentStore::Q8(q, _) => q.codes.dims()[0],
    }
}

struct AdamWMapper<'a, AB: AutodiffBackend> {
    opt: &'a mut AdamW<AB::InnerBackend>,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
    step_size: f64,
    bc2_sqrt: f64,
    stack: PathStack,
    index: u64,
    _b: std::marker::PhantomData<AB>,
}

impl<AB: AutodiffBackend> AdamWMapper<'_, AB> {
    /// The step's scalars for parameter `name` (its weight decay group decides `lr_wd`).
    fn scalars(&self, name: &str) -> AdamWScalars {
        let [beta1, beta2] = self.opt.params.betas;
        let wd = if is_no_decay(name, &self.opt.params.no_decay) { 0.0 } else { self.opt.params.weight_decay };
        AdamWScalars {
            grad_scale: self.grad_scale,
            beta1,
            beta2,
            eps: self.opt.params.eps,
            lr_wd: self.lr * wd,
            step_size: self.step_size,
            bc2_sqrt: self.bc2_sqrt,
        }
    }
}

/// The f32 values of a stored moment, moved out (not copied) when already f32.
fn into_f32<B: Backend>(store: MomentStore<B>) -> Tensor<B, 1> {
    match store {
        MomentStore::F32(t) => t,
        other => other.to_f32(),
    }
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for AdamWMapper<'_, AB> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let name = self.stack.path();
        if !self.opt.owns(self.index as usize) {
            // ZeRO-1: another peer updates it; keep the index so rounding seeds match.
            self.index += 1;
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let p = tensor.inner();
        let param_dtype = p.dtype();
        let dims = p.dims();
        let n: usize = dims.iter().product();
        // Kept in its own shape and layout: the fused step reads a transposed weight gradient
        // where it lies instead of copying it flat.
        let g = match self.grads.remove::<AB::InnerBackend, D>(id) {
            Some(g) => g.cast(FloatDType::F32),
            None => Tensor::zeros(dims, (&p.device(), DType::F32)),
        };
        let (exp_avg, exp_avg_sq) = match self.opt.moments.remove(&name) {
            Some(m) => (into_f32(m.exp_avg), into_f32(m.exp_avg_sq)),
            None => (Tensor::zeros([n], (&g.device(), DType::F32)), Tensor::zeros([n], (&g.device(), DType::F32))),
        };
        let s = self.scalars(&name);
        let mode = self.opt.params.mode(n);
        // f32 parameter and f32 moments: the one-pass in-place step where the backend has one
        // (Flex), else the same math as tensor ops. bf16 parameters and lean moments go
        // through the f32 copies the tensor ops make.
        let fuse = self.opt.fused && param_dtype == DType::F32 && mode == StateMode::F32;
        let pf = p.reshape([n]).cast(FloatDType::F32);
        let (pf, exp_avg, exp_avg_sq) = self.opt.update(pf, g, exp_avg, exp_avg_sq, &s, fuse);
        let pf = if param_dtype == DType::BF16 {
            stochastic_round_bf16(pf, rounding_seed(self.opt.params.seed, self.opt.step, self.index))
        } else {
            pf
        };
        self.index += 1;
        let moments = Moments {
            exp_avg: MomentStore::store(exp_avg, mode, true),
            exp_avg_sq: MomentStore::store(exp_avg_sq, mode, false),
        };
        self.opt.moments.insert(name, moments);
        let new = Tensor::<AB, D>::from_inner(pf.reshape(dims)).require_grad();
        Param::from_mapped_value(id, new, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::ElementConversion;
    use burn::module::Module;

    type AB = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Toy<B: Backend> {
        weight: Param<Tensor<B, 2>>,
        norm: Param<Tensor<B, 1>>,
        unused: Param<Tensor<B, 1>>,
    }

    fn toy() -> Toy<AB> {
        let dev = Default::default();
        Toy {
            weight: Param::from_tensor(Tensor::from_floats([[1.0, -2.0], [0.5, 3.0]], &dev)),
            norm: Param::from_tensor(Tensor::from_floats([1.0, 1.0], &dev)),
            unused: Param::from_tensor(Tensor::from_floats([2.0], &dev)),
        }
    }

    /// Reference: a hand-rolled scalar AdamW in f64, exactly torch's update.
    fn reference(p: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
        let (b1, b2, eps) = (0.9f64, 0.95f64, 1e-8f64);
        let (mut p, mut m, mut v) = (p, 0.0, 0.0);
        for (i, &g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            p *= 1.0 - lr * wd;
            m += (g - m) * (1.0 - b1);
            v = b2 * v + (1.0 - b2) * g * g;
            let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            p -= lr / (1.0 - b1.powi(t)) * m / denom;
        }
        p
    }

    #[test]
    fn matches_torch_update_with_groups_and_zero_grad_decay() {
        let dev = Default::default();
        let mut model = toy();
        let mut opt = AdamW::<Flex>::new(AdamWParams::torch([0.9, 0.95], 1e-8, 0.1, vec!["norm".into()]));
        let x = Tensor::<AB, 1>::from_floats([0.3, -0.7], &dev);
        let mut history: Vec<Vec<f64>> = vec![vec![]; 6];
        for _ in 0..3 {
            // loss = sum(W x * norm) ; unused param gets no grad
            let y = model.weight.val().matmul(x.clone().unsqueeze_dim(1)).squeeze_dim::<1>(1) * model.norm.val();
            let loss = y.sum();
            let grads = loss.backward();
            let mut acc = GradAccumulator::new();
            acc.add(&model, grads);
            let mut g = acc.take();
            let gw: Vec<f64> = g.get::<Flex, 2>(model.weight.id).unwrap().into_data().iter::<f64>().collect();
            let gn: Vec<f64> = g.get::<Flex, 1>(model.norm.id).unwrap().into_data().iter::<f64>().collect();
            for i in 0..4 {
                history[i].push(gw[i]);
            }
            history[4].push(gn[0]);
            history[5].push(gn[1]);
            model = opt.step::<AB, _>(model, &mut g, 1e-2, 1.0);
        }
        let w: Vec<f64> = model.weight.val().into_data().iter::<f64>().collect();
        let init_w = [1.0, -2.0, 0.5, 3.0];
        for i in 0..4 {
            assert!((w[i] - reference(init_w[i], &history[i], 1e-2, 0.1)).abs() < 1e-6, "w[{i}]");
        }
        let n: Vec<f64> = model.norm.val().into_data().iter::<f64>().collect();
        assert!((n[0] - reference(1.0, &history[4], 1e-2, 0.0)).abs() < 1e-6);
        // the unused param has no grad: torch with a zero grad only decays it
        let u: f64 = model.unused.val().into_scalar().elem();
        assert!((u - 2.0 * (1.0 - 1e-3f64).powi(3)).abs() < 1e-6, "{u}");
        assert_eq!(opt.num_tracked(), 3);
    }

    /// The in-place step (Flex, f32) and the tensor-op step give the same bits over several
    /// steps: decayed and `no_decay` parameters, a parameter without gradients, weight decay
    /// on and off, a clip coefficient ≠ 1; and the in-place step is the one taken.
    #[test]
    fn fused_step_equals_tensor_step() {
        let dev: burn::tensor::Device<Flex> = Default::default();
        for (wd, scale) in [(0.1, 0.37), (0.0, 1.0)] {
            let params = AdamWParams::torch([0.9, 0.95], 1e-8, wd, vec!["norm".into()]);
            let (mut fused, mut plain) = (toy(), toy());
            let (mut fo, mut po) = (AdamW::<Flex>::new(params.clone()), AdamW::<Flex>::new(params));
            po.fused = false;
            for step in 0..4 {
                let k = step as f32;
                let gw = [[0.3 - k, 1.5], [-2.0 * k, 0.01]];
                let gn = [0.5 * k - 0.2, 3.0];
                for (model, opt) in [(&mut fused, &mut fo), (&mut plain, &mut po)] {
                    let mut g = GradientsParams::new();
                    g.register::<Flex, 2>(model.weight.id, Tensor::from_floats(gw, &dev));
                    g.register::<Flex, 1>(model.norm.id, Tensor::from_floats(gn, &dev));
                    *model = opt.step::<AB, _>(std::mem::replace(model, toy()), &mut g, 1e-2, scale);
                }
            }
            let bits = |t: Tensor<Flex, 1>| t.into_data().iter::<f32>().map(f32::to_bits).collect::<Vec<_>>();
            let flat = |m: &Toy<AB>| [m.weight.val().inner().reshape([4]), m.norm.val().inner(), m.unused.val().inner()];
            for (a, b) in flat(&fused).into_iter().zip(flat(&plain)) {
                assert_eq!(bits(a), bits(b), "wd {wd}: parameters differ");
            }
            for name in ["weight", "norm", "unused"] {
                let (fm, fv) = fo.moments_f32(name).unwrap();
                let (pm, pv) = po.moments_f32(name).unwrap();
                assert_eq!(bits(fm), bits(pm), "{name}: exp_avg");
                assert_eq!(bits(fv), bits(pv), "{name}: exp_avg_sq");
            }
            assert_eq!((fo.fused_updates, po.fused_updates), (12, 0));
        }
    }

    #[test]
    fn global_norm_and_clip() {
        let dev: burn::tensor::Device<Flex> = Default::default();
        let model = toy();
        let mut g = GradientsParams::new();
        g.register::<Flex, 2>(model.weight.id, Tensor::from_floats([[3.0, 0.0], [0.0, 0.0]], &dev));
        g.register::<Flex, 1>(model.norm.id, Tensor::from_floats([0.0, 4.0], &dev));
        let n = global_grad_norm::<AB, _>(&model, &g);
        assert!((n - 5.0).abs() < 1e-9);
        assert!((clip_coefficient(n, 1.0) - 1.0 / (5.0 + 1e-6)).abs() < 1e-12);
        assert_eq!(clip_coefficient(n, 0.0), 1.0);
        assert_eq!(clip_coefficient(0.5, 1.0), 1.0);
    }

    #[test]
    fn state_round_trip() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let mut model = toy();
        let mut opt = AdamW::<Flex>::new(AdamWParams::torch([0.9, 0.95], 1e-8, 0.0, vec![]));
        let mut g = GradientsParams::new();
        g.register::<Flex, 2>(model.weight.id, Tensor::from_floats([[1.0, 2.0], [3.0, 4.0]], &dev));
        model = opt.step::<AB, _>(model, &mut g, 1e-3, 1.0);
        let f = dir.path().join("optimizer.safetensors");
        opt.save(&f).unwrap();
        let mut back = AdamW::<Flex>::new(opt.params.clone());
        back.load(&f, opt.step, &dev).unwrap();
        assert_eq!(back.num_tracked(), 3);
        let a: Vec<f32> = opt.moments["weight"].exp_avg_sq.to_f32().into_data().iter::<f32>().collect();
        let b: Vec<f32> = back.moments["weight"].exp_avg_sq.to_f32().into_data().iter::<f32>().collect();
        assert_eq!(a, b);
        let _ = model;
    }
}
