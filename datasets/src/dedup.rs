//! Exact and near-duplicate detection for trace datasets.
//!
//! Teachers sampled k times at temperature 0.6 repeat themselves on easy problems, and problem
//! collections stitched from several sources carry the same problem under different ids. Training
//! on such repeats over-weights them, so `distill data filter` drops (a) exact duplicates — the
//! same problem and response up to whitespace — and (b) near-duplicates found with MinHash over
//! word shingles and banded locality-sensitive hashing (the datasketch / text-dedup scheme: 64-bit
//! shingle hashes permuted by `(a·h + b) mod (2^61 − 1)`, a document's signature is the minimum of
//! each permutation, documents sharing any band are candidates, and a candidate is a duplicate
//! when the signature agreement, an unbiased Jaccard estimate, reaches the threshold).
//!
//! Everything is deterministic for a given seed and input order: the first occurrence is kept.

use std::collections::{HashMap, HashSet};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The Mersenne prime 2^61 − 1 used as the modulus of the MinHash permutations.
const MERSENNE_61: u64 = (1u64 << 61) - 1;

/// Errors in a near-duplicate configuration; they name the offending key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DedupError {
    /// A key of `[near_dup]` has a value that cannot work.
    #[error("near_dup.{key}: {message}")]
    InvalidConfig {
        /// The configuration key, relative to `[near_dup]`.
        key: &'static str,
        /// Why the value is rejected.
        message: String,
    },
}

/// `[near_dup]`: MinHash/LSH near-duplicate removal.
///
/// With the defaults (128 permutations in 16 bands of 8 rows) the LSH S-curve is at 50% recall
/// near Jaccard ≈ 0.71, comfortably below the 0.8 decision threshold, so nearly every true pair
/// above the threshold becomes a candidate while dissimilar pairs are rarely compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NearDupConfig {
    /// Whether near-duplicate removal runs at all. Default `true`.
    pub enabled: bool,
    /// Words per shingle. Default 5 (long enough that shared boilerplate is not enough).
    pub shingle_words: usize,
    /// Number of MinHash permutations (signature length). Default 128.
    pub num_perm: usize,
    /// Number of LSH bands; must divide `num_perm`. Default 16.
    pub bands: usize,
    /// Estimated Jaccard similarity at or above which a document is a duplicate. Default 0.8.
    pub threshold: f64,
    /// Seed of the permutation coefficients, recorded so a run is reproducible. Default 42.
    pub seed: u64,
}

impl Default for NearDupConfig {
    fn default() -> Self {
        Self { enabled: true, shingle_words: 5, num_perm: 128, bands: 16, threshold: 0.8, seed: 42 }
    }
}

impl NearDupConfig {
    /// Rejects values that would make the index meaningless, naming the key.
    pub fn validate(&self) -> Result<(), DedupError> {
        let bad = |key, message: &str| Err(DedupError::InvalidConfig { key, message: message.into() });
        if self.shingle_words == 0 {
            return bad("shingle_words", "must be at least 1");
        }
        if self.num_perm == 0 {
            return bad("num_perm", "must be at least 1");
        }
        if self.bands == 0 || !self.num_perm.is_multiple_of(self.bands) {
            return bad("bands", &format!("must be ≥ 1 and divide num_perm ({})", self.num_perm));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return bad("threshold", "must be in (0, 1]");
        }
        Ok(())
    }
}

/// Math operators kept as tokens of their own: "7 + 5" and "7 * 5" are different problems.
const OPERATORS: &str = "+-*/=<>^";

/// Whether a normalised token is one of the kept operator symbols.
pub fn is_operator(token: &str) -> bool {
    token.len() == 1 && OPERATORS.contains(token)
}

