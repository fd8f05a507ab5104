//! FlashAttention-2 forward and backward on plain `f32` buffers, for the CPU (the kernel
//! behind [`crate::flash_attention`] on Flex).
//!
//! Why: the portable version is made of Burn tensor ops per block pair — a dozen small ops,
//! each allocating its result and most running on one thread (the `exp` of every score
//! included) — and at 4k tokens those serial ops, not the matrix products, set the speed of
//! a CPU training step. Here every (batch row, query head) is one rayon task that walks the
//! same block plan with its own small scratch buffers: the block products are `gemm` calls
//! on strided views of q, k, v (no copies), the exponentials are the vectorised
//! [`super::xent::exp_f32`].
//!
//! The math and the block plan are those of the portable version (same visible pairs, same
//! masking by [`HIDDEN`](crate::flash_attention)); results agree to float rounding. Tasks
//! write disjoint outputs and each reduces in a fixed order, so results do not depend on the
//! thread count. Key/value gradients are summed per query head and then over the query heads
//! of a KV group (GQA) in head order.

use rayon::prelude::*;

use super::xent::{exp_f32, exp_sub_sum, row_max};
use crate::flash_attention::FlashPlan;

/// Score of a hidden (query, key) pair, as the portable version masks it.
const HIDDEN: f32 = -1.0e30;

/// A 4-D `[B, H, T, D]` f32 view: the whole buffer, the element offset and the strides.
#[derive(Clone, Copy, Debug)]
pub struct View4<'a> {
    /// The tensor's whole buffer.
    pub data: &'a [f32],
    /// Offset of element `[0, 0, 0, 0]`.
    pub offset: usize,
    /// Shape.
    pub dims: [usize; 4],
    /// Strides in elements (non-negative).
    pub strides: [usize; 4],
}

impl View4<'_> {
    /// Whether every element the view addresses lies inside its buffer.
    pub fn in_bounds(&self) -> bool {
        if self.dims.contains(&0) {
            return true;
        }
        let last: usize = self.dims.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum();
        self.offset + last < self.data.len()
    }

    /// Pointer to row `t` of head `h` of batch row `b`.
    fn row(&self, b: usize, h: usize, t: usize) -> *const f32 {
        let i = self.offset + b * self.strides[0] + h * self.strides[1] + t * self.strides[2];
        self.data[i..].as_ptr()
    }

    /// Element `[b, h, t, d]`.
    fn at(&self, b: usize, h: usize, t: usize, d: usize) -> f32 {
        self.data[self.offset + b * self.strides[0] + h * self.strides[1] + t * self.strides[2] + d * self.strides[3]]
    }
}

/// A matrix operand: pointer, row stride, column stride.
#[derive(Clone, Copy)]
struct Mat(*const f32, isize, isize);

impl Mat {
    fn rows(v: &View4, b: usize, h: usize, t0: usize) -> Self {
        Mat(v.row(b, h, t0), v.strides[2] as isize, v.strides[3] as isize)
    }
    fn t(self) -> Self {
        Mat(self.0, self.2, self.1)
    }
    fn dense(s: &[f32], cols: usize) -> Self {
        Mat(s.as_ptr(), cols as isize, 1)
    }
}

/// `dst [m, n] = (dst if accumulate) + beta · lhs [m, k] · rhs [k, n]`, row-major `dst`, one
/// thread.
///
/// SAFETY (callers): `lhs`/`rhs` address only elements of live buffers for the given shapes
/// (their views passed [`View4::in_bounds`] or are dense scratch of the right size), and
/// `dst` does not alias them.
#[allow(clippy::too_many_arguments)] // a GEMM call: shape, operands, accumulate and scale
fn mm(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: Mat, rhs: Mat, accumulate: bool, beta: f32) {
    assert!(dst.len() >= m * n);
    // SAFETY: see the function's contract; `dst` holds at least m·n elements.
    unsafe {
        gemm::gemm(
            m, n, k, dst.as_mut_ptr(), 1, n as isize, accumulate, lhs.0, lhs.2, lhs.1, rhs.0, rhs.2, rhs.1, 1.0f32, beta, false, false, false,
            gemm::Parallelism::None,
        );
    }
}

/// Hides the pairs a partial block mask marks invisible.
fn apply_mask(s: &mut [f32], mask: Option<&[bool]>) {
    if let Some(vis) = mask {
        for (x, &v) in s.iter_mut().zip(vis) {
            if !v {
                *x = HIDDEN;
            }
        }
    }
}

