//! One AdamW step, two ways with the same bits: the portable Burn tensor ops
//! ([`adamw_tensor_ops`], ~8 ops, each allocating a parameter-sized result unless it can
//! reuse a unique buffer) and a one-pass kernel over f32 slices ([`step_in_place`], and
//! [`step_in_place_transposed`] for a gradient that arrives transposed) that the `Flex` fast
//! path runs on the tensors' own buffers, so an update allocates nothing the size of the
//! parameter.
//!
//! The update is `torch.optim.AdamW(foreach=False)`'s, in its op order:
//! `g ← g·scale`, `m ← m + (g − m)·(1 − β1)`, `v ← v·β2 + g²·(1 − β2)`, `p ← p·(1 − lr·wd)`,
//! `p ← p − (m / (√v / √(1 − β2ᵗ) + ε))·lr/(1 − β1ᵗ)`. Every scalar is converted to f32 once,
//! as Burn's scalar ops convert theirs (`f64 as f32`), and every element op is one IEEE f32
//! operation (no fused multiply-add), so both ways give bit-identical results.

use burn::prelude::*;
use rayon::prelude::*;

/// The scalars of one AdamW update of one parameter, in f64 as the optimizer derives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWScalars {
    /// Multiplies the gradient first (the global-norm clip coefficient); 1 = left as is.
    pub grad_scale: f64,
    /// β1 of the first moment.
    pub beta1: f64,
    /// β2 of the second moment.
    pub beta2: f64,
    /// ε added outside the square root.
    pub eps: f64,
    /// `lr · weight_decay` of this parameter; 0 = no decay (a `no_decay` name or wd 0).
    pub lr_wd: f64,
    /// `lr / (1 − β1ᵗ)`.
    pub step_size: f64,
    /// `√(1 − β2ᵗ)`.
    pub bc2_sqrt: f64,
}