/// The token sequence that both decontamination and MinHash compare: lower-cased maximal runs of
/// alphanumeric characters, plus each math operator (`+ - * / = < > ^`, with `−`, `×`, `÷` mapped
/// to ASCII) as its own token. Spacing, case, other punctuation and LaTeX markup (`$`, `\`,
/// braces) do not matter, so `$3x+5=20$` and `3x + 5 = 20` normalise alike.
pub fn normalized_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        let op = match c {
            '\u{2212}' => '-',
            '\u{d7}' => '*',
            '\u{f7}' => '/',
            c => c,
        };
        if OPERATORS.contains(op) {
            out.push(op.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A stable 64-bit hash (FNV-1a followed by the splitmix64 finaliser). Unlike `std`'s hasher it
/// is the same in every process and release, so signatures and reports are reproducible.
pub fn stable_hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

/// The splitmix64 finaliser: spreads FNV's weak low bits over the whole word.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of a word window joined by single spaces (what n-gram and shingle sets store).
pub fn hash_words(words: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            h ^= u64::from(b' ');
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in w.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    splitmix64(h)
}

/// Key for exact-duplicate detection: SHA-256 of the parts with runs of whitespace collapsed,
/// so re-wrapped or re-indented copies of the same text collide and nothing else does.
pub fn exact_key(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        let mut first = true;
        for token in part.split_whitespace() {
            if !first {
                hasher.update(b" ");
            }
            hasher.update(token.as_bytes());
            first = false;
        }
    }
    hasher.finalize().into()
}

/// Index of the first occurrence each item duplicates exactly, `None` for first occurrences.
pub fn exact_duplicates(keys: &[[u8; 32]]) -> Vec<Option<usize>> {
    let mut first: HashMap<[u8; 32], usize> = HashMap::with_capacity(keys.len());
    keys.iter()
        .enumerate()
        .map(|(i, k)| match first.get(k) {
            Some(&j) => Some(j),
            None => {
                first.insert(*k, i);
                None
            }
        })
        .collect()
}

/// MinHash signature computer: `num_perm` random affine permutations of the shingle hashes.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    shingle_words: usize,
}

impl MinHasher {
    /// Draws the permutation coefficients from `cfg.seed` (ChaCha8, so the same on every platform).
    pub fn new(cfg: &NearDupConfig) -> Result<Self, DedupError> {
        cfg.validate()?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        let a = (0..cfg.num_perm).map(|_| rng.random_range(1..MERSENNE_61)).collect();
        let b = (0..cfg.num_perm).map(|_| rng.random_range(0..MERSENNE_61)).collect();
        Ok(Self { a, b, shingle_words: cfg.shingle_words })
    }

    /// The signature of `text`: per permutation, the minimum permuted shingle hash. A text shorter
    /// than one shingle is a single shingle; an empty text has the all-`u64::MAX` signature.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        self.signature_of_parts(&[text])
    }

    /// The signature of the concatenation of `parts` (e.g. problem, reasoning, answer) without
    /// building the concatenated string. Tokens are those of [`normalized_words`], hashed in
    /// place rather than allocated.
    pub fn signature_of_parts(&self, parts: &[&str]) -> Vec<u64> {
        let mut tokens: Vec<u64> = Vec::new();
        for part in parts {
            token_hashes(part, &mut tokens);
        }
        let mut shingles: HashSet<u64> = HashSet::new();
        if tokens.len() <= self.shingle_words {
            if !tokens.is_empty() {
                shingles.insert(hash_token_window(&tokens));
            }
        } else {
            for window in tokens.windows(self.shingle_words) {
                shingles.insert(hash_token_window(window));
            }
        }
        let mut sig = vec![u64::MAX; self.a.len()];
        for &h in &shingles {
            let h = h % MERSENNE_61;
            for (slot, (&a, &b)) in sig.iter_mut().zip(self.a.iter().zip(&self.b)) {
                let v = permute(a, b, h);
                if v < *slot {
                    *slot = v;
                }
            }
        }
        sig
    }

    /// Signatures of many documents, computed on all available cores; `parts` gives each
    /// document's text parts. Order matches `docs`.
    pub fn signatures<'d, D: Sync>(&self, docs: &'d [D], parts: impl Fn(&'d D) -> &'d [&'d str] + Sync) -> Vec<Vec<u64>> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if threads <= 1 || docs.len() < 64 {
            return docs.iter().map(|d| self.signature_of_parts(parts(d))).collect();
        }
        let chunk = docs.len().div_ceil(threads);
        let parts = &parts;
        std::thread::scope(|scope| {
            let handles: Vec<_> = docs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|d| self.signature_of_parts(parts(d))).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("MinHash worker panicked")).collect()
        })
    }
}

/// Appends the hashes of the [`normalized_words`] tokens of `text` to `out`, without allocating
/// a string per token (the hash of a token equals [`stable_hash64`] of its lower-cased bytes).
fn token_hashes(text: &str, out: &mut Vec<u64>) {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut in_word = false;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_alphanumeric() {
            for lc in c.to_lowercase() {
                for &b in lc.encode_utf8(&mut buf).as_bytes() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(PRIME);
                }
            }
            in_word = true;
            continue;
        }
        if in_word {
            out.push(splitmix64(h));
            h = OFFSET;
            in_word = false;
        }
        let op = match c {
            '\u{2212}' => '-',
            '\u{d7}' => '*',
            '\u{f7}' => '/',
            c => c,
        };
        if OPERATORS.contains(op) {
            out.push(stable_hash64(&[op as u8]));
        }
    }
    if in_word {
        out.push(splitmix64(h));
    }
}

