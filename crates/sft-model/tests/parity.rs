//! The model against transformers (fixtures by tests/fixtures/train/make_train_fixtures.py):
//! logits of a padded batch, a packed row against its documents run alone, the loss, and
//! the backward (every parameter gets a gradient; finite differences agree).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use sft_model::{Batch, BatchRow, CausalLm, Generate, Llama};

mod common;

use common::{floats, ids};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny() -> Llama {
    Llama::load(
        &root().join("data-samples/models/tiny-llama"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/train").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Compares per-position summaries (lse, argmax, head logits, probe logits) of one row.
fn compare_positions(logits: &[Vec<f32>], expected: &Value, probe_ids: &[u32], what: &str) {
    let lse = floats(&expected["lse"]);
    let argmax = ids(&expected["argmax"]);
    assert_eq!(logits.len(), lse.len(), "{what}: positions");
    let mut max_diff = 0f32;
    for (t, row) in logits.iter().enumerate() {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let ours_lse = m + row.iter().map(|z| ((z - m) as f64).exp()).sum::<f64>().ln() as f32;
        max_diff = max_diff.max((ours_lse - lse[t]).abs());
        let head = floats(&expected["head"][t]);
        for (i, h) in head.iter().enumerate() {
            max_diff = max_diff.max((row[i] - h).abs());
        }
        let probe = floats(&expected["probe"][t]);
        for (p, &id) in probe.iter().zip(probe_ids) {
            max_diff = max_diff.max((row[id as usize] - p).abs());
        }
        let ours_argmax = row
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |acc, (i, &z)| if z > acc.1 { (i, z) } else { acc },
            )
            .0;
        assert_eq!(ours_argmax as u32, argmax[t], "{what}: argmax at {t}");
    }
    assert!(max_diff <= 1e-4, "{what}: max abs diff {max_diff} > 1e-4");
}

#[test]
fn padded_batch_logits_equal_transformers() {
    let model = tiny();
    let f = fixture("logits.json");
    let padded = &f["padded"];
    let probe_ids = ids(&padded["probe_ids"]);
    let mut rows = Vec::new();
    for (r, mask) in padded["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let n = ids(mask).iter().filter(|&&m| m == 1).count();
        let input: Vec<u32> = ids(&padded["input_ids"][r])[..n].to_vec();
        rows.push(BatchRow::single(input, vec![-100; n]));
    }
    let batch = Batch::new(&rows, 2, model.config.vocab_size, &Device::Cpu).unwrap();
    let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
    for (r, row) in rows.iter().enumerate() {
        let n = row.input_ids.len();
        compare_positions(
            &logits[r][..n],
            &padded["rows"][r],
            &probe_ids,
            &format!("row {r}"),
        );
    }
}

#[test]
fn packed_row_equals_documents_run_alone() {
    let model = tiny();
    let f = fixture("logits.json");
    let packed = &f["packed"];
    let input = ids(&packed["input_ids"]);
    let lens: Vec<usize> = ids(&packed["seq_lengths"])
        .iter()
        .map(|&l| l as usize)
        .collect();
    let n = input.len();
    let row = BatchRow {
        input_ids: input,
        labels: vec![-100; n],
        seq_lengths: lens,
    };
    let batch = Batch::new(&[row], 2, model.config.vocab_size, &Device::Cpu).unwrap();
    assert_eq!(batch.position_ids, ids(&packed["position_ids"]));
    let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
    compare_positions(&logits[0], packed, &ids(&packed["probe_ids"]), "packed");
}

#[test]
fn loss_equals_transformers() {
    let model = tiny();
    let f = fixture("logits.json");
    let case = &f["loss"];
    let mut rows = Vec::new();
    for (r, mask) in case["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let n = ids(mask).iter().filter(|&&m| m == 1).count();
        let input = ids(&case["input_ids"][r])[..n].to_vec();
        let labels: Vec<i64> = case["labels"][r].as_array().unwrap()[..n]
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        rows.push(BatchRow::single(input, labels));
    }
    let batch = Batch::new(&rows, 2, model.config.vocab_size, &Device::Cpu).unwrap();
    assert_eq!(
        batch.targets.len() as u64,
        case["num_shifted_label_tokens"].as_u64().unwrap()
    );
    let loss = model.loss(&batch).unwrap();
    let mean = loss.sum.to_scalar::<f32>().unwrap() / batch.targets.len() as f32;
    let expected = case["loss"].as_f64().unwrap() as f32;
    assert!(
        (mean - expected).abs() / expected <= 1e-5,
        "loss {mean} vs {expected}"
    );
    assert!((loss.stats.loss_sum as f32 / batch.targets.len() as f32 - expected).abs() <= 1e-4);
}

fn training_batch(model: &Llama) -> Batch {
    let rows = vec![
        BatchRow {
            input_ids: vec![5, 17, 900, 17, 4000, 12, 77, 78, 79, 80],
            labels: vec![-100, -100, 900, 17, 4000, 12, -100, 78, 79, 80],
            seq_lengths: vec![6, 4],
        },
        BatchRow::single(vec![9, 8, 7, 6, 5], vec![-100, 8, 7, 6, 5]),
    ];
    Batch::new(&rows, 2, model.config.vocab_size, &Device::Cpu).unwrap()
}

#[test]
fn every_parameter_receives_a_gradient() {
    let model = tiny();
    let batch = training_batch(&model);
    let loss = model.loss(&batch).unwrap();
    let grads = loss.sum.backward().unwrap();
    for p in model.params() {
        let g = grads
            .get(p.var.as_tensor())
            .unwrap_or_else(|| panic!("{}: no gradient", p.name));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{}: gradient norm {norm}",
            p.name
        );
    }
}

/// Central differences in f64 on a few coordinates of every parameter.
#[test]
fn backward_agrees_with_finite_differences() {
    let dir = root().join("data-samples/models/tiny-llama");
    let model = Llama::load(&dir, DType::F64, &Device::Cpu).unwrap();
    let batch = training_batch(&model);
    let loss = model.loss(&batch).unwrap();
    let grads = loss.sum.backward().unwrap();
    let eps = 1e-5;
    let mut checked = 0;
    for p in model.params() {
        let g = grads
            .get(p.var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let orig = p
            .var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        // The coordinates with the largest gradients, where the signal is clear of noise.
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in order.iter().take(3) {
            let eval = |delta: f64| {
                let mut w = orig.clone();
                w[i] += delta;
                p.var
                    .set(&Tensor::from_vec(w, p.var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                model.loss(&batch).unwrap().sum.to_scalar::<f64>().unwrap()
            };
            let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
            let rel = (numeric - g[i]).abs() / g[i].abs().max(1e-6);
            assert!(
                rel < 1e-4,
                "{}[{i}]: analytic {} numeric {numeric}",
                p.name,
                g[i]
            );
            checked += 1;
        }
        p.var
            .set(&Tensor::from_vec(orig, p.var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    assert_eq!(checked, 3 * model.params().len());
}

/// The fused loss's two backward paths (softmax kept from the forward, or recomputed per
/// chunk) give the same gradients, over more positions than one chunk.
#[test]
fn recomputed_and_cached_loss_gradients_agree() {
    use sft_model::loss::token_loss_with;
    let n = 600;
    let hidden = Tensor::randn(0f32, 1.0, (n, 16), &Device::Cpu).unwrap();
    let weight = Tensor::randn(0f32, 0.5, (300, 16), &Device::Cpu).unwrap();
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7) % 300).collect();
    let grads = |cache: bool| {
        let h = candle_core::Var::from_tensor(&hidden).unwrap();
        let w = candle_core::Var::from_tensor(&weight).unwrap();
        let loss = token_loss_with(h.as_tensor(), w.as_tensor(), &targets, cache).unwrap();
        let g = loss.sum.backward().unwrap();
        let v = |t: &Tensor| {
            g.get(t)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        (loss.stats, v(h.as_tensor()), v(w.as_tensor()))
    };
    let (s1, h1, w1) = grads(true);
    let (s2, h2, w2) = grads(false);
    assert_eq!(s1, s2);
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(diff(&h1, &h2) < 1e-5 && diff(&w1, &w2) < 1e-5);
    assert!(h1.iter().any(|&x| x != 0.0));
}

/// Cached, batched (left-padded) greedy generation equals recomputing the whole sequence
/// each step for each prompt alone.
#[test]
fn cached_batched_generation_equals_naive_greedy() {
    use sft_model::GenerateOptions;
    let model = tiny();
    let prompts = vec![vec![5u32, 900, 17, 4000, 12], vec![9u32, 8]];
    let opts = GenerateOptions {
        max_new_tokens: 6,
        pad_id: 2,
        ..Default::default()
    };
    let batched = model.generate(&prompts, &opts).unwrap();
    for (p, got) in prompts.iter().zip(&batched) {
        let alone = model.generate(std::slice::from_ref(p), &opts).unwrap();
        assert_eq!(&alone[0], got);
        assert_eq!(common::greedy_by_full_forward(&model, p, 6), got.ids);
    }
}

/// Rows that stop early leave the decoding batch (and the KV cache): every prompt's
/// continuation is still the one it gets alone.
#[test]
fn rows_stopping_at_different_steps_keep_their_own_continuations() {
    use sft_model::{GenerateOptions, LlamaConfig};
    // Large random weights over a small vocabulary: continuations that vary from token to
    // token and change with any error in positions, masks or cache rows (the tiny model's
    // greedy output hardly depends on them).
    let config = LlamaConfig::from_value(serde_json::json!({
        "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "initializer_range": 0.5, "max_position_embeddings": 64
    }))
    .unwrap();
    let model = Llama::init_random(config, 11, &Device::Cpu).unwrap();
    let prompts = vec![
        vec![5u32, 9, 17, 40, 12],
        vec![9u32, 8],
        vec![30u32, 31, 32],
    ];
    let free = GenerateOptions {
        max_new_tokens: 8,
        pad_id: 2,
        ..Default::default()
    };
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            model.generate(std::slice::from_ref(p), &free).unwrap()[0]
                .ids
                .clone()
        })
        .collect();
    // Stop at a token one continuation makes early: rows then finish at different steps.
    let stop = alone
        .iter()
        .flat_map(|ids| ids.iter().skip(1))
        .copied()
        .find(|id| alone.iter().filter(|ids| ids.contains(id)).count() < alone.len())
        .expect("some token is not in every continuation");
    let opts = GenerateOptions {
        stop_ids: vec![stop],
        ..free
    };
    let batched = model.generate(&prompts, &opts).unwrap();
    let lengths: Vec<usize> = batched.iter().map(|g| g.ids.len()).collect();
    assert!(
        lengths.iter().any(|&l| l < 8) && lengths.iter().any(|&l| l != lengths[0]),
        "rows should stop at different steps: {lengths:?}"
    );
    for (p, got) in prompts.iter().zip(&batched) {
        let want = model.generate(std::slice::from_ref(p), &opts).unwrap();
        assert_eq!(&want[0], got);
    }
}
