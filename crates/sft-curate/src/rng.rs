//! The seeded generator of the dataset operations (the workspace's SplitMix64, seeded as
//! they always were), so that a seed gives the same mix and the same split on every machine
//! and in every version; and selection sampling.

use sft_io::rng::SplitMix64;

/// The workspace's SplitMix64 ([`sft_io::rng`]) seeded as the dataset operations seed it.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

/// What every seed is mixed with first.
const SEED_MIX: u64 = 0x5DEE_CE66_D1CE_4E5B;

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed ^ SEED_MIX))
    }

    /// A generator of its own for one part of a job (one source of a mix), so that parts
    /// do not shift each other's draws.
    pub fn derive(seed: u64, part: u64) -> Rng {
        let mut r = Rng(SplitMix64::new(
            seed ^ SEED_MIX ^ part.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.uniform()
    }

    /// Uniform in [0, n), n > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below_u64(n)
    }
}

/// Selection sampling (Knuth's algorithm S): offered the items of a sequence of `total`
/// one by one, takes exactly `wanted` of them, each subset equally likely, in O(1) memory.
#[derive(Debug, Clone)]
pub struct Selection {
    wanted: u64,
    left: u64,
}

impl Selection {
    pub fn new(wanted: u64, total: u64) -> Selection {
        Selection {
            wanted: wanted.min(total),
            left: total,
        }
    }

    /// Whether the next item is taken.
    pub fn take(&mut self, rng: &mut Rng) -> bool {
        if self.left == 0 {
            return false;
        }
        let taken = rng.below(self.left) < self.wanted;
        self.left -= 1;
        if taken {
            self.wanted -= 1;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_takes_exactly_what_is_wanted() {
        let mut rng = Rng::new(3);
        for (wanted, total) in [(0, 10), (10, 10), (37, 1000), (1, 1)] {
            let mut s = Selection::new(wanted, total);
            let taken = (0..total).filter(|_| s.take(&mut rng)).count() as u64;
            assert_eq!(taken, wanted);
        }
    }
}
