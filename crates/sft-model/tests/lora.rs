//! LoRA against Hugging Face PEFT (fixtures by tests/fixtures/lora/make_lora_fixtures.py):
//! an adapter PEFT wrote gives PEFT's logits here, unmerged and merged; our merge of a bf16
//! base equals `merge_and_unload()` bit for bit; an adapter sft-train wrote gives the logits
//! PEFT computed with it; and the model side of training (zero-initialised B is the base
//! model, frozen weights get no gradient, checkpointing with dropout gives the same
//! gradients).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use sft_model::lora::{read_adapter, LoraConfig, Module};
use sft_model::{Batch, BatchRow, CausalLm, Llama};

mod common;

use common::{floats, ids};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_dir() -> PathBuf {
    root().join("data-samples/models/tiny-llama")
}

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/lora").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's padded batch as rows (no labels).
fn rows_of(f: &Value) -> Vec<BatchRow> {
    f["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(r, mask)| {
            let n = ids(mask).iter().filter(|&&m| m == 1).count();
            let input = ids(&f["input_ids"][r])[..n].to_vec();
            BatchRow::single(input, vec![-100; n])
        })
        .collect()
}

/// The largest difference between our logits and the fixture's summaries (lse, the first
/// 16 logits, the probe ids) over every real position; argmaxes must agree.
fn max_diff(model: &Llama, f: &Value, expected: &Value) -> f32 {
    let rows = rows_of(f);
    let probe = ids(&f["probe_ids"]);
    let batch = Batch::new(&rows, 2, model.config.vocab_size, &Device::Cpu).unwrap();
    let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
    let mut worst = 0f32;
    for (r, row) in rows.iter().enumerate() {
        let e = &expected[r];
        for t in 0..row.input_ids.len() {
            let z = &logits[r][t];
            let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + z.iter().map(|v| ((v - m) as f64).exp()).sum::<f64>().ln() as f32;
            worst = worst.max((lse - floats(&e["lse"])[t]).abs());
            for (i, h) in floats(&e["head"][t]).iter().enumerate() {
                worst = worst.max((z[i] - h).abs());
            }
            for (p, &id) in floats(&e["probe"][t]).iter().zip(&probe) {
                worst = worst.max((z[id as usize] - p).abs());
            }
            let argmax = z
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (i, &v)| if v > a.1 { (i, v) } else { a },
                )
                .0;
            assert_eq!(
                argmax as u32,
                ids(&e["argmax"])[t],
                "argmax, row {r} position {t}"
            );
        }
    }
    worst
}

fn with_adapter(dir: &str, dtype_frozen: bool) -> Llama {
    let adapter = read_adapter(&root().join("tests/fixtures/lora").join(dir)).unwrap();
    let mut model = if dtype_frozen {
        Llama::load_frozen(&tiny_dir(), &Device::Cpu).unwrap()
    } else {
        Llama::load(&tiny_dir(), DType::F32, &Device::Cpu).unwrap()
    };
    model.load_adapter(&adapter).unwrap();
    model
}

#[test]
fn a_peft_adapter_gives_peft_logits_unmerged_and_merged() {
    let f = fixture("peft_adapter.json");
    let adapter = read_adapter(&root().join("tests/fixtures/lora/peft_adapter")).unwrap();
    assert_eq!(adapter.config.r, 4);
    assert_eq!(adapter.config.alpha, 8.0);
    assert_eq!(adapter.config.targets, Module::ALL.to_vec());
    assert_eq!(
        adapter.base_model.as_deref(),
        Some("data-samples/models/tiny-llama")
    );
    // The adapter moves the logits far more than the tolerance.
    assert!(f["max_logit_moved_by_adapter"].as_f64().unwrap() > 1e-2);
    // Unmerged, on the base as stored (bf16, widened per projection) and on an f32 base.
    for frozen in [true, false] {
        let model = with_adapter("peft_adapter", frozen);
        let d = max_diff(&model, &f, &f["unmerged"]);
        assert!(d <= 1e-4, "unmerged (frozen base {frozen}): {d}");
    }
    // Merged into f32 weights: PEFT's merge_and_unload() logits.
    let mut model = with_adapter("peft_adapter", false);
    model.merge_adapters().unwrap();
    assert!(model.lora().is_none());
    let d = max_diff(&model, &f, &f["merged"]);
    assert!(d <= 1e-4, "merged: {d}");
    // Without the adapter the base's logits are far from them (the test can fail).
    let base = Llama::load(&tiny_dir(), DType::F32, &Device::Cpu).unwrap();
    assert!(max_diff(&base, &f, &f["base"]) <= 1e-4);
    let rows = rows_of(&f);
    let batch = Batch::new(&rows, 2, base.config.vocab_size, &Device::Cpu).unwrap();
    let a = base.logits(&batch).unwrap();
    let b = model.logits(&batch).unwrap();
    let moved = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    assert!(moved.to_scalar::<f32>().unwrap() > 1e-2);
}