/// [`AdamWScalars`] as the f32 values the element ops use.
#[derive(Clone, Copy)]
struct Consts {
    scale: Option<f32>,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    decay: Option<f32>,
    bc2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

impl From<&AdamWScalars> for Consts {
    fn from(s: &AdamWScalars) -> Self {
        Consts {
            scale: (s.grad_scale != 1.0).then_some(s.grad_scale as f32),
            one_minus_b1: (1.0 - s.beta1) as f32,
            b2: s.beta2 as f32,
            one_minus_b2: (1.0 - s.beta2) as f32,
            decay: (s.lr_wd != 0.0).then_some((1.0 - s.lr_wd) as f32),
            bc2_sqrt: s.bc2_sqrt as f32,
            eps: s.eps as f32,
            step_size: s.step_size as f32,
        }
    }
}

/// Elements per parallel task: large enough to amortise rayon's scheduling, small enough
/// to split the embedding over every core.
const CHUNK: usize = 1 << 16;

/// One element: updates the moments and returns the new parameter value.
#[inline(always)]
fn update(p: f32, g: f32, m: &mut f32, v: &mut f32, c: &Consts) -> f32 {
    let g = match c.scale {
        Some(s) => g * s,
        None => g,
    };
    let m1 = *m + (g - *m) * c.one_minus_b1;
    let v1 = *v * c.b2 + (g * g) * c.one_minus_b2;
    *m = m1;
    *v = v1;
    let p = match c.decay {
        Some(d) => p * d,
        None => p,
    };
    let denom = v1.sqrt() / c.bc2_sqrt + c.eps;
    p - (m1 / denom) * c.step_size
}

/// The step on slices of equal length, `param` overwritten. Panics if the lengths differ.
pub fn step_in_place(
    param: &mut [f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    s: &AdamWScalars,
) {
    let n = param.len();
    assert!(
        grad.len() == n && exp_avg.len() == n && exp_avg_sq.len() == n,
        "adamw: slice lengths differ"
    );
    let c = Consts::from(s);
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(exp_avg.par_chunks_mut(CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *p = update(*p, *g, m, v, &c);
            }
        });
}

/// Columns per tile of [`step_in_place_transposed`]: one tile row of the gradient is read as
/// `TILE_ROWS` contiguous floats per column, a few cache lines.
const TILE_COLS: usize = 64;
/// Parameter rows per parallel task of [`step_in_place_transposed`].
const TILE_ROWS: usize = 32;

/// [`step_in_place`] for a `[rows, cols]` parameter whose gradient arrives transposed:
/// `grad_t` is the row-major `[cols, rows]` buffer (what autodiff hands the weight `W` of
/// `x · Wᵀ`: a transposed view of a contiguous product). Same bits as [`step_in_place`] on
/// the transposed copy, without making it (a parameter-sized allocation and a strided copy
/// on one thread). Panics if the lengths differ.
pub fn step_in_place_transposed(
    param: &mut [f32],
    grad_t: &[f32],
    rows: usize,
    cols: usize,
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    s: &AdamWScalars,
) {
    let n = rows * cols;
    assert!(
        param.len() == n && grad_t.len() == n && exp_avg.len() == n && exp_avg_sq.len() == n && cols > 0,
        "adamw: slice lengths differ"
    );
    let c = Consts::from(s);
    let block = TILE_ROWS * cols;
    param
        .par_chunks_mut(block)
        .zip(exp_avg.par_chunks_mut(block))
        .zip(exp_avg_sq.par_chunks_mut(block))
        .enumerate()
        .for_each(|(bi, ((p, m), v))| {
            let (r0, nr) = (bi * TILE_ROWS, p.len() / cols);
            let mut tile = [0f32; TILE_ROWS * TILE_COLS];
            for j0 in (0..cols).step_by(TILE_COLS) {
                let nc = TILE_COLS.min(cols - j0);
                for j in 0..nc {
                    let src = &grad_t[(j0 + j) * rows + r0..(j0 + j) * rows + r0 + nr];
                    for (i, &g) in src.iter().enumerate() {
                        tile[i * TILE_COLS + j] = g;
                    }
                }
                for i in 0..nr {
                    let k0 = i * cols + j0;
                    let row = p[k0..k0 + nc].iter_mut().zip(&tile[i * TILE_COLS..i * TILE_COLS + nc]);
                    for ((p, g), (m, v)) in row.zip(m[k0..k0 + nc].iter_mut().zip(v[k0..k0 + nc].iter_mut())) {
                        *p = update(*p, *g, m, v, &c);
                    }
                }
            }
        });
}

/// The step as Burn tensor ops on any backend: `(param, exp_avg, exp_avg_sq)` after it. All
/// four inputs are flattened f32 tensors of one length.
pub fn adamw_tensor_ops<B: Backend>(
    param: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
    s: &AdamWScalars,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let g = if s.grad_scale != 1.0 {
        grad.mul_scalar(s.grad_scale)
    } else {
        grad
    };
    // torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    let exp_avg = exp_avg.clone() + (g.clone() - exp_avg).mul_scalar(1.0 - s.beta1);
    let exp_avg_sq = exp_avg_sq.mul_scalar(s.beta2) + g.square().mul_scalar(1.0 - s.beta2);
    let p = if s.lr_wd != 0.0 {
        param.mul_scalar(1.0 - s.lr_wd)
    } else {
        param
    };
    let denom = exp_avg_sq
        .clone()
        .sqrt()
        .div_scalar(s.bc2_sqrt)
        .add_scalar(s.eps);
    let p = p - (exp_avg.clone() / denom).mul_scalar(s.step_size);
    (p, exp_avg, exp_avg_sq)
}

#[cfg(test)]
mod tests {
    use super::super::adamw_in_place;
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{DType, Distribution, FloatDType};

    fn scalars(step: i32, lr: f64, wd: f64, grad_scale: f64) -> AdamWScalars {
        let (b1, b2) = (0.9f64, 0.95f64);
        AdamWScalars {
            grad_scale,
            beta1: b1,
            beta2: b2,
            eps: 1e-8,
            lr_wd: lr * wd,
            step_size: lr / (1.0 - b1.powi(step)),
            bc2_sqrt: (1.0 - b2.powi(step)).sqrt(),
        }
    }