/// Forward: fills `out [B, Hq, T, dv]` and `lse [B, Hq, T]` (both dense).
pub fn forward(q: &View4, k: &View4, v: &View4, scale: f32, plan: &FlashPlan, out: &mut [f32], lse: &mut [f32]) {
    let [b, hq, t, dk] = q.dims;
    let (hkv, dv) = (k.dims[1], v.dims[3]);
    let rep = hq / hkv;
    out.par_chunks_mut(t * dv).zip(lse.par_chunks_mut(t)).enumerate().for_each(|(task, (o, l))| {
        let (r, h) = (task / hq, task % hq);
        debug_assert!(r < b);
        let kh = h / rep;
        let mut s = Vec::new();
        let mut acc = Vec::new();
        for (q0, q1, pairs) in plan.row_blocks(r) {
            let n = q1 - q0;
            let (mut m, mut l_sum) = (vec![f32::NEG_INFINITY; n], vec![0f32; n]);
            acc.clear();
            acc.resize(n * dv, 0.0);
            for &(k0, k1, mask) in &pairs {
                let mk = k1 - k0;
                s.resize(n * mk, 0.0);
                mm(&mut s, n, mk, dk, Mat::rows(q, r, h, q0), Mat::rows(k, r, kh, k0).t(), false, scale);
                apply_mask(&mut s, mask);
                for i in 0..n {
                    let row = &mut s[i * mk..(i + 1) * mk];
                    let bm = row_max(row);
                    let m_new = m[i].max(bm);
                    let corr = exp_f32(m[i] - m_new);
                    l_sum[i] = l_sum[i] * corr + exp_sub_sum(row, m_new);
                    m[i] = m_new;
                    acc[i * dv..(i + 1) * dv].iter_mut().for_each(|a| *a *= corr);
                }
                mm(&mut acc, n, dv, mk, Mat::dense(&s, mk), Mat::rows(v, r, kh, k0), true, 1.0);
            }
            for i in 0..n {
                let inv = 1.0 / l_sum[i];
                for (dst, a) in o[(q0 + i) * dv..(q0 + i + 1) * dv].iter_mut().zip(&acc[i * dv..(i + 1) * dv]) {
                    *dst = a * inv;
                }
                l[q0 + i] = m[i] + l_sum[i].ln();
            }
        }
    });
}

/// Backward given `d_out`: fills `dq [B, Hq, T, dk]`, `dk [B, Hkv, T, dk]` and
/// `dv [B, Hkv, T, dv]` (all dense). `o` and `lse` are the forward's outputs.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: &View4,
    k: &View4,
    v: &View4,
    o: &View4,
    lse: &[f32],
    d_out: &View4,
    scale: f32,
    plan: &FlashPlan,
    dq: &mut [f32],
    dk_out: &mut [f32],
    dv_out: &mut [f32],
) {
    let [b, hq, t, dk] = q.dims;
    let (hkv, dv) = (k.dims[1], v.dims[3]);
    let rep = hq / hkv;
    // Per query head key/value gradients, summed over each KV group afterwards.
    let mut dk_h = vec![0f32; b * hq * t * dk];
    let mut dv_h = vec![0f32; b * hq * t * dv];
    dq.par_chunks_mut(t * dk)
        .zip(dk_h.par_chunks_mut(t * dk).zip(dv_h.par_chunks_mut(t * dv)))
        .enumerate()
        .for_each(|(task, (dq_t, (dk_t, dv_t)))| {
            let (r, h) = (task / hq, task % hq);
            let kh = h / rep;
            let lse_h = &lse[task * t..(task + 1) * t];
            let (mut p, mut dp) = (Vec::new(), Vec::new());
            for (q0, q1, pairs) in plan.row_blocks(r) {
                let n = q1 - q0;
                let delta: Vec<f32> = (q0..q1)
                    .map(|i| (0..dv).map(|d| d_out.at(r, h, i, d) * o.at(r, h, i, d)).sum())
                    .collect();
                let dq_blk = &mut dq_t[q0 * dk..q1 * dk];
                for &(k0, k1, mask) in &pairs {
                    let mk = k1 - k0;
                    p.resize(n * mk, 0.0);
                    dp.resize(n * mk, 0.0);
                    mm(&mut p, n, mk, dk, Mat::rows(q, r, h, q0), Mat::rows(k, r, kh, k0).t(), false, scale);
                    apply_mask(&mut p, mask);
                    for i in 0..n {
                        let row = &mut p[i * mk..(i + 1) * mk];
                        exp_sub_sum(row, lse_h[q0 + i]);
                    }
                    // dV_j += Pᵀ dO_i
                    mm(&mut dv_t[k0 * dv..k1 * dv], mk, dv, n, Mat::dense(&p, mk).t(), Mat::rows(d_out, r, h, q0), true, 1.0);
                    // dP = dO_i V_jᵀ; dS = P ⊙ (dP − Δ)
                    mm(&mut dp, n, mk, dv, Mat::rows(d_out, r, h, q0), Mat::rows(v, r, kh, k0).t(), false, 1.0);
                    for i in 0..n {
                        let (pr, dr) = (&p[i * mk..(i + 1) * mk], &mut dp[i * mk..(i + 1) * mk]);
                        for (d, &pv) in dr.iter_mut().zip(pr) {
                            *d = pv * (*d - delta[i]);
                        }
                    }
                    // dQ_i += scale · dS K_j; dK_j += scale · dSᵀ Q_i
                    mm(dq_blk, n, dk, mk, Mat::dense(&dp, mk), Mat::rows(k, r, kh, k0), true, scale);
                    mm(&mut dk_t[k0 * dk..k1 * dk], mk, dk, n, Mat::dense(&dp, mk).t(), Mat::rows(q, r, h, q0), true, scale);
                }
            }
        });
    sum_groups(&dk_h, dk_out, hq, rep, t * dk);
    sum_groups(&dv_h, dv_out, hq, rep, t * dv);
}

/// `dst[b, g] = Σ_{j < rep} src[b, g·rep + j]` over blocks of `len` elements, in head order.
fn sum_groups(src: &[f32], dst: &mut [f32], hq: usize, rep: usize, len: usize) {
    let hkv = hq / rep;
    dst.par_chunks_mut(len).enumerate().for_each(|(task, d)| {
        let (r, g) = (task / hkv, task % hkv);
        let first = (r * hq + g * rep) * len;
        d.copy_from_slice(&src[first..first + len]);
        for j in 1..rep {
            let s = &src[first + j * len..first + (j + 1) * len];
            d.iter_mut().zip(s).for_each(|(a, &x)| *a += x);
        }
    });
}
