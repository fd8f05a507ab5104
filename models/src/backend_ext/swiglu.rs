//! SwiGLU's activation `silu(gate) · up` and its backward on `f32` slices (the CPU kernel
//! behind [`super::swiglu`] and [`super::swiglu_backward`]).
//!
//! Why: as Burn ops the activation is four element-wise passes over `[tokens, intermediate]`
//! (sigmoid, two multiplies, plus its autodiff bookkeeping) and its backward six more, each
//! allocating a fresh buffer and running on one thread with a scalar `exp`; at 2k tokens of a
//! 0.5B-shaped model that is the largest serial part of a checkpointed CPU training step
//! after the attention. Here each is one pass, in parallel, with the vectorised
//! [`super::xent::exp_f32`].
//!
//! The element math is Burn's in its order: `silu(g) = g · σ(g)`, `σ(g) = 1 / (1 + e^{−g})`,
//! then `· up`; the backward is `d_up = d · silu(g)`, `d_gate = d · up · σ(g)·(1 + g·(1 − σ(g)))`.
//! Results do not depend on the thread count (every element is computed alone).

use rayon::prelude::*;

use super::xent::exp_f32;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Runs `body` compiled for the widest vector unit the CPU has (the loops inside vectorise);
/// every version computes the same bits.
macro_rules! dispatch {
    ($body:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide(f: impl FnOnce()) {
                f()
            }
            #[target_feature(enable = "avx2")]
            unsafe fn narrow(f: impl FnOnce()) {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe { wide(|| $body($($arg),*)) }
            } else if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked above).
                unsafe { narrow(|| $body($($arg),*)) }
            } else {
                $body($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body($($arg),*)
        }
    }};
}

#[inline(always)]
fn forward_chunk(gate: &[f32], up: &mut [f32]) {
    for (u, &g) in up.iter_mut().zip(gate) {
        *u *= g * sigmoid(g);
    }
}

#[inline(always)]
fn backward_chunk(gate: &[f32], up: &[f32], d_act: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    for ((((dg, du), &d), &g), &u) in d_gate.iter_mut().zip(d_up.iter_mut()).zip(d_act).zip(gate).zip(up) {
        let s = sigmoid(g);
        *du = d * (g * s);
        *dg = (d * u) * (s * (1.0 + g * (1.0 - s)));
    }
}

/// `up ← silu(gate) · up`, element by element. Panics if the lengths differ.
pub fn swiglu_in_place(gate: &[f32], up: &mut [f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: lengths differ");
    up.par_chunks_mut(CHUNK).zip(gate.par_chunks(CHUNK)).for_each(|(u, g)| dispatch!(forward_chunk(g, u)));
}

/// `(d_gate, d_up)` of `silu(gate) · up` given `d_act`, written into the two outputs.
/// Panics if the lengths differ.
pub fn swiglu_backward(gate: &[f32], up: &[f32], d_act: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    let n = gate.len();
    assert!(up.len() == n && d_act.len() == n && d_gate.len() == n && d_up.len() == n, "swiglu: lengths differ");
    d_gate
        .par_chunks_mut(CHUNK)
        .zip(d_up.par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)).zip(d_act.par_chunks(CHUNK)))
        .for_each(|((dg, du), ((g, u), d))| dispatch!(backward_chunk(g, u, d, dg, du)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward and backward against f64 math, over the range activations take (and beyond,
    /// where `e^{−g}` overflows).
    #[test]
    fn matches_f64_reference() {
        let n = 3 * CHUNK + 17;
        let gate: Vec<f32> = (0..n).map(|i| ((i * 7919) % 4001) as f32 / 100.0 - 20.0).collect();
        let up: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 997) as f32 / 300.0 - 1.6).collect();
        let d: Vec<f32> = (0..n).map(|i| ((i * 31) % 101) as f32 / 50.0 - 1.0).collect();
        let mut act = up.clone();
        swiglu_in_place(&gate, &mut act);
        let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
        swiglu_backward(&gate, &up, &d, &mut dg, &mut du);
        let close = |got: f32, want: f64, what: &str, i: usize| {
            // f32 rounding of σ and of (1 + g·(1 − σ)), which changes sign near g ≈ −1.28
            assert!((f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1e-2), "{what}[{i}]: {got} vs {want}");
        };
        for i in 0..n {
            let (g, u, d) = (f64::from(gate[i]), f64::from(up[i]), f64::from(d[i]));
            let s = 1.0 / (1.0 + (-g).exp());
            close(act[i], g * s * u, "act", i);
            close(du[i], d * g * s, "d_up", i);
            close(dg[i], d * u * s * (1.0 + g * (1.0 - s)), "d_gate", i);
        }
        let mut big = vec![1.0f32; 3];
        swiglu_in_place(&[-200.0, 0.0, 200.0], &mut big);
        assert_eq!(big, vec![-0.0, 0.0, 200.0]);
    }
}