    fn ptr(t: &Tensor<Flex, 1>) -> *const u8 {
        super::super::flex::to_flex::<Flex, 1>(t.clone())
            .unwrap()
            .bytes()
            .as_ptr()
    }

    fn bits<B: Backend>(t: &Tensor<B, 1>) -> Vec<u32> {
        t.to_data().iter::<f32>().map(f32::to_bits).collect()
    }

    /// Several steps on a parameter spanning many parallel chunks (plus a ragged tail): the
    /// in-place path gives exactly the tensor-op path's bits, with decay on and off and a
    /// clip coefficient ≠ 1, and never reallocates the parameter or the moments.
    #[test]
    fn in_place_step_equals_tensor_ops_bit_for_bit() {
        let dev = Default::default();
        let n = 3 * CHUNK + 4321;
        for (wd, scale) in [(0.1, 0.37), (0.0, 1.0), (0.01, 1.0), (0.0, 2.5)] {
            let p0 = Tensor::<Flex, 1>::random([n], Distribution::Normal(0.0, 1.0), &dev);
            let (mut p, mut m, mut v) = (
                p0.clone() * 1.0,
                Tensor::zeros([n], &dev),
                Tensor::zeros([n], &dev),
            );
            let (mut rp, mut rm, mut rv) = (
                p0,
                Tensor::<Flex, 1>::zeros([n], &dev),
                Tensor::<Flex, 1>::zeros([n], &dev),
            );
            for step in 1..=5 {
                let s = scalars(step, 1e-2, wd, scale);
                // Gradients with zeros and large values, as real ones have.
                let g = Tensor::<Flex, 1>::random([n], Distribution::Normal(0.0, 3.0), &dev)
                    .mask_fill(
                        Tensor::<Flex, 1>::random([n], Distribution::Uniform(0.0, 1.0), &dev)
                            .lower_elem(0.05),
                        0.0,
                    );
                let before = [ptr(&p), ptr(&m), ptr(&v)];
                assert!(
                    adamw_in_place(&mut p, &g, &mut m, &mut v, &s),
                    "fast path declined"
                );
                assert_eq!(
                    before,
                    [ptr(&p), ptr(&m), ptr(&v)],
                    "a buffer was reallocated"
                );
                (rp, rm, rv) = adamw_tensor_ops(rp, g, rm, rv, &s);
                assert_eq!(
                    bits(&p),
                    bits(&rp),
                    "param, wd {wd} scale {scale} step {step}"
                );
                assert_eq!(bits(&m), bits(&rm), "exp_avg, step {step}");
                assert_eq!(bits(&v), bits(&rv), "exp_avg_sq, step {step}");
            }
        }
    }

    /// A `[rows, cols]` weight whose gradient is a transposed view (as autodiff hands the
    /// weight of `x · Wᵀ`), with ragged tiles on both sides: the fast path takes it without a
    /// copy and gives exactly the bits of the tensor ops on the flat (copied) gradient.
    #[test]
    fn transposed_gradient_equals_tensor_ops_bit_for_bit() {
        let dev = Default::default();
        let (rows, cols) = (2 * TILE_ROWS + 5, 3 * TILE_COLS + 7);
        let n = rows * cols;
        let p0 = Tensor::<Flex, 1>::random([n], Distribution::Normal(0.0, 1.0), &dev);
        let (mut p, mut m, mut v) = (p0.clone() * 1.0, Tensor::zeros([n], &dev), Tensor::zeros([n], &dev));
        let (mut rp, mut rm, mut rv) = (p0, Tensor::<Flex, 1>::zeros([n], &dev), Tensor::<Flex, 1>::zeros([n], &dev));
        for step in 1..=3 {
            let s = scalars(step, 1e-2, 0.1, 0.7);
            let g_t = Tensor::<Flex, 2>::random([cols, rows], Distribution::Normal(0.0, 2.0), &dev);
            let g = g_t.transpose(); // [rows, cols], strided
            let before = [ptr(&p), ptr(&m), ptr(&v)];
            assert!(adamw_in_place(&mut p, &g, &mut m, &mut v, &s), "fast path declined");
            assert_eq!(before, [ptr(&p), ptr(&m), ptr(&v)], "a buffer was reallocated");
            (rp, rm, rv) = adamw_tensor_ops(rp, g.reshape([n]), rm, rv, &s);
            assert_eq!(bits(&p), bits(&rp), "param, step {step}");
            assert_eq!(bits(&m), bits(&rm), "exp_avg, step {step}");
            assert_eq!(bits(&v), bits(&rv), "exp_avg_sq, step {step}");
        }
    }

