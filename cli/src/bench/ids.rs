//! Deterministic pseudo-random token ids for benchmarks: a xorshift64 stream, enough for
//! timing and the same on every run and machine.

/// A stream of token ids in `0..vocab`.
pub struct TokenRng(u64);

impl TokenRng {
    /// A stream starting from `seed` (must be non-zero for xorshift).
    pub fn new(seed: u64) -> Self {
        TokenRng(seed.max(1))
    }

    /// The next `len` ids below `vocab`.
    pub fn ids(&mut self, len: usize, vocab: usize) -> Vec<u32> {
        (0..len)
            .map(|_| {
                let x = &mut self.0;
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                (*x % vocab as u64) as u32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reproducible_and_below_vocab() {
        let a = TokenRng::new(7).ids(100, 13);
        assert_eq!(a, TokenRng::new(7).ids(100, 13));
        assert!(a.iter().all(|&x| x < 13));
        assert!(a.iter().any(|&x| x != a[0]), "not constant");
    }
}
