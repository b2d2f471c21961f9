//! Helpers shared by the sft-model integration tests.
#![allow(dead_code)]

use candle_core::Device;
use sft_model::{Batch, BatchRow, CausalLm, Llama};

/// Greedy continuation of `prompt` by `steps` full forward passes (no KV cache, one row, the
/// first maximal logit as torch's argmax): the reference for cached generation.
pub fn greedy_by_full_forward(model: &Llama, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..steps {
        let n = seq.len();
        // One row: nothing is padded, so the pad id does not matter.
        let batch = Batch::new(
            &[BatchRow::single(seq.clone(), vec![-100; n])],
            0,
            model.config.vocab_size,
            &Device::Cpu,
        )
        .unwrap();
        let logits = model.logits(&batch).unwrap().to_vec3::<f32>().unwrap();
        let last = &logits[0][n - 1];
        let best = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b });
        seq.push(best as u32);
    }
    seq.split_off(prompt.len())
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A JSON array of numbers as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
