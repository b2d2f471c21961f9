//! The workspace's seeded generator ([`sft_io::rng::SplitMix64`]), under the path the model
//! code and its callers use.

pub use sft_io::rng::SplitMix64;
