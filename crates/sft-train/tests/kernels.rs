//! The optimizer step's two implementations ([`Kernels`]) agree on the CPU: the fused CPU
//! loops the trainer runs there, and the plain candle-ops path other devices run. Three
//! steps of the step.json fixture (two micro-batches each, so gradients are accumulated,
//! clipped, and AdamW with weight decay) from the tiny model.
//!
//! Tolerance: the two paths round differently (tensor sums of squares, the order of AdamW's
//! f32 products), so losses and gradient norms agree to 1e-6 relative and every weight to
//! 1e-6 absolute (the updates themselves are ~1e-3).

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde_json::Value;
use sft_model::{BatchRow, CausalLm, Llama};
use sft_train::accumulate::GradAccumulator;
use sft_train::optim::{AdamW, AdamWConfig, Kernels};
use sft_train::step::optimizer_step_with;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rows_of(mb: &Value) -> Vec<BatchRow> {
    let ids = mb["input_ids"].as_array().unwrap();
    ids.iter()
        .enumerate()
        .map(|(r, row)| {
            let mask = mb["attention_mask"][r].as_array().unwrap();
            let n = mask.iter().filter(|m| m.as_i64() == Some(1)).count();
            let input: Vec<u32> = row.as_array().unwrap()[..n]
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let labels: Vec<i64> = mb["labels"][r].as_array().unwrap()[..n]
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            BatchRow::single(input, labels)
        })
        .collect()
}

/// Three optimizer steps with `kernels`: (loss, grad norm) per step and the final weights.
fn run(kernels: Kernels) -> (Vec<(f64, f64)>, Vec<Vec<f32>>) {
    let path = root().join("tests/fixtures/train/step.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let micro: Vec<Vec<BatchRow>> = f["micro_batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(rows_of)
        .collect();
    let model = Llama::load(
        &root().join("data-samples/models/tiny-llama"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
    let config = AdamWConfig {
        weight_decay: 0.1,
        ..Default::default()
    };
    let mut opt = AdamW::new(config, &sizes);
    let mut acc = GradAccumulator::new();
    let mut steps = Vec::new();
    for k in 0..3 {
        let r = optimizer_step_with(
            kernels,
            &model,
            &mut opt,
            &mut acc,
            &micro[2 * k..2 * k + 2],
            1e-3,
            0.5,
            2,
        )
        .unwrap()
        .done()
        .unwrap();
        steps.push((r.loss, r.grad_norm));
    }
    let weights = model
        .params()
        .iter()
        .map(|p| p.var.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    (steps, weights)
}

#[test]
fn fused_and_tensor_kernels_agree_on_the_cpu() {
    assert_eq!(Kernels::for_device(&Device::Cpu), Kernels::Fused);
    let (fused_steps, fused) = run(Kernels::Fused);
    let (tensor_steps, tensor) = run(Kernels::Tensors);
    for (k, ((l1, n1), (l2, n2))) in fused_steps.iter().zip(&tensor_steps).enumerate() {
        assert!(
            (l1 - l2).abs() <= 1e-6 * l1.abs(),
            "step {k}: loss {l1} vs {l2}"
        );
        assert!(
            (n1 - n2).abs() <= 1e-6 * n1.abs(),
            "step {k}: norm {n1} vs {n2}"
        );
    }
    let mut worst = 0f32;
    for (a, b) in fused.iter().zip(&tensor) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    println!("weights differ by up to {worst}");
    assert!(worst <= 1e-6, "weights differ by up to {worst}");
}
