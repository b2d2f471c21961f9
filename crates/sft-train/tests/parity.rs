//! The trainer's math against PyTorch + transformers (fixtures by
//! tests/fixtures/train/make_train_fixtures.py): schedules, and three optimizer steps with
//! gradient accumulation, token-weighted loss, clipping, AdamW decay groups and a cosine
//! schedule, from the tiny model's weights.

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde_json::Value;
use sft_model::{BatchRow, CausalLm, Llama};
use sft_train::accumulate::GradAccumulator;
use sft_train::optim::{AdamW, AdamWConfig};
use sft_train::schedule::{Schedule, ScheduleKind};
use sft_train::step::optimizer_step;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/train").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn schedules_equal_transformers() {
    let f = fixture("schedules.json");
    for case in f["schedules"].as_array().unwrap() {
        let kind = ScheduleKind::parse(case["name"].as_str().unwrap()).unwrap();
        let s = Schedule {
            kind,
            base_lr: f["base_lr"].as_f64().unwrap(),
            warmup_steps: case["num_warmup_steps"].as_u64().unwrap() as usize,
            total_steps: case["num_training_steps"].as_u64().unwrap() as usize,
        };
        for (k, lr) in case["lrs"].as_array().unwrap().iter().enumerate() {
            let lr = lr.as_f64().unwrap();
            assert!(
                (s.lr(k) - lr).abs() <= 1e-12,
                "{case}: step {k}: {} vs {lr}",
                s.lr(k)
            );
        }
    }
    // transformers 5: warmup below 1 is a ratio, rounded up; from 1 on, truncated.
    assert_eq!(sft_train::schedule::warmup_steps(0.1, 25), 3);
    assert_eq!(sft_train::schedule::warmup_steps(2.7, 25), 2);
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