/// Order-sensitive hash of a window of token hashes (one shingle).
fn hash_token_window(window: &[u64]) -> u64 {
    window.iter().fold(0x243f_6a88_85a3_08d3, |h, &t| splitmix64(h.rotate_left(5) ^ t))
}

/// `(a·h + b) mod (2^61 − 1)` without overflow, using the Mersenne reduction.
fn permute(a: u64, b: u64, h: u64) -> u64 {
    let x = u128::from(a) * u128::from(h) + u128::from(b);
    let lo = (x as u64) & MERSENNE_61;
    let hi = (x >> 61) as u64;
    let mut r = lo + (hi & MERSENNE_61) + (hi >> 61);
    while r >= MERSENNE_61 {
        r -= MERSENNE_61;
    }
    r
}

/// Fraction of agreeing signature positions: the MinHash estimate of Jaccard similarity.
pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len() as f64
}

/// End of a bucket chain in [`LshIndex`].
const NO_NEXT: u32 = u32::MAX;

/// A banded LSH index over the signatures of kept documents.
///
/// It stores no signatures, only document ids (the caller keeps the signatures, e.g. in one flat
/// array for a million traces), and per band one hash-map entry per distinct bucket plus a 4-byte
/// chain link per document — about 40 bytes per document and band instead of a `Vec` per bucket.
/// Buckets are walked in insertion order, so queries are deterministic.
#[derive(Debug)]
pub struct LshIndex {
    rows: usize,
    bands: usize,
    /// Per band: bucket key → (first, last) insertion number.
    buckets: Vec<HashMap<u64, (u32, u32)>>,
    /// `next[n * bands + band]`: the insertion after `n` in the same bucket of `band`.
    next: Vec<u32>,
    /// Insertion number → caller's document id.
    docs: Vec<u32>,
}

impl LshIndex {
    /// An empty index for signatures of `num_perm` values split into `bands` bands.
    pub fn new(num_perm: usize, bands: usize) -> Self {
        let bands = bands.max(1);
        Self { rows: num_perm / bands, bands, buckets: vec![HashMap::new(); bands], next: Vec::new(), docs: Vec::new() }
    }

    fn band_key(&self, sig: &[u64], band: usize) -> u64 {
        let mut h: u64 = band as u64;
        for &v in &sig[band * self.rows..(band + 1) * self.rows] {
            h = splitmix64(h ^ v);
        }
        h
    }

    /// The most similar indexed document sharing a band with `sig` whose estimated Jaccard
    /// reaches `threshold`: `(its document id, estimate)`; ties go to the first one met (bands
    /// in order, buckets in insertion order). `sig_of` returns a stored document's signature.
    pub fn query<'s>(&self, sig: &[u64], threshold: f64, sig_of: impl Fn(u32) -> &'s [u64]) -> Option<(u32, f64)> {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut best: Option<(u32, f64)> = None;
        for band in 0..self.bands {
            let Some(&(first, _)) = self.buckets[band].get(&self.band_key(sig, band)) else { continue };
            let mut n = first;
            while n != NO_NEXT {
                let doc = self.docs[n as usize];
                n = self.next[n as usize * self.bands + band];
                if !seen.insert(doc) {
                    continue;
                }
                let j = estimated_jaccard(sig, sig_of(doc));
                if j >= threshold && best.is_none_or(|(_, bj)| j > bj) {
                    best = Some((doc, j));
                }
            }
        }
        best
    }

    /// Adds document `doc` with signature `sig`.
    pub fn insert(&mut self, doc: u32, sig: &[u64]) {
        let n = u32::try_from(self.docs.len()).expect("fewer than 2^32 indexed documents");
        self.docs.push(doc);
        self.next.extend(std::iter::repeat_n(NO_NEXT, self.bands));
        for band in 0..self.bands {
            let key = self.band_key(sig, band);
            match self.buckets[band].get_mut(&key) {
                Some((_, last)) => {
                    self.next[*last as usize * self.bands + band] = n;
                    *last = n;
                }
                None => {
                    self.buckets[band].insert(key, (n, n));
                }
            }
        }
    }
}

/// A near-duplicate decision: the earlier kept document this one duplicates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearDuplicate {
    /// Position (in the input slice) of the kept document it resembles.
    pub of: usize,
    /// The estimated Jaccard similarity of the two.
    pub similarity: f64,
}

