//! Near-duplicate detection: MinHash signatures over word shingles, cut into LSH bands.
//!
//! A row's text is lowercased and cut into words (runs of letters and digits); its
//! shingles are the runs of [`SHINGLE_WORDS`] consecutive words (a shorter text is one
//! shingle). Two rows' Jaccard similarity (shared shingles over all shingles) is
//! estimated by MinHash: for each of `bands * rows_per_band` hash functions, the smallest
//! hash of any shingle; the chance that two rows agree on one is their Jaccard
//! similarity. The signature is cut into bands of `rows_per_band` values, and each band
//! hashed to one u64: rows that agree on a whole band are candidates. With `b` bands of
//! `r` rows, a pair of similarity `s` becomes a candidate with probability
//! `1 - (1 - s^r)^b`, an S-curve whose steep part is placed at the threshold
//! ([`LshParams::for_threshold`]). `dedupe` confirms each candidate against its cluster's
//! kept row before dropping it, so a false positive costs a comparison, a false negative a
//! duplicate left in: the curve is placed to miss few.

use xxhash_rust::xxh3::xxh3_64;

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;

/// The most hash functions a signature uses.
pub const MAX_PERMUTATIONS: usize = 128;

/// How much more a missed pair above the threshold counts than a candidate below it when
/// the banding is chosen: candidates are confirmed against signatures (`dedupe`) or only
/// keep rows on one side (`split`), so a false positive is cheap. At 0.8 this gives 12
/// bands of 10 (a pair of 0.9 is a candidate with probability 99.4%, 0.5 with 1.2%) where
/// equal weights gave 9 of 13 (92.9% and 0.1%).
pub const FALSE_NEGATIVE_WEIGHT: f64 = 4.0;

/// How the signature is banded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LshParams {
    pub bands: usize,
    pub rows_per_band: usize,
    pub threshold: f64,
}

impl LshParams {
    /// The banding that best separates pairs above `threshold` from pairs below: the
    /// (bands, rows) of at most [`MAX_PERMUTATIONS`] hashes that minimise the probability
    /// mass of false positives plus [`FALSE_NEGATIVE_WEIGHT`] times that of false
    /// negatives, with a uniform prior on similarity.
    pub fn for_threshold(threshold: f64) -> LshParams {
        let integrate = |f: &dyn Fn(f64) -> f64, a: f64, b: f64| {
            let steps = 200;
            let h = (b - a) / steps as f64;
            (0..steps)
                .map(|i| f(a + (i as f64 + 0.5) * h) * h)
                .sum::<f64>()
        };
        let mut best = (f64::INFINITY, 1, 1);
        for bands in 1..=MAX_PERMUTATIONS {
            for rows in 1..=MAX_PERMUTATIONS / bands {
                let p = |s: f64| 1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32);
                let false_positive = integrate(&p, 0.0, threshold);
                let false_negative = integrate(&|s| 1.0 - p(s), threshold, 1.0);
                let error = false_positive + FALSE_NEGATIVE_WEIGHT * false_negative;
                if error < best.0 {
                    best = (error, bands, rows);
                }
            }
        }
        LshParams {
            bands: best.1,
            rows_per_band: best.2,
            threshold,
        }
    }

    pub fn permutations(&self) -> usize {
        self.bands * self.rows_per_band
    }

    /// The probability that a pair of Jaccard similarity `s` becomes a candidate.
    pub fn candidate_probability(&self, s: f64) -> f64 {
        1.0 - (1.0 - s.powi(self.rows_per_band as i32)).powi(self.bands as i32)
    }
}

/// The hash functions of a signature: `h_i(x) = (a_i * x + b_i) >> 32` over 64-bit words
/// (multiply-shift), with odd `a_i`, fixed so that signatures never change.
#[derive(Debug, Clone)]
pub struct MinHasher {
    params: LshParams,
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    pub fn new(params: LshParams) -> MinHasher {
        let mut rng = crate::rng::Rng::new(0x006d_696e_6861_7368);
        let n = params.permutations();
        let a = (0..n).map(|_| rng.next_u64() | 1).collect();
        let b = (0..n).map(|_| rng.next_u64()).collect();
        MinHasher { params, a, b }
    }

