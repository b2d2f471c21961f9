//! The seeded order of the training rows: an epoch's order is a function of (seed, epoch)
//! alone, so resuming needs no generator state beyond the position.

pub use sft_io::rng::SplitMix64;

/// The order of `n` rows in `epoch` (Fisher-Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        for i in (1..n).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
    }
    order
}