/// For each document in order (a document is a list of text parts, e.g. `[problem, reasoning,
/// answer]`), `Some` when it near-duplicates an earlier *kept* document. Only kept documents enter
/// the index, so chains A≈B≈C with A≉C keep A and C.
pub fn near_duplicates<const N: usize>(
    docs: &[[&str; N]],
    cfg: &NearDupConfig,
) -> Result<Vec<Option<NearDuplicate>>, DedupError> {
    let hasher = MinHasher::new(cfg)?;
    let signatures = hasher.signatures(docs, |d| d.as_slice());
    let mut index = LshIndex::new(cfg.num_perm, cfg.bands);
    let mut out = Vec::with_capacity(docs.len());
    for (i, sig) in signatures.iter().enumerate() {
        match index.query(sig, cfg.threshold, |d| &signatures[d as usize]) {
            Some((of, similarity)) => out.push(Some(NearDuplicate { of: of as usize, similarity })),
            None => {
                index.insert(i as u32, sig);
                out.push(None);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_ignore_case_and_punctuation() {
        assert_eq!(normalized_words("Find $x^2+3$, then ADD."), ["find", "x", "^", "2", "+", "3", "then", "add"]);
        assert_eq!(normalized_words("$3x+5=20$"), normalized_words("3x + 5 = 20"));
        assert_eq!(normalized_words("7 − 2 × 3"), normalized_words("7 - 2 * 3"));
    }

    #[test]
    fn permute_matches_wide_arithmetic() {
        for &(a, b, h) in &[(1u64, 0u64, 5u64), (MERSENNE_61 - 1, MERSENNE_61 - 1, MERSENNE_61 - 1), (123_456_789, 987, 1 << 60)] {
            let want = ((u128::from(a) * u128::from(h) + u128::from(b)) % u128::from(MERSENNE_61)) as u64;
            assert_eq!(permute(a, b, h), want);
        }
    }

    #[test]
    fn exact_key_collapses_whitespace_only() {
        assert_eq!(exact_key(&["a  b\n", "c"]), exact_key(&["a b", " c "]));
        assert_ne!(exact_key(&["a b", "c"]), exact_key(&["a", "b c"]));
        assert_ne!(exact_key(&["A b", "c"]), exact_key(&["a b", "c"]));
        assert_eq!(exact_duplicates(&[[1; 32], [2; 32], [1; 32]]), [None, None, Some(0)]);
    }

    #[test]
    fn near_duplicates_found_and_distinct_texts_kept() {
        let base: String = (0..200).map(|i| format!("word{} ", i % 97 + i / 3)).collect();
        let mut edited = base.clone();
        edited.push_str("one extra sentence at the end");
        let other: String = (0..200).map(|i| format!("other{} ", i * 7)).collect();
        let docs = [[base.as_str()], [other.as_str()], [edited.as_str()]];
        let got = near_duplicates(&docs, &NearDupConfig::default()).unwrap();
        assert!(got[0].is_none() && got[1].is_none());
        let dup = got[2].expect("edited copy must be a near-duplicate");
        assert_eq!(dup.of, 0);
        assert!(dup.similarity >= 0.8);
    }

    #[test]
    fn token_hashes_match_normalized_words() {
        let text = "Find $X^2+3$, then ADD − Ünïcode×2.";
        let mut hashes = Vec::new();
        token_hashes(text, &mut hashes);
        let words: Vec<u64> = normalized_words(text).iter().map(|w| stable_hash64(w.as_bytes())).collect();
        assert_eq!(hashes, words);
        let h = MinHasher::new(&NearDupConfig::default()).unwrap();
        assert_eq!(h.signature("a b c d e f g"), h.signature_of_parts(&["a b c", "d e f g"]));
    }

    #[test]
    fn estimate_tracks_true_jaccard() {
        // Two sets of 5-shingles with known overlap: 300 shared words of 400.
        let a: String = (0..400).map(|i| format!("w{i} ")).collect();
        let b: String = (100..500).map(|i| format!("w{i} ")).collect();
        let cfg = NearDupConfig { num_perm: 256, bands: 32, ..NearDupConfig::default() };
        let h = MinHasher::new(&cfg).unwrap();
        let j = estimated_jaccard(&h.signature(&a), &h.signature(&b));
        let truth = 296.0 / 496.0; // shingles: 396 each, 296 shared, union 496
        assert!((j - truth).abs() < 0.1, "estimate {j} vs {truth}");
    }

    #[test]
    fn invalid_config_names_key() {
        let cfg = NearDupConfig { bands: 7, ..NearDupConfig::default() };
        let err = MinHasher::new(&cfg).unwrap_err();
        assert!(err.to_string().starts_with("near_dup.bands"), "{err}");
    }
}
