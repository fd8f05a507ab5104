//! The sum of squares of an f32 slice with a fixed reduction tree: the same bits on any
//! number of threads.
//!
//! Why not `square().sum()`: it allocates a parameter-sized temporary (545 MB for a
//! 151,936 × 896 embedding gradient, the CPU peak of the global-norm pass), and Flex's
//! parallel `sum` reduces its chunks with rayon's `sum`, whose tree follows the work
//! splitting (the thread count). Here every [`CHUNK`] is reduced by one task with [`LANES`]
//! running sums combined in lane order, and the chunk results are added in chunk order in
//! f64: the tree depends only on the length.

use rayon::prelude::*;

/// Elements per task (fixed: the reduction tree must not depend on the thread count).
pub const CHUNK: usize = 1 << 16;
/// Independent running sums per chunk (lets the compiler vectorise without reordering).
pub const LANES: usize = 16;

/// `Σ x²` of one chunk: lane `k` sums elements `k, k + LANES, …`; the tail goes to lane 0
/// onwards; lanes are added in order.
fn chunk_sum_squares(x: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            lanes[k] += c[k] * c[k];
        }
    }
    for (l, r) in lanes.iter_mut().zip(it.remainder()) {
        *l += r * r;
    }
    lanes.iter().sum()
}

/// `Σ x²` of `x`, chunks reduced in parallel, their f32 sums added in chunk order in f64.
pub fn sum_squares_f32(x: &[f32]) -> f64 {
    let parts: Vec<f32> = x.par_chunks(CHUNK).map(chunk_sum_squares).collect();
    parts.iter().map(|&p| f64::from(p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
            .collect()
    }

    /// Within f32 summation error of an f64 reference, on lengths around the chunk and
    /// lane boundaries.
    #[test]
    fn matches_an_f64_reference() {
        for n in [
            0,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 3,
            3 * CHUNK + 17,
        ] {
            let x = data(n);
            let want: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let got = sum_squares_f32(&x);
            assert!(
                (got - want).abs() <= 1e-6 * want.max(1e-30),
                "n {n}: {got} vs {want}"
            );
        }
    }

    /// The same bits on 1, 2 and 4 threads.
    #[test]
    fn independent_of_the_thread_count() {
        let x = data(5 * CHUNK + 123);
        let on = |k: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .unwrap()
                .install(|| sum_squares_f32(&x))
        };
        let one = on(1);
        assert_eq!(one.to_bits(), on(2).to_bits());
        assert_eq!(one.to_bits(), on(4).to_bits());
    }
}