fn tiny() -> Llama {
    Llama::load(
        &root().join("data-samples/models/tiny-llama"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

fn micro_batches(f: &Value) -> Vec<Vec<BatchRow>> {
    f["micro_batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(rows_of)
        .collect()
}

/// AdamW with transformers' defaults (betas 0.9/0.999, eps 1e-8) and `weight_decay`.
fn adamw_for(model: &Llama, weight_decay: f64) -> AdamW {
    let config = AdamWConfig {
        weight_decay,
        ..Default::default()
    };
    let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
    AdamW::new(config, &sizes)
}

#[test]
fn three_optimizer_steps_equal_pytorch() {
    three_optimizer_steps(false);
}

/// The same fixture with gradient checkpointing (TRL's default).
#[test]
fn three_optimizer_steps_with_gradient_checkpointing_equal_pytorch() {
    three_optimizer_steps(true);
}

/// Gradient checkpointing changes nothing: the weights after three steps (two micro-batches
/// each) are bit for bit those of the run that keeps the activations.
#[test]
fn checkpointed_steps_give_the_same_weights() {
    let f = fixture("step.json");
    let micro = micro_batches(&f);
    let mut states = Vec::new();
    for checkpointing in [false, true] {
        let mut model = tiny();
        model.gradient_checkpointing = checkpointing;
        let mut opt = adamw_for(&model, 0.1);
        let mut norms = Vec::new();
        for k in 0..3 {
            let r = optimizer_step(
                &model,
                &mut opt,
                &mut GradAccumulator::new(),
                &micro[2 * k..2 * k + 2],
                1e-3,
                1.0,
                2,
            )
            .unwrap()
            .done()
            .unwrap();
            norms.push((r.loss, r.grad_norm));
        }
        // One single-micro-batch step (gradients used where backward left them).
        let r = optimizer_step(
            &model,
            &mut opt,
            &mut GradAccumulator::new(),
            &micro[..1],
            1e-3,
            1.0,
            2,
        )
        .unwrap()
        .done()
        .unwrap();
        norms.push((r.loss, r.grad_norm));
        let weights: Vec<(String, Vec<f32>)> = model
            .state_dict()
            .into_iter()
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        states.push((norms, weights, opt.moments.clone()));
    }
    assert_eq!(states[0].0, states[1].0, "losses and gradient norms differ");
    for ((name, a), (_, b)) in states[0].1.iter().zip(&states[1].1) {
        assert!(a == b, "{name} differs");
    }
    assert!(states[0].2 == states[1].2, "AdamW moments differ");
}

fn three_optimizer_steps(checkpointing: bool) {
    let f = fixture("step.json");
    let hp = &f["hyperparameters"];
    let mut model = tiny();
    model.gradient_checkpointing = checkpointing;
    // transformers' decay groups.
    let decayed: Vec<&str> = f["decay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for p in model.params() {
        assert_eq!(p.decay, decayed.contains(&p.name.as_str()), "{}", p.name);
    }
    let mut opt = adamw_for(&model, hp["weight_decay"].as_f64().unwrap());
    let schedule = Schedule {
        kind: ScheduleKind::Cosine,
        base_lr: hp["learning_rate"].as_f64().unwrap(),
        warmup_steps: hp["num_warmup_steps"].as_u64().unwrap() as usize,
        total_steps: hp["num_training_steps"].as_u64().unwrap() as usize,
    };
    let micro = micro_batches(&f);
    for (k, expected) in f["steps"].as_array().unwrap().iter().enumerate() {
        let lr = schedule.lr(k);
        assert!(rel(lr, expected["lr"].as_f64().unwrap()) <= 1e-12 || lr == 0.0);
        let step = optimizer_step(
            &model,
            &mut opt,
            &mut GradAccumulator::new(),
            &micro[2 * k..2 * k + 2],
            lr,
            1.0,
            2,
        )
        .unwrap()
        .done()
        .unwrap();
        let loss = expected["loss"].as_f64().unwrap();
        let norm = expected["grad_norm"].as_f64().unwrap();
        assert!(
            rel(step.loss, loss) <= 1e-5,
            "step {k}: loss {} vs {loss}",
            step.loss
        );
        assert!(
            rel(step.grad_norm, norm) <= 1e-4,
            "step {k}: grad_norm {} vs {norm}",
            step.grad_norm
        );
        let acc: Vec<f64> = step.ratios.iter().map(|r| r.0).collect();
        let expected_acc: Vec<f64> = expected["micro_batch_mean_token_accuracy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (a, e) in acc.iter().zip(&expected_acc) {
            assert!(
                (a - e).abs() < 1e-6,
                "step {k}: accuracy {acc:?} vs {expected_acc:?}"
            );
        }
        let ent: Vec<f64> = step.ratios.iter().map(|r| r.1).collect();
        let expected_ent: Vec<f64> = expected["micro_batch_entropy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (a, e) in ent.iter().zip(&expected_ent) {
            assert!(
                rel(*a, *e) < 1e-5,
                "step {k}: entropy {ent:?} vs {expected_ent:?}"
            );
        }
    }
    let reference = candle_core::safetensors::load(
        root().join("tests/fixtures/train/step.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let initial = tiny().state_dict();
    let state = model.state_dict();
    let row_ids: Vec<u32> = f["embed_row_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let idx = candle_core::Tensor::from_slice(&row_ids, row_ids.len(), &Device::Cpu).unwrap();
    let mut worst = (0f64, String::new());
    for (name, ours) in &state {
        let (ours, start, theirs) = if name == "model.embed_tokens.weight" {
            (
                ours.index_select(&idx, 0).unwrap(),
                initial[name].index_select(&idx, 0).unwrap(),
                reference["final.embed_rows"].clone(),
            )
        } else {
            (
                ours.clone(),
                initial[name].clone(),
                reference[&format!("final.{name}")].clone(),
            )
        };
        let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (a, s0, b) = (v(&ours), v(&start), v(&theirs));
        // Relative to the size of PyTorch's update of the tensor, so the check is on the
        // optimizer's arithmetic, not on weights that barely moved.
        let update = b
            .iter()
            .zip(&s0)
            .map(|(y, x)| (*y as f64 - *x as f64).abs())
            .fold(0.0, f64::max);
        assert!(update > 0.0, "{name}: PyTorch did not move it");
        let err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .fold(0.0, f64::max)
            / update;
        if err > worst.0 {
            worst = (err, name.clone());
        }
        // The bar: relative error of the updated weights at most 1e-4.
        let scale = b.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
        let weight_err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .fold(0.0, f64::max)
            / scale;
        assert!(
            weight_err <= 1e-4,
            "{name}: weight error {weight_err} relative to its scale"
        );
    }
    eprintln!(
        "largest weight error relative to the update: {} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= 1e-3,
        "largest weight error relative to the update {} in {}",
        worst.0,
        worst.1
    );
}

/// A checkpoint written after three optimizer steps loads back with the same weights, and
/// transformers computed these logits from the same checkpoint
/// (tests/fixtures/train/checkpoint_logits.json, by make_checkpoint_fixture.py). Set
/// SFT_WRITE_CHECKPOINT=DIR to keep the folder for that script.
#[test]
fn saved_checkpoint_loads_back_and_in_transformers() {
    let f = fixture("step.json");
    let hp = &f["hyperparameters"];
    let dir = root().join("data-samples/models/tiny-llama");
    let model = tiny();
    let mut opt = adamw_for(&model, hp["weight_decay"].as_f64().unwrap());
    let micro = micro_batches(&f);
    for k in 0..3 {
        optimizer_step(
            &model,
            &mut opt,
            &mut GradAccumulator::new(),
            &micro[2 * k..2 * k + 2],
            1e-3,
            1.0,
            2,
        )
        .unwrap()
        .done()
        .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("SFT_WRITE_CHECKPOINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("ckpt"));
    sft_train::checkpoint::save_model(&model, &dir, &out).unwrap();
    for name in [
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let back = Llama::load(&out, DType::F32, &Device::Cpu).unwrap();
    for ((name, a), (_, b)) in model.state_dict().iter().zip(back.state_dict().iter()) {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0, "{name} changed on the way through the file");
    }
    let expected_path = root().join("tests/fixtures/train/checkpoint_logits.json");
    if !expected_path.is_file() {
        panic!(
            "{} is missing: run make_checkpoint_fixture.py",
            expected_path.display()
        );
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(expected_path).unwrap()).unwrap();
    let input: Vec<u32> = expected["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let n = input.len();
    let batch = sft_model::Batch::new(
        &[BatchRow::single(input, vec![-100; n])],
        2,
        back.config.vocab_size,
        &Device::Cpu,
    )
    .unwrap();
    let logits = back.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
    let probe: Vec<usize> = expected["probe_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut worst = 0f32;
    for (t, row) in logits[0].iter().enumerate() {
        for (j, &id) in probe.iter().enumerate() {
            let e = expected["probe"][t][j].as_f64().unwrap() as f32;
            worst = worst.max((row[id] - e).abs());
        }
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + row.iter().map(|z| ((z - m) as f64).exp()).sum::<f64>().ln() as f32;
        worst = worst.max((lse - expected["lse"][t].as_f64().unwrap() as f32).abs());
    }
    assert!(worst <= 1e-4, "logits differ from transformers' by {worst}");
}

/// One micro-batch per step (gradients used where backward left them, update in place)
/// equals the same step done by hand on copies.
#[test]
fn single_micro_batch_step_equals_the_update_by_hand() {
    for checkpointing in [false, true] {
        single_micro_batch_step(checkpointing);
    }
}

/// With checkpointing the step's gradients still equal the by-hand full backward's.
fn single_micro_batch_step(checkpointing: bool) {
    let f = fixture("step.json");
    let mut model = tiny();
    model.gradient_checkpointing = checkpointing;
    let reference = tiny();
    let micro = micro_batches(&f);
    let mut opt = adamw_for(&model, 0.1);
    let config = opt.config;
    let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
    let r = optimizer_step(
        &model,
        &mut opt,
        &mut GradAccumulator::new(),
        &micro[..1],
        1e-3,
        0.5,
        2,
    )
    .unwrap()
    .done()
    .unwrap();
    // By hand: mean loss over the batch's trained tokens, backward, clip to 0.5, AdamW step 1.
    let batch =
        sft_model::Batch::new(&micro[0], 2, reference.config.vocab_size, &Device::Cpu).unwrap();
    let loss = reference.loss(&batch).unwrap();
    let grads = (loss.sum / batch.targets.len() as f64)
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<Vec<f32>> = reference
        .params()
        .iter()
        .map(|p| {
            grads
                .get(p.var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    let norm = g
        .iter()
        .flatten()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    assert!(
        (norm - r.grad_norm).abs() / norm < 1e-6,
        "{norm} vs {}",
        r.grad_norm
    );
    let scale = (0.5 / (norm + 1e-6)).min(1.0) as f32;
    let mut moments = AdamW::new(config, &sizes).moments;
    for ((p, g), m) in reference.params().iter().zip(&g).zip(moments.iter_mut()) {
        let mut w: Vec<f32> = p.var.flatten_all().unwrap().to_vec1().unwrap();
        sft_train::optim::adamw_update(config, 1, m, &mut w, g, scale, 1e-3, p.decay);
        let ours: Vec<f32> = model
            .params()
            .iter()
            .find(|q| q.name == p.name)
            .unwrap()
            .var
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(ours, w, "{}", p.name);
    }
}