#[test]
fn merging_into_a_bf16_base_equals_peft_bit_for_bit() {
    let mut model = with_adapter("peft_adapter", true);
    model.merge_adapters().unwrap();
    let ours = model.state_dict();
    let path = root().join("tests/fixtures/lora/peft_merged_bf16.safetensors");
    let theirs = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    assert_eq!(theirs.len(), 7);
    for (name, t) in theirs {
        let o = &ours[&name];
        assert_eq!(o.dtype(), DType::BF16, "{name}");
        let a: Vec<f32> = o
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = t
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(differ, 0, "{name}: {differ} of {} values differ", a.len());
    }
}

#[test]
fn an_adapter_sft_train_wrote_gives_the_logits_peft_computed_with_it() {
    let f = fixture("ours_adapter.json");
    assert!(f["max_logit_moved_by_adapter"].as_f64().unwrap() > 1e-3);
    for frozen in [true, false] {
        let model = with_adapter("ours_adapter", frozen);
        let d = max_diff(&model, &f, &f["logits"]);
        assert!(d <= 1e-4, "frozen base {frozen}: {d}");
    }
}

fn training_rows() -> Vec<BatchRow> {
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as u32
    };
    (0..3)
        .map(|r| {
            let n = 9 + 4 * r;
            let ids: Vec<u32> = (0..n).map(|_| 3 + next() % 49000).collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < 2 { -100 } else { t as i64 })
                .collect();
            BatchRow::single(ids, labels)
        })
        .collect()
}

fn lora(dropout: f64) -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout,
        targets: Module::ALL.to_vec(),
        use_rslora: false,
    }
}

