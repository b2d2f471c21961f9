//! Few-row projections: `sft_model::linear::skinny_matmul` against candle's gemm
//! (`x.matmul(w.t())`), f32 on the CPU, at SmolLM2-135M's projection shapes (k x n:
//! 576 x 576 attention, 576 x 1536 MLP up/gate, 1536 x 576 MLP down, 576 x 49152 head).
//! This sets `sft_model::linear::SKINNY_MAX_ROWS`.
//!
//!     cargo run --release -p sft-benches --bin linear-bench [-- --reps 20]
//!
//! Prints one JSON line per (rows, shape): median microseconds of each, and the ratio.

use std::time::Instant;

use candle_core::{Device, Tensor};

fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize);
    let dev = Device::Cpu;
    let shapes = [(576, 576), (576, 1536), (1536, 576), (576, 49152)];
    for rows in [1, 2, 4, 8, 16, 24, 32, 64] {
        for &(k, n) in &shapes {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.02, (n, k), &dev).unwrap();
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let gemm = median_us(reps, || {
                let y = x.matmul(&w.t().unwrap()).unwrap();
                std::hint::black_box(y);
            });
            let skinny = median_us(reps, || {
                let y = sft_model::linear::skinny_matmul(&xs, &ws, rows, k, n);
                std::hint::black_box(y);
            });
            println!(
                "{{\"rows\": {rows}, \"k\": {k}, \"n\": {n}, \"gemm_us\": {gemm:.1}, \"skinny_us\": {skinny:.1}, \"gemm_over_skinny\": {:.2}}}",
                gemm / skinny
            );
        }
    }
}
