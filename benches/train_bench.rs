//! Training throughput of this project's trainer on CPU, on the same shapes as
//! benches/train_trl.py: rows of --seq-len random token ids, --batch-size rows per
//! micro-batch, --grad-accum micro-batches per optimizer step, --steps steps with the first
//! untimed, loss on every token, AdamW at 5e-5, clipping at 1.0, float32.
//!
//!     cargo run --release -p sft-benches --bin train-bench -- [--model DIR] [--seq-len 512]
//!         [--batch-size 1] [--grad-accum 4] [--steps 10] [--seed 42]
//!
//! Without --model, a SmolLM2-135M-shaped llama with seeded random weights.

use std::time::Instant;

use candle_core::{DType, Device};
use sft_model::{BatchRow, CausalLm, Llama, LlamaConfig};
use sft_train::accumulate::GradAccumulator;
use sft_train::optim::{AdamW, AdamWConfig};
use sft_train::step::optimizer_step;

// As in the sft-train binary: the trainer's tensors are large, short-lived allocations, and
// the system allocator hands them back to the kernel each time (a third of the time went to
// page faults).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SMOLLM2_135M: &str = r#"{"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
  "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
  "num_key_value_heads": 3, "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
  "max_position_embeddings": 8192, "tie_word_embeddings": true, "hidden_act": "silu",
  "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "initializer_range": 0.02}"#;

fn main() {
    sft_cli::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let seq_len: usize = get("--seq-len", "512").parse().expect("--seq-len N");
    let batch: usize = get("--batch-size", "1").parse().expect("--batch-size N");
    let accum: usize = get("--grad-accum", "4").parse().expect("--grad-accum N");
    let steps: usize = get("--steps", "10").parse().expect("--steps N");
    let seed: u64 = get("--seed", "42").parse().expect("--seed N");
    let model_dir = get("--model", "");
    let device = Device::Cpu;
    let model = if model_dir.is_empty() {
        let config = LlamaConfig::from_value(serde_json::from_str(SMOLLM2_135M).unwrap()).unwrap();
        Llama::init_random(config, seed, &device).expect("model")
    } else {
        Llama::load(std::path::Path::new(&model_dir), DType::F32, &device).expect("model")
    };
    let vocab = model.config.vocab_size as u64;
    let mut state = seed;
    let mut rand_id = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % vocab) as u32
    };
    let micro: Vec<Vec<BatchRow>> = (0..steps * accum)
        .map(|_| {
            (0..batch)
                .map(|_| {
                    let ids: Vec<u32> = (0..seq_len).map(|_| rand_id()).collect();
                    let labels = ids.iter().map(|&x| x as i64).collect();
                    BatchRow::single(ids, labels)
                })
                .collect()
        })
        .collect();
    let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
    let mut opt = AdamW::new(AdamWConfig::default(), &sizes);
    let mut accumulator = GradAccumulator::new();
    let mut timed_from = None;
    for s in 0..steps {
        let started = Instant::now();
        let r = optimizer_step(
            &model,
            &mut opt,
            &mut accumulator,
            &micro[s * accum..(s + 1) * accum],
            5e-5,
            1.0,
            2,
        )
        .expect("step")
        .done()
        .expect("finite");
        eprintln!(
            "step {} loss {:.4} grad_norm {:.3} {:.2} s",
            s + 1,
            r.loss,
            r.grad_norm,
            started.elapsed().as_secs_f64()
        );
        if s == 0 {
            timed_from = Some(Instant::now());
        }
    }
    let timed_steps = steps.saturating_sub(1).max(1);
    let seconds = timed_from.unwrap().elapsed().as_secs_f64();
    let tokens = (timed_steps * accum * batch * seq_len) as f64;
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0);
    println!(
        "{}",
        serde_json::json!({
            "tool": "sft", "tokens_per_s": tokens / seconds, "seconds_per_step": seconds / timed_steps as f64,
            "seq_len": seq_len, "batch": batch, "grad_accum": accum, "steps": steps,
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "peak_rss_mb": rss, "model": if model_dir.is_empty() { "random SmolLM2-135M shape" } else { model_dir.as_str() },
        })
    );
}