#[test]
fn new_adapters_leave_the_model_unchanged_and_only_they_train() {
    let base = Llama::load_frozen(&tiny_dir(), &Device::Cpu).unwrap();
    let before: HashMap<String, Tensor> = base.state_dict().into_iter().collect();
    let rows = training_rows();
    let batch = Batch::new(&rows, 2, base.config.vocab_size, &Device::Cpu).unwrap();
    let plain = base.logits(&batch).unwrap();
    let mut model = Llama::load_frozen(&tiny_dir(), &Device::Cpu).unwrap();
    model.add_lora(&lora(0.0), 1).unwrap();
    // B starts at zero: exactly the base model.
    let same = (plain - model.logits(&batch).unwrap())
        .unwrap()
        .abs()
        .unwrap();
    assert_eq!(same.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    // Trainable: the adapters only, 2 matrices x 7 modules x 2 layers, with PEFT's names.
    let params = model.params();
    assert_eq!(params.len(), 28);
    assert_eq!(
        params[0].name,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    // Base weights stay in the stored dtype.
    assert!(model
        .state_dict()
        .iter()
        .any(|(_, t)| t.dtype() == DType::BF16));
    for checkpointing in [false, true] {
        let (_, grads) = model.loss_backward(&batch, 1.0, checkpointing).unwrap();
        for p in model.params() {
            let g = grads.get(p.var.as_tensor());
            let g = g.unwrap_or_else(|| panic!("{} has no gradient", p.name));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // With B = 0, A's gradient is zero; B's is not.
            if p.name.contains("lora_B") {
                assert!(norm > 0.0, "{}: zero gradient", p.name);
            }
        }
        // No base weight gets a gradient.
        for (name, t) in model.state_dict() {
            assert!(grads.get(&t).is_none(), "{name} got a gradient");
        }
    }
    // The base weights are untouched (bit for bit).
    for (name, t) in model.state_dict() {
        let a = t
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = before[&name]
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(a == b, "{name} changed");
    }
}

#[test]
fn checkpointing_with_dropout_gives_the_same_gradients_and_seeds_matter() {
    let mut model = Llama::load_frozen(&tiny_dir(), &Device::Cpu).unwrap();
    model.add_lora(&lora(0.3), 2).unwrap();
    // Non-zero B, so that A's gradients are not zero either.
    let adapter = model.adapter_state_dict();
    for p in model.params() {
        if p.name.contains("lora_B") {
            let t = Tensor::rand(-0.1f32, 0.1, p.var.shape(), &Device::Cpu).unwrap();
            p.var.set(&t).unwrap();
        }
    }
    assert_eq!(adapter.len(), 28);
    let rows = training_rows();
    let batch = Batch::new(&rows, 2, model.config.vocab_size, &Device::Cpu).unwrap();
    let grads_of = |seed: u64, checkpointing: bool| -> Vec<Vec<f32>> {
        model.set_dropout_seed(seed);
        let (_, g) = model.loss_backward(&batch, 1.0, checkpointing).unwrap();
        model
            .params()
            .iter()
            .map(|p| {
                g.get(p.var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect()
    };
    let full = grads_of(5, false);
    let ckpt = grads_of(5, true);
    for (i, (a, b)) in full.iter().zip(&ckpt).enumerate() {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max).max(1e-12);
        assert!(
            d <= 1e-5 * scale.max(1.0),
            "{}: {d}",
            model.params()[i].name
        );
    }
    // Another dropout seed draws other masks: other gradients.
    let other = grads_of(6, false);
    assert_ne!(full, other);
    // And inference applies no dropout: logits do not depend on the seed.
    model.set_dropout_seed(1);
    let a = model.logits(&batch).unwrap();
    model.set_dropout_seed(2);
    let b = model.logits(&batch).unwrap();
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn adapters_round_trip_through_the_peft_folder() {
    let mut model = Llama::load_frozen(&tiny_dir(), &Device::Cpu).unwrap();
    let mut cfg = lora(0.05);
    cfg.targets = vec![Module::Q, Module::V, Module::Down];
    cfg.use_rslora = true;
    model.add_lora(&cfg, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save_adapter(dir.path(), "some/base").unwrap();
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["base_model_name_or_path"], "some/base");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8);
    assert_eq!(config["use_rslora"], true);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    let back = read_adapter(dir.path()).unwrap();
    assert_eq!(back.config, cfg);
    let mut again = Llama::load_frozen(&tiny_dir(), &Device::Cpu).unwrap();
    again.load_adapter(&back).unwrap();
    for ((n1, a), (n2, b)) in model
        .adapter_state_dict()
        .iter()
        .zip(again.adapter_state_dict().iter())
    {
        assert_eq!(n1, n2);
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{n1}");
    }
}

#[test]
fn adapters_that_do_not_fit_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/lora/peft_adapter");
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    let config_path = dir.path().join("adapter_config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let with = |key: &str, value: Value| {
        let mut v: Value = serde_json::from_str(&original).unwrap();
        v[key] = value;
        std::fs::write(&config_path, v.to_string()).unwrap();
        read_adapter(dir.path()).err().map(|e| e.to_string())
    };
    let err = with("use_dora", Value::Bool(true)).unwrap();
    assert!(
        err.contains("DoRA") && err.contains("adapter_config.json"),
        "{err}"
    );
    let err = with("r", Value::from(8)).unwrap();
    assert!(err.contains("r = 8"), "{err}");
    let err = with("peft_type", Value::from("IA3")).unwrap();
    assert!(err.contains("only LoRA"), "{err}");
    assert!(with("lora_alpha", Value::from(8)).is_none());
    // An adapter of another model: the shapes say so.
    let mut other = Llama::init_random(
        {
            let mut c = sft_model::LlamaConfig::from_file(&tiny_dir().join("config.json")).unwrap();
            c.hidden_size = 32;
            c.head_dim = 8;
            c
        },
        1,
        &Device::Cpu,
    )
    .unwrap();
    let err = other
        .load_adapter(&read_adapter(dir.path()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("another base model"), "{err}");
}
