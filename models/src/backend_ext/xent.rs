//! Softmax cross-entropy of a chunk of logits, turned in place into its gradient, on plain
//! `f32` slices (the CPU kernel behind [`super::xent_grad_in_place`]).
//!
//! Why: the portable version is eight tensor ops over `[rows, vocab]` (max, subtract, exp,
//! sum, gather, divide, multiply, scatter), each allocating and faulting in a fresh buffer the
//! size of the chunk (78 MB for 128 positions of Qwen's 151,936-token vocabulary) and each
//! running on one thread. Here every row is read three times and written twice in its own
//! buffer, rows in parallel, with a vectorised `exp`.
//!
//! Results do not depend on the thread count or the instruction set: every row is reduced in
//! 16 fixed lanes, added in a fixed order, and the sum over rows runs in row order.

use rayon::prelude::*;

/// Lanes of every reduction (the same on any ISA, so results are too).
const LANES: usize = 16;

/// For every row `r` of the row-major `logits [rows, vocab]`:
/// `nll_r = (logsumexp(x_r) − x_r[t_r]) · keep_r`, and the row becomes
/// `(softmax(x_r) − onehot(t_r)) · keep_r · scale`. Returns `Σ_r nll_r` (summed in f64, row
/// order). Panics if a target is out of range or the lengths disagree.
pub fn xent_grad_rows(logits: &mut [f32], vocab: usize, targets: &[usize], keep: &[f32], scale: f32) -> f64 {
    assert!(vocab > 0 && logits.len() == vocab * targets.len() && keep.len() == targets.len(), "xent_grad_rows: shapes disagree");
    let nll: Vec<f32> = logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter().zip(keep.par_iter()))
        .map(|(row, (&t, &k))| row_grad(row, t, k, scale))
        .collect();
    nll.iter().map(|&x| f64::from(x)).sum()
}

/// One row of [`xent_grad_rows`]; returns its NLL.
fn row_grad(row: &mut [f32], target: usize, keep: f32, scale: f32) -> f32 {
    assert!(target < row.len(), "xent_grad_rows: target {target} out of range for vocab {}", row.len());
    let m = row_max(row);
    let picked = row[target] - m;
    let sum = exp_sub_sum(row, m);
    let coef = keep * scale;
    scale_in_place(row, coef / sum);
    row[target] -= coef;
    (sum.ln() - picked) * keep
}

/// Largest element, reduced in [`LANES`] lanes (vectorises; scores are finite).
pub fn row_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = l.max(x);
        }
    }
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    lanes.iter().fold(tail, |a, &x| a.max(x))
}

/// `x ← x · s` for every element.
fn scale_in_place(xs: &mut [f32], s: f32) {
    for x in xs {
        *x *= s;
    }
}

/// `x ← exp(x − m)` for every element; returns `Σ exp(x − m)`. Dispatches once per call to
/// the widest vector unit the CPU has; every version computes the same bits.
pub fn exp_sub_sum(xs: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { exp_sub_sum_avx512(xs, m) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { exp_sub_sum_avx2(xs, m) };
        }
    }
    exp_sub_sum_lanes(xs, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_sub_sum_avx512(xs: &mut [f32], m: f32) -> f32 {
    exp_sub_sum_lanes(xs, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_sub_sum_avx2(xs: &mut [f32], m: f32) -> f32 {
    exp_sub_sum_lanes(xs, m)
}

#[inline(always)]
fn exp_sub_sum_lanes(xs: &mut [f32], m: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c.iter_mut()) {
            *x = exp_f32(*x - m);
            *l += *x;
        }
    }
    let mut tail = 0f32;
    for x in chunks.into_remainder() {
        *x = exp_f32(*x - m);
        tail += *x;
    }
    lanes.iter().fold(0f32, |a, &x| a + x) + tail
}

/// `eˣ` within 2 ulp on the normal range, 0 below it (Cephes' `expf` reduction and
/// polynomial, branch-free so loops over it vectorise). `x > 88.7` gives +inf.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MIN_X: f32 = -87.336_55; // below it eˣ is subnormal: flushed to 0
    const MAX_X: f32 = 88.722_83;
    let xc = x.clamp(MIN_X, MAX_X);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes' 5.0000001201e-1, which rounds to 0.5 in f32
    let y = p * r * r + r + 1.0;
    // 2ⁿ for n in [-126, 128): n = 128 only at the clamp's top, where y·2¹²⁷·2 overflows to inf.
    let ni = n as i32;
    let half = ni >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - half + 127) as u32) << 23);
    let v = y * s1 * s2;
    if x < MIN_X {
        0.0
    } else if x > MAX_X {
        f32::INFINITY
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polynomial `exp` against the library's over the range softmax uses, and its edges.
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -90.0 + i as f32 * (180.0 / 200_000.0);
            let (got, want) = (exp_f32(x), x.exp());
            if want.is_finite() && want > f32::MIN_POSITIVE {
                worst = worst.max(((got - want) / want).abs() as f64);
            }
        }
        assert!(worst < 3.0 * f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-1.0e30), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
    }

    /// Every dispatch path (vector units and the plain loop) gives the same bits.
    #[test]
    fn exp_sub_sum_same_bits_on_every_path() {
        let xs: Vec<f32> = (0..1003).map(|i| ((i * 7919) % 211) as f32 / 13.0 - 8.0).collect();
        let (mut a, mut b) = (xs.clone(), xs.clone());
        let sa = exp_sub_sum(&mut a, 3.0);
        let sb = exp_sub_sum_lanes(&mut b, 3.0);
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert_eq!(a, b);
    }

    /// Rows against an f64 reference: NLL and the gradient `(softmax − onehot)·keep·scale`.
    #[test]
    fn rows_match_f64_reference() {
        let (rows, vocab) = (5, 777);
        let x: Vec<f32> = (0..rows * vocab).map(|i| ((i * 104_729) % 1009) as f32 / 50.0 - 10.0).collect();
        let targets = [3usize, 0, 776, 400, 12];
        let keep = [1.0f32, 1.0, 0.0, 1.0, 1.0];
        let scale = 0.25f32;
        let mut g = x.clone();
        let nll = xent_grad_rows(&mut g, vocab, &targets, &keep, scale);
        let mut want_nll = 0f64;
        for r in 0..rows {
            let row: Vec<f64> = x[r * vocab..(r + 1) * vocab].iter().map(|&v| f64::from(v)).collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let lse = s.ln() + m;
            want_nll += (lse - row[targets[r]]) * f64::from(keep[r]);
            for (j, v) in row.iter().enumerate() {
                let onehot = if j == targets[r] { 1.0 } else { 0.0 };
                let want = (((v - m).exp() / s) - onehot) * f64::from(keep[r] * scale);
                let got = f64::from(g[r * vocab + j]);
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1e-3), "row {r} col {j}: {got} vs {want}");
            }
        }
        assert!((nll - want_nll).abs() <= 1e-5 * want_nll.abs(), "{nll} vs {want_nll}");
    }
}