    /// A shared parameter buffer is not written: the step lands in a fresh one, the other
    /// handle keeps the old values, and the result is the same.
    #[test]
    fn shared_param_gets_a_fresh_buffer() {
        let dev = Default::default();
        let p0 = Tensor::<Flex, 1>::from_floats([1.0, -2.0, 0.5, 3.0, 0.0], &dev);
        let g = Tensor::<Flex, 1>::from_floats([0.1, 0.2, -0.3, 0.0, 1.0], &dev);
        let s = scalars(1, 1e-1, 0.1, 0.5);
        let mut p = p0.clone();
        let (mut m, mut v) = (Tensor::zeros([5], &dev), Tensor::zeros([5], &dev));
        assert!(adamw_in_place(&mut p, &g, &mut m, &mut v, &s));
        assert_eq!(
            p0.to_data().to_vec::<f32>().unwrap(),
            vec![1.0, -2.0, 0.5, 3.0, 0.0]
        );
        let (rp, rm, rv) = adamw_tensor_ops(
            p0,
            g,
            Tensor::zeros([5], &dev),
            Tensor::zeros([5], &dev),
            &s,
        );
        assert_eq!(bits(&p), bits(&rp));
        assert_eq!(bits(&m), bits(&rm));
        assert_eq!(bits(&v), bits(&rv));
    }

    /// Autodiff, bf16 tensors, a shared moment and mismatched lengths decline with nothing
    /// touched.
    #[test]
    fn declines_what_it_cannot_write_in_place() {
        let dev = Default::default();
        let s = scalars(1, 1e-2, 0.1, 1.0);
        type Ad = Autodiff<Flex>;
        let (mut p, g) = (
            Tensor::<Ad, 1>::ones([4], &dev),
            Tensor::<Ad, 1>::ones([4], &dev),
        );
        let (mut m, mut v) = (
            Tensor::<Ad, 1>::zeros([4], &dev),
            Tensor::<Ad, 1>::zeros([4], &dev),
        );
        assert!(!adamw_in_place(&mut p, &g, &mut m, &mut v, &s));
        assert_eq!(p.sum().into_scalar(), 4.0);

        let one = |dt| Tensor::<Flex, 1>::ones([4], &dev).cast(dt);
        let (mut p, g) = (one(FloatDType::BF16), one(FloatDType::F32));
        let (mut m, mut v) = (one(FloatDType::F32), one(FloatDType::F32));
        assert!(!adamw_in_place(&mut p, &g, &mut m, &mut v, &s));
        assert_eq!(p.dtype(), DType::BF16);

        let mut p = one(FloatDType::F32);
        let mut m = one(FloatDType::F32);
        let view = m.clone();
        assert!(!adamw_in_place(&mut p, &g, &mut m, &mut v, &s));
        assert_eq!(p.sum().into_scalar(), 4.0);
        assert_eq!(m.clone().sum().into_scalar(), 4.0);
        assert_eq!(v.clone().sum().into_scalar(), 4.0);
        drop(view);

        let mut short = Tensor::<Flex, 1>::ones([3], &dev);
        assert!(!adamw_in_place(&mut short, &g, &mut m, &mut v, &s));
        assert_eq!(short.sum().into_scalar(), 3.0);
    }
}
