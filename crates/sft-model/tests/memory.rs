//! Memory at real lengths: the inference forward records no graph and computes the same
//! values as the training forward; gradient checkpointing gives the same gradients as the
//! full backward; inputs the model cannot take are refused with a clear error.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use sft_model::{Batch, BatchRow, CausalLm, Generate, Llama, LossStats, Mode};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tiny llama (tied head) and the three relatives (untied head and per-head norms,
/// biases, NoPE layers).
fn models() -> Vec<(&'static str, Llama)> {
    let mut out = vec![(
        "tiny-llama",
        Llama::load(
            &root().join("data-samples/models/tiny-llama"),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap(),
    )];
    for name in ["qwen3", "qwen2", "smollm3"] {
        let dir = root().join("tests/fixtures/arch").join(name);
        out.push((name, Llama::load(&dir, DType::F32, &Device::Cpu).unwrap()));
    }
    out
}

fn ids(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    // Few distinct ids, so that tokens repeat and the embedding gradient adds several rows
    // into the same entry (the order of those additions is what must match).
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as usize % vocab.min(40)) as u32
        })
        .collect()
}

/// A padded batch (rows of different lengths, some labels masked) and a packed one.
fn batches(vocab: usize) -> Vec<Vec<BatchRow>> {
    let row = |seed, n: usize| {
        let input = ids(seed, n, vocab);
        let labels = input
            .iter()
            .enumerate()
            .map(|(t, &i)| if t % 5 == 1 { -100 } else { i as i64 })
            .collect();
        BatchRow::single(input, labels)
    };
    let padded = vec![row(1, 23), row(2, 9), row(3, 17)];
    let a = ids(4, 11, vocab);
    let b = ids(5, 7, vocab);
    let c = ids(6, 5, vocab);
    let packed_ids: Vec<u32> = [a, b, c].concat();
    let packed = BatchRow {
        labels: packed_ids.iter().map(|&i| i as i64).collect(),
        input_ids: packed_ids,
        seq_lengths: vec![11, 7, 5],
    };
    vec![padded, vec![packed.clone(), row(7, 20)]]
}

