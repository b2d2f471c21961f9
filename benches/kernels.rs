//! Criterion benchmarks of the hot kernels, at realistic sizes: real Alpaca conversations
//! (`data-samples/real/alpaca_en_demo.json`, rows of a few hundred tokens) through row
//! validation, chat-template rendering, the fast BPE encoder and packing; SmolLM2-135M's
//! shapes (hidden 576, 9 heads, 3 key heads, head size 64, vocabulary 49,152) for the fused
//! loss, attention (the unfused softmax path and the fused blockwise op) and the few-row
//! projection.
//!
//!     cargo bench -p sft-benches --bench kernels [-- FILTER]
//!
//! Sample counts and times are kept small so the whole run takes a few minutes on 2 cores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use sft_model::attention::{attention, attention_unfused, KeyRanges};
use sft_model::ops::SoftmaxMask;
use sft_template::{ChatTemplate, RenderOptions};
use sft_tokenize::{pack, PackingStrategy, SftTokenizer};

const ROWS: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first `ROWS` Alpaca examples as `{"messages": [user, assistant]}` rows.
fn conversations() -> Vec<Value> {
    let path = root().join("data-samples/real/alpaca_en_demo.json");
    let text = std::fs::read_to_string(&path).expect("the bundled Alpaca sample");
    let rows: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    rows.iter()
        .take(ROWS)
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let user = if s("input").is_empty() {
                s("instruction")
            } else {
                format!("{}\n\n{}", s("instruction"), s("input"))
            };
            json!({"messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": s("output")},
            ]})
        })
        .collect()
}

fn tokenizer() -> SftTokenizer {
    SftTokenizer::from_path(&root().join("data-samples/models/smollm2-135m-instruct-tokenizer"))
        .expect("the bundled SmolLM2 tokenizer")
}

fn rendered(rows: &[Value]) -> Vec<String> {
    let template = ChatTemplate::bundled("smollm2").expect("bundled template");
    let options = RenderOptions::training();
    rows.iter()
        .filter_map(|r| {
            let messages = r["messages"].as_array()?;
            template.render(messages, &options).ok().map(|r| r.text)
        })
        .collect()
}

fn data_kernels(c: &mut Criterion) {
    let rows = conversations();
    let texts = rendered(&rows);
    let bytes: usize = texts.iter().map(String::len).sum();
    let tok = tokenizer();
    let lengths: Vec<usize> = texts
        .iter()
        .map(|t| tok.encode(t, false).map_or(0, |ids| ids.len()))
        .collect();
    let tokens: usize = lengths.iter().sum();

    let mut g = c.benchmark_group("data");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("validate_row (200 Alpaca rows)", |b| {
        b.iter(|| {
            rows.iter()
                .map(|r| sft_formats::validate_row(r).issues.len())
                .sum::<usize>()
        })
    });
    let template = ChatTemplate::bundled("smollm2").expect("bundled template");
    let options = RenderOptions::training();
    g.bench_function("render smollm2 (200 rows)", |b| {
        b.iter(|| {
            rows.iter()
                .filter_map(|r| template.render(r["messages"].as_array()?, &options).ok())
                .map(|r| r.text.len())
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(format!("encode fast BPE ({tokens} tokens)"), |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| tok.encode(t, false).map_or(0, |ids| ids.len()))
                .sum::<usize>()
        })
    });
    // 10,000 lengths drawn from these rows' lengths (cycled), packed into rows of 1,024.
    let many: Vec<usize> = lengths.iter().copied().cycle().take(10_000).collect();
    g.throughput(Throughput::Elements(many.len() as u64));
    g.bench_function("pack bfd (10,000 examples into 1,024)", |b| {
        b.iter(|| pack(&many, 1024, PackingStrategy::Bfd).len())
    });
    g.finish();
}

fn data(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = sft_model::rng::SplitMix64::new(seed);
    (0..len)
        .map(|_| (rng.uniform() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

fn model_kernels(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (hidden, vocab) = (576, 49_152);
    let (nh, nkv, d) = (9, 3, 64);
    let mut g = c.benchmark_group("model");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    // The fused loss over 256 trained positions (a row of a few hundred tokens).
    let n = 256;
    let h = Var::from_vec(data(n * hidden, 1, 1.0), (n, hidden), &dev).expect("hidden");
    let w = Tensor::from_vec(data(vocab * hidden, 2, 0.05), (vocab, hidden), &dev).expect("w");
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % vocab as u32).collect();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("loss forward (256 x 49,152)", |b| {
        b.iter(|| sft_model::loss::token_stats(h.as_tensor(), &w, &targets).expect("loss"))
    });
    g.bench_function("loss forward+backward (256 x 49,152)", |b| {
        b.iter(|| {
            let loss = sft_model::loss::token_loss(h.as_tensor(), &w, &targets).expect("loss");
            loss.sum.backward().expect("backward")
        })
    });

    // Attention of one layer over 2 rows of 512 tokens (causal), forward and backward.
    let (rows, t) = (2, 512);
    let ranges = KeyRanges::from_doc_ids(rows, t, &vec![0; rows * t], u32::MAX).expect("ranges");
    let mask = SoftmaxMask::from_ranges(ranges, &dev).expect("mask");
    let q = Var::from_vec(data(rows * nh * t * d, 3, 1.0), (rows, nh, t, d), &dev).expect("q");
    let k = Var::from_vec(data(rows * nkv * t * d, 4, 1.0), (rows, nkv, t, d), &dev).expect("k");
    let v = Var::from_vec(data(rows * nkv * t * d, 5, 1.0), (rows, nkv, t, d), &dev).expect("v");
    let up = Tensor::from_vec(data(rows * nh * t * d, 6, 1.0), (rows, nh, t, d), &dev).expect("up");
    let scale = 1.0 / (d as f64).sqrt();
    g.throughput(Throughput::Elements((rows * t) as u64));
    for fused in [false, true] {
        let name = if fused { "fused" } else { "unfused" };
        let run = |backward: bool| {
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let out = if fused {
                attention(q, k, v, scale, Some(&mask))
            } else {
                attention_unfused(q, k, v, scale, Some(&mask))
            }
            .expect("attention");
            if backward {
                let g = (out * &up).and_then(|x| x.sum_all()).expect("surrogate");
                drop(g.backward().expect("backward"));
            } else {
                drop(out);
            }
        };
        g.bench_function(format!("attention {name} forward (2 x 512)"), |b| {
            b.iter(|| run(false))
        });
        g.bench_function(
            format!("attention {name} forward+backward (2 x 512)"),
            |b| b.iter(|| run(true)),
        );
    }

    // The few-row projection of a decoding step: 8 rows through the MLP's up projection.
    let (m, kk, nn) = (8, hidden, 1536);
    let x = data(m * kk, 7, 1.0);
    let wt = data(nn * kk, 8, 0.05);
    g.throughput(Throughput::Bytes((nn * kk * 4) as u64));
    g.bench_function("skinny_matmul 8 x 576 @ 1536 x 576^T", |b| {
        b.iter_batched(
            || (),
            |_| sft_model::linear::skinny_matmul(&x, &wt, m, kk, nn),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, data_kernels, model_kernels);
criterion_main!(benches);
