//! The one small seeded generator of the workspace (SplitMix64): the same seed gives the same
//! numbers on every machine and in every version, for shuffling, sampling, splitting and
//! seeded initialisation. It lives in this lowest crate so that the model (`sft-model`,
//! `sft-train`) and the dataset operations (`sft-curate`) share it.

#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0) from the draw's high 32 bits, without modulo bias worth
    /// caring about for n < 2^32 (the model's and the trainer's draws).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `0..n` (n > 0) from the whole 64-bit draw (the dataset operations' draws;
    /// a different stream from [`Self::below`], kept so that seeds keep their results).
    pub fn below_u64(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64() {
        // SplitMix64's published first outputs for seed 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = SplitMix64::new(7);
        let u = r.uniform();
        assert!((0.0..1.0).contains(&u));
        assert!(r.below(10) < 10);
        assert!(r.below_u64(10) < 10);
    }
}
