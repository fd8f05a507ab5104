//! Weight-streaming matrix–vector products for decoding on the CPU backend.
//!
//! Decoding multiplies a handful of activation rows by every weight matrix: it is bound by
//! how fast the weights stream from memory, not by FLOPs. A general GEMM (what `matmul`
//! calls) tiles and packs for large products and reaches only a fraction of memory bandwidth
//! at `rows ≤ 16`. This kernel reads each `[out, in]` weight row exactly once, from its
//! contiguous HF layout, and dots it with *all* activation rows while it is in registers, so a
//! batch of 8 costs about what a batch of 1 does. Output features are split across the rayon
//! pool flex already uses.
//!
//! The kernel works on plain `f32` slices; [`super::flex`] decides when a tensor qualifies (Flex
//! backend, f32, small row count) and otherwise callers fall back to `matmul`. The result
//! equals `x · wᵀ` up to float summation order.

use rayon::prelude::*;

/// Largest activation row count routed to the GEMV path.
pub const MAX_ROWS: usize = 16;
/// Smallest: a single row is left to gemm's own GEMV, which streams one row as fast as this
/// kernel on the machines measured (see `speed::gemv_vs_matmul`); the gain is in sharing each
/// weight load across several rows.
pub const MIN_ROWS: usize = 2;
/// Output features per parallel task.
const CHUNK: usize = 32;

/// Row-major `y [rows, out] = x [rows, k] · w[out, k]ᵀ`.
pub fn gemv_rows(x: &[f32], rows: usize, w: &[f32], out: usize, k: usize) -> Vec<f32> {
    assert!(x.len() == rows * k && w.len() == out * k && rows <= MAX_ROWS);
    // Computed feature-major ([out, rows]) so every task writes one contiguous block.
    let mut yt = vec![0.0f32; out * rows];
    let isa = Isa::detect();
    yt.par_chunks_mut(CHUNK * rows).enumerate().for_each(|(c, block)| {
        let o0 = c * CHUNK;
        let n = block.len() / rows;
        // Activation rows in groups of at most 8 (registers); each group streams the chunk's
        // weight rows once.
        let mut r0 = 0;
        while r0 < rows {
            let nr = (rows - r0).min(8);
            tile_rows(isa, &w[o0 * k..(o0 + n) * k], n, &x[r0 * k..(r0 + nr) * k], nr, k, block, rows, r0);
            r0 += nr;
        }
    });
    if rows == 1 {
        return yt;
    }
    let mut y = vec![0.0f32; rows * out];
    for o in 0..out {
        for r in 0..rows {
            y[r * out + o] = yt[o * rows + r];
        }
    }
    y
}

/// Instruction set picked once per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Scalar,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }
}

/// `dst[o * ld + r0 + r] = dot(w[o], x[r])` for `n` weight rows and `nr ≤ 8` activation rows.
#[allow(clippy::too_many_arguments)]
fn tile_rows(isa: Isa, w: &[f32], n: usize, x: &[f32], nr: usize, k: usize, dst: &mut [f32], ld: usize, r0: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($f:ident, $($r:literal)*) => {
                match nr {
                    $($r => unsafe { x86::$f::<$r>(w, n, x, k, dst, ld, r0) },)*
                    _ => unreachable!(),
                }
            };
        }
        match isa {
            Isa::Avx512 => return go!(tile_avx512, 1 2 3 4 5 6 7 8),
            Isa::Avx2 => return go!(tile_avx2, 1 2 3 4 5 6 7 8),
            Isa::Scalar => {}
        }
    }
    let _ = isa;
    for o in 0..n {
        let wr = &w[o * k..(o + 1) * k];
        for r in 0..nr {
            dst[o * ld + r0 + r] = dot_scalar(wr, &x[r * k..(r + 1) * k]);
        }
    }
}

fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (p, q) in (&mut ac).zip(&mut bc) {
        for i in 0..8 {
            acc[i] += p[i] * q[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (p, q) in ac.remainder().iter().zip(bc.remainder()) {
        s += p * q;
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Weight rows per register tile: more for few activation rows (independent FMA chains
    /// hide latency), fewer for many (accumulators must fit in 32 zmm registers).
    const fn ow(r: usize) -> usize {
        if r <= 2 {
            4
        } else if r <= 4 {
            3
        } else {
            2
        }
    }

    /// AVX-512 tile kernel; `R` activation rows stay in registers as accumulators.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512<const R: usize>(w: &[f32], n: usize, x: &[f32], k: usize, dst: &mut [f32], ld: usize, r0: usize) {
        let tail = k % 16;
        let main = k - tail;
        let mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        let xp = x.as_ptr();
        let mut o = 0;
        macro_rules! tile {
            ($OW:expr) => {{
                let mut acc = [[_mm512_setzero_ps(); R]; $OW];
                let wp = w.as_ptr().add(o * k);
                let mut i = 0;
                while i < main {
                    let mut wv = [_mm512_setzero_ps(); $OW];
                    for t in 0..$OW {
                        wv[t] = _mm512_loadu_ps(wp.add(t * k + i));
                    }
                    for r in 0..R {
                        let xv = _mm512_loadu_ps(xp.add(r * k + i));
                        for t in 0..$OW {
                            acc[t][r] = _mm512_fmadd_ps(wv[t], xv, acc[t][r]);
                        }
                    }
                    i += 16;
                }
                if tail > 0 {
                    for r in 0..R {
                        let xv = _mm512_maskz_loadu_ps(mask, xp.add(r * k + main));
                        for t in 0..$OW {
                            let wv = _mm512_maskz_loadu_ps(mask, wp.add(t * k + main));
                            acc[t][r] = _mm512_fmadd_ps(wv, xv, acc[t][r]);
                        }
                    }
                }
                for t in 0..$OW {
                    for r in 0..R {
                        *dst.get_unchecked_mut((o + t) * ld + r0 + r) = _mm512_reduce_add_ps(acc[t][r]);
                    }
                }
                o += $OW;
            }};
        }
        const { assert!(R >= 1 && R <= 8) };
        match ow(R) {
            4 => {
                while o + 4 <= n {
                    tile!(4)
                }
            }
            3 => {
                while o + 3 <= n {
                    tile!(3)
                }
            }
            _ => {
                while o + 2 <= n {
                    tile!(2)
                }
            }
        }
        while o < n {
            tile!(1)
        }
    }

    /// AVX2 + FMA variant of [`tile_avx512`] (8 lanes; activation rows in passes of 4 so the
    /// accumulators fit in 16 ymm registers).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2<const R: usize>(w: &[f32], n: usize, x: &[f32], k: usize, dst: &mut [f32], ld: usize, r0: usize) {
        let main = k / 8 * 8;
        let mut rs = 0;
        while rs < R {
            let nr = (R - rs).min(4);
            for o in 0..n {
                let wp = w.as_ptr().add(o * k);
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                while i < main {
                    let wv = _mm256_loadu_ps(wp.add(i));
                    for (r, a) in acc.iter_mut().enumerate().take(nr) {
                        *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add((rs + r) * k + i)), *a);
                    }
                    i += 8;
                }
                for r in 0..nr {
                    let mut lanes = [0.0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
                    let mut s: f32 = lanes.iter().sum();
                    for j in main..k {
                        s += w[o * k + j] * x[(rs + r) * k + j];
                    }
                    *dst.get_unchecked_mut(o * ld + r0 + rs + r) = s;
                }
            }
            rs += nr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], rows: usize, w: &[f32], out: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0.0f64; rows * out];
        for r in 0..rows {
            for o in 0..out {
                y[r * out + o] = (0..k).map(|i| x[r * k + i] as f64 * w[o * k + i] as f64).sum();
            }
        }
        y.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn matches_reference_for_odd_shapes_and_all_row_counts() {
        for &(out, k) in &[(1usize, 1usize), (37, 19), (70, 64), (33, 130)] {
            for rows in [1usize, 2, 5, 8, 9, 16] {
                let x: Vec<f32> = (0..rows * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
                let w: Vec<f32> = (0..out * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.07).collect();
                let got = gemv_rows(&x, rows, &w, out, k);
                let want = reference(&x, rows, &w, out, k);
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() < 1e-4, "out {out} k {k} rows {rows}: {g} vs {e}");
                }
                for isa in [Isa::detect(), Isa::Scalar] {
                    let nr = rows.min(8);
                    let mut dst = vec![0.0f32; out * nr];
                    tile_rows(isa, &w, out, &x[..nr * k], nr, k, &mut dst, nr, 0);
                    for o in 0..out {
                        for r in 0..nr {
                            assert!((dst[o * nr + r] - want[r * out + o]).abs() < 1e-4, "{isa:?}");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use burn::backend::Flex;
    use burn::prelude::*;

    /// Not a test: `cargo test --release --workspace --lib -- backend_ext::gemv::speed -- --ignored --nocapture`
    /// prints GEMV vs `matmul` times on the Qwen2.5-0.5B lm_head and MLP shapes.
    #[test]
    #[ignore]
    fn gemv_vs_matmul() {
        let dev = burn::backend::flex::FlexDevice;
        for &(out, k) in &[(151936usize, 896usize), (4864, 896), (896, 4864)] {
            let w = Tensor::<Flex, 2>::random([out, k], burn::tensor::Distribution::Normal(0.0, 0.02), &dev);
            for rows in [1usize, 8] {
                let x = Tensor::<Flex, 2>::random([rows, k], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
                let (xs, ws) = (x.to_data().to_vec::<f32>().unwrap(), w.to_data().to_vec::<f32>().unwrap());
                let mut best = [f64::INFINITY; 2];
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    let _ = gemv_rows(&xs, rows, &ws, out, k);
                    best[0] = best[0].min(t.elapsed().as_secs_f64());
                    let t = std::time::Instant::now();
                    let _ = x.clone().matmul(w.clone().transpose()).into_data();
                    best[1] = best[1].min(t.elapsed().as_secs_f64());
                }
                let gb = (out * k * 4) as f64 / 1e9;
                eprintln!(
                    "[{rows}x{k}]·[{out}x{k}]ᵀ  gemv {:.2} ms ({:.1} GB/s)  matmul {:.2} ms ({:.1} GB/s)",
                    best[0] * 1e3, gb / best[0], best[1] * 1e3, gb / best[1]
                );
            }
        }
    }
}