fn batch(model: &Llama, rows: &[BatchRow]) -> Batch {
    Batch::new(rows, 2, model.config.vocab_size, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn the_inference_forward_records_no_op_and_computes_the_same_values() {
    for (name, model) in models() {
        for rows in batches(model.config.vocab_size) {
            let b = batch(&model, &rows);
            let train = model.hidden_states(&b).unwrap();
            let infer = model.hidden_states_in(&b, Mode::Infer).unwrap();
            assert!(
                train.track_op(),
                "{name}: the training forward builds a graph"
            );
            assert!(
                !infer.track_op(),
                "{name}: the inference forward recorded an op"
            );
            assert_eq!(
                values(&train),
                values(&infer),
                "{name}: hidden states differ"
            );
            let logits = model.logits(&b).unwrap();
            assert!(!logits.track_op(), "{name}: logits recorded an op");
            // loss_stats (scoring, evaluation) equals the statistics of the training pass.
            let stats = model.loss_stats(&b).unwrap();
            let loss = model.loss(&b).unwrap();
            assert_eq!(stats, loss.stats, "{name}");
        }
    }
}

#[test]
fn generation_runs_on_detached_weights() {
    let (_, model) = models().remove(0);
    let opts = sft_model::GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let a = model.generate(&[vec![1, 5, 9], vec![3]], &opts).unwrap();
    // The reference: full forwards of the training kind, one token at a time.
    for (prompt, got) in [vec![1u32, 5, 9], vec![3]].iter().zip(&a) {
        let mut seq = prompt.clone();
        for _ in 0..4 {
            let n = seq.len();
            let b = Batch::new(
                &[BatchRow::single(seq.clone(), vec![-100; n])],
                2,
                model.config.vocab_size,
                &Device::Cpu,
            )
            .unwrap();
            let h = model.hidden_states(&b).unwrap();
            let last = h.narrow(1, n - 1, 1).unwrap().squeeze(1).unwrap();
            let logits = last
                .matmul(&model.lm_head_weight().t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let row = &logits[0];
            let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            seq.push(best as u32);
        }
        assert_eq!(got.ids, seq[prompt.len()..].to_vec());
    }
}

#[test]
fn checkpointed_gradients_equal_the_full_backward() {
    for (name, model) in models() {
        for rows in batches(model.config.vocab_size) {
            let b = batch(&model, &rows);
            let scale = 1.0 / 37.0;
            let (s_full, mut g_full) = model.loss_backward(&b, scale, false).unwrap();
            let (s_ckpt, mut g_ckpt) = model.loss_backward(&b, scale, true).unwrap();
            assert_eq!(s_full, s_ckpt, "{name}: statistics differ");
            assert!(s_full.tokens > 0);
            for p in model.params() {
                let full = g_full.remove(p.var.as_tensor());
                let ckpt = g_ckpt.remove(p.var.as_tensor());
                let (Some(full), Some(ckpt)) = (full, ckpt) else {
                    panic!("{name}: {} has no gradient", p.name);
                };
                assert_eq!(full.dims(), p.var.dims(), "{name}: {}", p.name);
                let (full, ckpt) = (values(&full), values(&ckpt));
                assert!(
                    full.iter().any(|&g| g != 0.0),
                    "{name}: {} has an all-zero gradient",
                    p.name
                );
                // Bit for bit, but for the sign of zeros (== treats -0 and 0 alike).
                let differ = full.iter().zip(&ckpt).filter(|(a, b)| a != b).count();
                assert_eq!(differ, 0, "{name}: {} differs in {differ} entries", p.name);
            }
        }
    }
}

#[test]
fn rows_the_model_cannot_attend_over_are_refused_with_a_clear_error() {
    let (_, model) = models().remove(0);
    let max = model.config.max_position_embeddings;
    // One 8k-token row for a model of 2,048 positions: an error, not an abort.
    let long = BatchRow::single(vec![5; 8192], vec![5; 8192]);
    let b = batch(&model, std::slice::from_ref(&long));
    for err in [
        model.loss_stats(&b).unwrap_err().to_string(),
        model
            .loss_backward(&b, 1.0, true)
            .err()
            .unwrap()
            .to_string(),
        model
            .loss_backward(&b, 1.0, false)
            .err()
            .unwrap()
            .to_string(),
        model
            .score(std::slice::from_ref(&long), 8, 2)
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            err.contains("8192 positions") && err.contains(&format!("{max}")),
            "{err}"
        );
    }
    // Packed documents restart their positions: a row longer than the model's positions
    // is fine when each of its documents fits.
    let packed = BatchRow {
        input_ids: vec![5; max + 8],
        labels: vec![5; max + 8],
        seq_lengths: vec![max / 2 + 4; 2],
    };
    let b = batch(&model, &[packed]);
    assert!(model.hidden_states_in(&b, Mode::Infer).is_ok());
    // An empty batch, and a batch of empty rows.
    let err = Batch::new(&[], 2, model.config.vocab_size, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("at least one row"), "{err}");
    let empty = BatchRow::single(vec![], vec![]);
    let err = Batch::new(&[empty], 2, model.config.vocab_size, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("empty rows"), "{err}");
    // Scoring nothing is zero tokens, not an error.
    assert_eq!(model.score(&[], 8, 2).unwrap(), LossStats::default());
}

#[test]
fn scoring_lowers_its_batch_to_fit_the_memory_budget() {
    use sft_model::memory_plan::inference_working_bytes;
    let (_, model) = models().remove(0);
    let rows = batches(model.config.vocab_size).remove(0);
    let longest = rows.iter().map(|r| r.input_ids.len()).max().unwrap();
    let one = inference_working_bytes(&model.config, 1, longest);
    assert!(inference_working_bytes(&model.config, 2, longest) > one);
    let all = model.score_within(&rows, 3, 2, None).unwrap();
    assert_eq!(all.batch_size, 3);
    assert_eq!(all.stats, model.score(&rows, 3, 2).unwrap());
    // Room for one row at a time: the same statistics as batches of one.
    let fitted = model.score_within(&rows, 3, 2, Some(one)).unwrap();
    assert_eq!(fitted.batch_size, 1);
    let by_one = model.score_within(&rows, 1, 2, None).unwrap();
    assert_eq!(fitted.stats, by_one.stats);
    assert_eq!(fitted.stats.tokens, all.stats.tokens);
    assert!((fitted.stats.loss_sum - all.stats.loss_sum).abs() < 1e-3 * all.stats.loss_sum);
    // Not even one row fits: a clear error.
    let err = model
        .score_within(&rows, 3, 2, Some(0))
        .unwrap_err()
        .to_string();
    let shortest = rows.iter().map(|r| r.input_ids.len()).min().unwrap();
    assert!(
        err.contains(&format!("a row of {shortest} tokens")) && err.contains("available"),
        "{err}"
    );
}
