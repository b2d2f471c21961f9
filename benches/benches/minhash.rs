//! MinHash near-duplicate kernels (`sft-data dedupe`, `split`): shingling a reply, its
//! signature, and the LSH band hashes, on texts of the length of a chat reply.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sft_curate::minhash::{shingle_hashes, LshParams, MinHasher};

fn text(words: usize, seed: u64) -> String {
    let mut rng = sft_curate::rng::Rng::new(seed);
    (0..words)
        .map(|_| format!("word{}", rng.below(20_000)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn minhash(c: &mut Criterion) {
    let params = LshParams::for_threshold(0.8);
    let hasher = MinHasher::new(params);
    let mut group = c.benchmark_group("minhash");
    for words in [60usize, 400] {
        let t = text(words, words as u64);
        group.throughput(Throughput::Bytes(t.len() as u64));
        group.bench_function(format!("shingles/{words}_words"), |b| {
            b.iter(|| shingle_hashes(black_box(&t)))
        });
        group.bench_function(
            format!(
                "signature_and_bands/{words}_words/{}x{}",
                params.bands, params.rows_per_band
            ),
            |b| b.iter(|| hasher.bands(black_box(&t))),
        );
    }
    group.bench_function("lsh_params_for_threshold", |b| {
        b.iter(|| LshParams::for_threshold(black_box(0.8)))
    });
    group.finish();
}

criterion_group!(benches, minhash);
criterion_main!(benches);