    pub fn params(&self) -> LshParams {
        self.params
    }

    /// The MinHash signature of a text; `None` for a text without words.
    pub fn signature(&self, text: &str) -> Option<Vec<u32>> {
        let shingles = shingle_hashes(text);
        if shingles.is_empty() {
            return None;
        }
        let mut signature = vec![u32::MAX; self.a.len()];
        for &x in &shingles {
            for ((slot, &a), &b) in signature.iter_mut().zip(&self.a).zip(&self.b) {
                let h = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                if h < *slot {
                    *slot = h;
                }
            }
        }
        Some(signature)
    }

    /// One hash per band of the signature (the band's index is part of the hash, so equal
    /// values in different bands do not meet).
    pub fn band_hashes(&self, signature: &[u32]) -> Vec<u64> {
        signature
            .chunks(self.params.rows_per_band)
            .enumerate()
            .map(|(band, values)| {
                let mut bytes = Vec::with_capacity(4 + values.len() * 4);
                bytes.extend_from_slice(&(band as u32).to_le_bytes());
                for v in values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                xxh3_64(&bytes)
            })
            .collect()
    }

    /// The band hashes of a text; `None` for a text without words.
    pub fn bands(&self, text: &str) -> Option<Vec<u64>> {
        self.signature(text).map(|s| self.band_hashes(&s))
    }
}

/// The estimated Jaccard similarity of two signatures: the share of equal values.
pub fn estimated_similarity(a: &[u32], b: &[u32]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len().max(1) as f64
}

/// The distinct hashes of a text's word shingles.
pub fn shingle_hashes(text: &str) -> Vec<u64> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Vec::new();
    }
    let width = SHINGLE_WORDS.min(words.len());
    let mut hashes: Vec<u64> = words
        .windows(width)
        .map(|w| xxh3_64(w.join(" ").as_bytes()))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// The exact Jaccard similarity of two texts' shingle sets (for tests and reports).
pub fn jaccard(a: &str, b: &str) -> f64 {
    let (a, b) = (shingle_hashes(a), shingle_hashes(b));
    let set: std::collections::HashSet<u64> = a.iter().copied().collect();
    let shared = b.iter().filter(|h| set.contains(h)).count();
    let union = a.len() + b.len() - shared;
    if union == 0 {
        1.0
    } else {
        shared as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, seed: u64) -> String {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n)
            .map(|_| format!("w{}", rng.below(5000)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn banding_puts_the_steep_part_at_the_threshold() {
        for t in [0.5, 0.7, 0.8, 0.9] {
            let p = LshParams::for_threshold(t);
            assert!(p.permutations() <= MAX_PERMUTATIONS);
            assert!(p.candidate_probability(t - 0.25) < 0.2, "{p:?}");
            assert!(p.candidate_probability((t + 0.1).min(1.0)) > 0.8, "{p:?}");
        }
    }

    #[test]
    fn signatures_estimate_jaccard() {
        let hasher = MinHasher::new(LshParams::for_threshold(0.8));
        let a = words(300, 1);
        let mut b: Vec<String> = a.split(' ').map(str::to_string).collect();
        for i in (0..300).step_by(60) {
            b[i] = "changed".into();
        }
        let b = b.join(" ");
        let exact = jaccard(&a, &b);
        let (sa, sb) = (hasher.signature(&a).unwrap(), hasher.signature(&b).unwrap());
        let estimate = estimated_similarity(&sa, &sb);
        assert!((estimate - exact).abs() < 0.15, "{estimate} vs {exact}");
        let c = words(300, 2);
        assert!(estimated_similarity(&sa, &hasher.signature(&c).unwrap()) < 0.1);
        assert!(hasher.signature("  ... ").is_none());
    }
}
