//! One LoRA optimizer step against TRL + PEFT (fixture by
//! tests/fixtures/lora/make_lora_fixtures.py): from the same base, the same initial A and
//! B and the same batch, the loss, every A/B gradient, the global norm and the updated
//! matrices, with and without gradient checkpointing.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde_json::Value;
use sft_model::lora::read_adapter;
use sft_model::{Batch, BatchRow, CausalLm, Llama};
use sft_train::accumulate::GradAccumulator;
use sft_train::optim::{AdamW, AdamWConfig};
use sft_train::step::optimizer_step;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a - b| over max |b|: the error relative to the tensor's scale.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let s = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
    d as f64 / (s as f64).max(1e-30)
}

/// The base with the fixture's initial adapters, read through an adapter folder as PEFT
/// would write it.
fn model_and_fixture() -> (Llama, Value, HashMap<String, Tensor>) {
    let dir = root().join("tests/fixtures/lora");
    let f: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("step.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("step.safetensors"), &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let initial: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("initial.")?.to_string(), v.clone())))
        .collect();
    candle_core::safetensors::save(&initial, tmp.path().join("adapter_model.safetensors")).unwrap();
    let lora = &f["lora"];
    let config = serde_json::json!({
        "peft_type": "LORA", "r": lora["r"], "lora_alpha": lora["lora_alpha"],
        "lora_dropout": lora["lora_dropout"], "target_modules": lora["target_modules"],
        "base_model_name_or_path": "data-samples/models/tiny-llama",
    });
    std::fs::write(tmp.path().join("adapter_config.json"), config.to_string()).unwrap();
    let adapter = read_adapter(tmp.path()).unwrap();
    let mut model =
        Llama::load_frozen(&root().join("data-samples/models/tiny-llama"), &Device::Cpu).unwrap();
    model.load_adapter(&adapter).unwrap();
    (model, f, tensors)
}

fn rows(f: &Value) -> Vec<BatchRow> {
    let ids = f["input_ids"].as_array().unwrap();
    (0..ids.len())
        .map(|r| {
            let n = f["attention_mask"][r]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m.as_i64() == Some(1))
                .count();
            let input = ids[r].as_array().unwrap()[..n]
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let labels = f["labels"][r].as_array().unwrap()[..n]
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            BatchRow::single(input, labels)
        })
        .collect()
}

fn one_step(checkpointing: bool) {
    let (mut model, f, tensors) = model_and_fixture();
    model.gradient_checkpointing = checkpointing;
    let rows = rows(&f);
    let n: usize = rows.iter().map(BatchRow::trained_tokens).sum();
    // The gradients of loss / trained tokens, as TRL's loss divides.
    let batch = Batch::new(&rows, 2, model.config.vocab_size, &Device::Cpu).unwrap();
    let (_, grads) = model
        .loss_backward(&batch, 1.0 / n as f64, checkpointing)
        .unwrap();
    assert_eq!(model.params().len(), 8);
    for p in model.params() {
        let ours = values(
            grads
                .get(p.var.as_tensor())
                .expect("every adapter gets a gradient"),
        );
        let theirs = values(&tensors[&format!("grad.{}", p.name)]);
        assert!(
            theirs.iter().any(|v| *v != 0.0),
            "{}: the fixture's gradient is zero",
            p.name
        );
        let e = rel(&ours, &theirs);
        assert!(e <= 1e-4, "{}: gradient off by {e:e} (relative)", p.name);
    }
    let before: Vec<Vec<f32>> = model.state_dict().values().map(values).collect();
    let opt_cfg = &f["optimizer"];
    let config = AdamWConfig {
        weight_decay: opt_cfg["weight_decay"].as_f64().unwrap(),
        ..Default::default()
    };
    let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
    let mut opt = AdamW::new(config, &sizes);
    let step = optimizer_step(
        &model,
        &mut opt,
        &mut GradAccumulator::new(),
        &[rows],
        opt_cfg["lr"].as_f64().unwrap(),
        opt_cfg["max_grad_norm"].as_f64().unwrap(),
        2,
    )
    .unwrap()
    .done()
    .unwrap();
    let loss = f["loss"].as_f64().unwrap();
    assert!(
        (step.loss - loss).abs() / loss <= 1e-5,
        "loss {} vs {loss}",
        step.loss
    );
    let norm = f["grad_norm"].as_f64().unwrap();
    assert!(
        (step.grad_norm - norm).abs() / norm <= 1e-4,
        "grad_norm {} vs {norm}",
        step.grad_norm
    );
    for p in model.params() {
        let ours = values(p.var.as_tensor());
        let theirs = values(&tensors[&format!("updated.{}", p.name)]);
        let initial = values(&tensors[&format!("initial.{}", p.name)]);
        assert!(ours != initial, "{} was not updated", p.name);
        let e = rel(&ours, &theirs);
        assert!(
            e <= 1e-4,
            "{}: updated value off by {e:e} (relative)",
            p.name
        );
    }
    // The frozen weights are bit-identical after the step.
    let after: Vec<Vec<f32>> = model.state_dict().values().map(values).collect();
    assert!(before == after, "a frozen weight changed");
}

#[test]
fn one_lora_step_equals_trl_and_peft() {
    one_step(false);
}

#[test]
fn one_lora_step_with_gradient_checkpointing_equals_trl_and_peft() {
    one_step(true);
}
