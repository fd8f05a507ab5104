//! The one per-sample seed derivation of distill: teacher sampling and evaluation both derive
//! each sample's seed from the run seed and the sample's identity only, so a rerun (or a
//! resumed run) asks exactly the same questions.

use sha2::{Digest, Sha256};

/// Per-sample seed: the first 8 bytes of SHA-256(run seed, each scope part length-prefixed,
/// sample index), masked to 63 bits.
///
/// `scope` names the sample's place: `[problem_id]` for teacher traces, `[benchmark,
/// problem_id]` for eval records. Length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
///
/// Why 63 bits: OpenAI-compatible servers parse `seed` as a signed 64-bit integer and the HTTP
/// client has always masked it to that range, so the 63-bit value is what every server saw;
/// masking here makes the native engine see the same seed and the recorded `seed` column
/// match what was used. Eval seeds were already 63-bit (unchanged); teacher seeds recorded by
/// older versions are this value with the top bit possibly set. Resume keys on (problem id,
/// sample index), never on the seed, so directories written by older versions resume unchanged.
pub fn sample_seed(run_seed: u64, scope: &[&str], sample_index: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(run_seed.to_le_bytes());
    for part in scope {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(sample_index.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) & (i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The teacher's derivation before unification (64 bits, problem id only).
    fn old_teacher_seed(base: u64, problem_id: &str, i: u32) -> u64 {
        let mut h = Sha256::new();
        h.update(base.to_le_bytes());
        h.update((problem_id.len() as u64).to_le_bytes());
        h.update(problem_id.as_bytes());
        h.update(i.to_le_bytes());
        u64::from_le_bytes(h.finalize()[..8].try_into().unwrap())
    }

    /// The evaluator's derivation before unification (63 bits, benchmark + problem id).
    fn old_eval_seed(run: u64, bench: &str, pid: &str, i: u32) -> u64 {
        let mut h = Sha256::new();
        h.update(run.to_le_bytes());
        h.update((bench.len() as u64).to_le_bytes());
        h.update(bench.as_bytes());
        h.update((pid.len() as u64).to_le_bytes());
        h.update(pid.as_bytes());
        h.update(i.to_le_bytes());
        u64::from_le_bytes(h.finalize()[..8].try_into().unwrap()) & (i64::MAX as u64)
    }

    #[test]
    fn matches_both_old_derivations() {
        let mut top_bit_seen = false;
        for i in 0..64 {
            let pid = format!("p{i}");
            let old = old_teacher_seed(7, &pid, i);
            top_bit_seen |= old > i64::MAX as u64;
            // What the HTTP client always sent for old teacher seeds.
            assert_eq!(sample_seed(7, &[&pid], i), old & (i64::MAX as u64));
            assert_eq!(sample_seed(3, &["aime2024", &pid], i), old_eval_seed(3, "aime2024", &pid, i));
        }
        assert!(top_bit_seen, "the sample covers seeds that old teacher runs recorded with bit 63 set");
    }

    #[test]
    fn stable_distinct_and_in_i64_range() {
        let a = sample_seed(0, &["p1"], 0);
        assert_eq!(a, sample_seed(0, &["p1"], 0));
        assert_ne!(a, sample_seed(0, &["p1"], 1));
        assert_ne!(a, sample_seed(1, &["p1"], 0));
        assert_ne!(sample_seed(0, &["p1"], 10), sample_seed(0, &["p11"], 0));
        assert_ne!(sample_seed(0, &["ab", "c"], 0), sample_seed(0, &["a", "bc"], 0));
        assert!((0..100).all(|i| sample_seed(9, &["x"], i) <= i64::MAX as u64));
    }
}
