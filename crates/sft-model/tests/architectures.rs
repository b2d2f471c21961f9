//! The llama relatives against transformers (fixtures and tiny seeded models by
//! tests/fixtures/arch/make_arch_fixtures.py): SmolLM3 (NoPE layers), Qwen3 (per-head query
//! and key norms, head_dim apart from hidden / heads, untied head) and Qwen2 (q/k/v biases).
//! For each: the parameter names, the logits of a padded batch and of a packed row, the
//! loss, a gradient for every parameter, a save/load round trip, and cached generation.

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde_json::Value;
use sft_model::{Batch, BatchRow, CausalLm, Generate, GenerateOptions, Llama, LlamaConfig};

mod common;

const MODELS: [&str; 3] = ["smollm3", "qwen3", "qwen2"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/arch")
        .join(name)
}

fn load(name: &str) -> (Llama, Value) {
    let model = Llama::load(&dir(name), DType::F32, &Device::Cpu).unwrap();
    let text = std::fs::read_to_string(dir(name).join("logits.json")).unwrap();
    (model, serde_json::from_str(&text).unwrap())
}

fn fixture_rows(f: &Value) -> Vec<Vec<u32>> {
    f["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// The fixture's rows with a loss on every next token (as transformers' `labels = ids`).
fn trained_rows(f: &Value) -> Vec<BatchRow> {
    fixture_rows(f)
        .into_iter()
        .map(|ids| {
            let labels = ids.iter().map(|&i| i as i64).collect();
            BatchRow::single(ids, labels)
        })
        .collect()
}

/// Max abs difference between our logits of a row and the fixture's `[T, V]`.
fn max_diff(ours: &[Vec<f32>], expected: &Value) -> f32 {
    let expected = expected.as_array().unwrap();
    assert_eq!(ours.len(), expected.len());
    let mut worst = 0f32;
    for (row, want) in ours.iter().zip(expected) {
        let want = want.as_array().unwrap();
        assert_eq!(row.len(), want.len());
        for (a, b) in row.iter().zip(want) {
            worst = worst.max((a - b.as_f64().unwrap() as f32).abs());
        }
    }
    worst
}

#[test]
fn configs_say_what_differs_from_llama() {
    let smol = LlamaConfig::from_file(&dir("smollm3").join("config.json")).unwrap();
    assert_eq!(smol.rope_layers, [true, true, true, false]);
    assert!(!smol.qk_norm && !smol.attention_bias);
    let qwen3 = LlamaConfig::from_file(&dir("qwen3").join("config.json")).unwrap();
    assert!(qwen3.qk_norm && qwen3.rope_layers.iter().all(|&r| r));
    assert_eq!(qwen3.head_dim, 24);
    let qwen2 = LlamaConfig::from_file(&dir("qwen2").join("config.json")).unwrap();
    assert!(qwen2.attention_bias && !qwen2.qk_norm);
    for c in [&smol, &qwen3, &qwen2] {
        assert_eq!(c.sliding_window, None);
    }
}

#[test]
fn parameters_are_the_ones_transformers_names() {
    for name in MODELS {
        let (model, f) = load(name);
        let mut ours: Vec<&str> = model.params().iter().map(|p| p.name.as_str()).collect();
        ours.sort();
        let theirs: Vec<&str> = f["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(ours, theirs, "{name}");
        let params: usize = model.params().iter().map(|p| p.var.elem_count()).sum();
        assert_eq!(params, model.config.num_parameters(), "{name}");
    }
}

#[test]
fn padded_batch_logits_and_loss_equal_transformers() {
    for name in MODELS {
        let (model, f) = load(name);
        let rows = trained_rows(&f);
        let batch = Batch::new(&rows, 0, model.config.vocab_size, &Device::Cpu).unwrap();
        let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
        for (r, row) in rows.iter().enumerate() {
            let n = row.input_ids.len();
            let diff = max_diff(&logits[r][..n], &f["logits"][r]);
            assert!(diff <= 1e-4, "{name} row {r}: max abs diff {diff}");
        }
        let loss = model.loss(&batch).unwrap();
        let ours = loss.stats.loss_sum / loss.stats.tokens as f64;
        let theirs = f["loss"].as_f64().unwrap();
        assert!(
            ((ours - theirs) / theirs).abs() < 1e-5,
            "{name}: loss {ours} against {theirs}"
        );
    }
}

#[test]
fn packed_row_equals_the_documents_alone() {
    for name in MODELS {
        let (model, f) = load(name);
        let docs = fixture_rows(&f);
        let ids: Vec<u32> = docs.concat();
        let n = ids.len();
        let row = BatchRow {
            input_ids: ids,
            labels: vec![-100; n],
            seq_lengths: docs.iter().map(Vec::len).collect(),
        };
        let batch = Batch::new(&[row], 0, model.config.vocab_size, &Device::Cpu).unwrap();
        let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
        let mut start = 0;
        for (d, doc) in docs.iter().enumerate() {
            let diff = max_diff(&logits[0][start..start + doc.len()], &f["logits"][d]);
            assert!(diff <= 1e-4, "{name} document {d}: max abs diff {diff}");
            start += doc.len();
        }
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    for name in MODELS {
        let (model, f) = load(name);
        let rows = trained_rows(&f);
        let batch = Batch::new(&rows, 0, model.config.vocab_size, &Device::Cpu).unwrap();
        let grads = model.loss(&batch).unwrap().sum.backward().unwrap();
        for p in model.params() {
            let g = grads
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("{name} {}: no gradient", p.name));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{name} {}: {norm}", p.name);
        }
    }
}

#[test]
fn saved_models_load_back_with_the_same_logits_and_config() {
    for name in MODELS {
        let (model, f) = load(name);
        let out = tempfile::tempdir().unwrap();
        model.save(out.path()).unwrap();
        let again = Llama::load(out.path(), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(again.config.rope_layers, model.config.rope_layers);
        assert_eq!(again.config.qk_norm, model.config.qk_norm);
        let rows: Vec<BatchRow> = fixture_rows(&f)
            .into_iter()
            .map(|ids| {
                let n = ids.len();
                BatchRow::single(ids, vec![-100; n])
            })
            .collect();
        let batch = Batch::new(&rows, 0, model.config.vocab_size, &Device::Cpu).unwrap();
        let a = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
        let b = again.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(a, b, "{name}");
    }
}

/// Cached, left-padded generation (NoPE layers and query/key norms on the cached path)
/// equals greedy decoding by full forward passes.
#[test]
fn cached_generation_equals_full_forward_greedy() {
    for name in MODELS {
        let (model, f) = load(name);
        let prompts: Vec<Vec<u32>> = fixture_rows(&f);
        let opts = GenerateOptions {
            max_new_tokens: 5,
            ..Default::default()
        };
        let got = model.generate(&prompts, &opts).unwrap();
        for (p, g) in prompts.iter().zip(&got) {
            assert_eq!(
                common::greedy_by_full_forward(&model, p, 5),
                g.ids,
                "{name}"
            );
        }
    }
}

#[test]
fn what_the_model_code_does_not_implement_is_refused() {
    let base = std::fs::read_to_string(dir("qwen3").join("config.json")).unwrap();
    let base: Value = serde_json::from_str(&base).unwrap();
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        LlamaConfig::from_value(c)
    };
    let err = with("mlp_bias", Value::Bool(true)).unwrap_err();
    assert!(err.0.contains("mlp_bias"), "{err:?}");
    let err = with("attention_bias", Value::Bool(true)).unwrap_err();
    assert!(err.0.contains("attention_bias"), "{err:?}");
    let mut c = base.clone();
    c["use_sliding_window"] = Value::Bool(true);
    c["sliding_window"] = Value::from(8);
    let config = LlamaConfig::from_value(c).unwrap();
    assert_eq!(config.sliding_window, Some(8));
    // A model with that window refuses rows longer than it, naming the limit.
    let model = Llama::init_random(config, 1, &Device::Cpu).unwrap();
    let batch = Batch::new(
        &[BatchRow::single((3..13).collect(), vec![-100; 10])],
        0,
        model.config.vocab_size,
        &Device::Cpu,
    )
    .unwrap();
    let err = model.logits(&batch).unwrap_err().to_string();
    assert!(err.contains("sliding_window of 8"), "{err}");
    // SmolLM3 without the list: every 4th layer is NoPE, as transformers' default.
    let smol = std::fs::read_to_string(dir("smollm3").join("config.json")).unwrap();
    let mut smol: Value = serde_json::from_str(&smol).unwrap();
    smol.as_object_mut().unwrap().remove("no_rope_layers");
    smol["num_hidden_layers"] = Value::from(8);
    let c = LlamaConfig::from_value(smol).unwrap();
    assert_eq!(
        c.rope_layers,
        [true, true, true, false, true, true, true, false]
    );
}
