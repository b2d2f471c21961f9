//! Which ggml type each tensor gets in a file of a given type, and its bytes in that type.
//!
//! The float files are what llama.cpp's converter writes with `--outtype` (norms, biases
//! and other 1-D tensors stay F32). The quantised files are what `llama-quantize` makes
//! of an F32 conversion: `Q8_0` and `Q6_K` for every weight matrix, and the `_M` mixtures,
//! which give `attn_v` and `ffn_down` Q6_K in the first and last eighth of the layers and
//! every third layer between (llama.cpp's `use_more_bits`), and the output matrix (or the
//! token embedding standing in for it in a tied model) Q6_K. A matrix whose rows are not
//! a whole number of blocks falls back as `llama-quantize` falls back: Q4_K -> Q5_0,
//! Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if even that does not fit.
//!
//! The quantisers are ggml's reference quantisers (no importance matrix): candle's ports
//! for Q8_0, Q5_0 and Q5_1, which give ggml's bytes, and our own for the k-quants (module
//! `kquants`), whose candle ports are of an older ggml; run a block of rows at a time on
//! all cores.

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::arch::Role;
use crate::kquants;
use crate::types::{GgufType, TensorType};

/// llama.cpp's choice of layers that get more bits in the `_M` mixtures.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    let (i, n) = (layer as i64, layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type of one tensor of `rows` x `row_len` (`rows` 1 for a 1-D tensor).
pub(crate) fn tensor_type(
    file: GgufType,
    role: Role,
    is_matrix: bool,
    layer: Option<usize>,
    layers: usize,
    row_len: usize,
    tied: bool,
) -> TensorType {
    if role == Role::Small || !is_matrix {
        return TensorType::F32;
    }
    if !file.is_quantized() {
        return file.base();
    }
    let base = file.base();
    let mixture = matches!(file, GgufType::Q4KM | GgufType::Q5KM);
    let chosen = match role {
        Role::Output | Role::TokenEmbd if role == Role::Output || tied => {
            if !row_len.is_multiple_of(base.block_size()) {
                TensorType::Q8_0
            } else if base != TensorType::Q8_0 {
                TensorType::Q6K
            } else {
                base
            }
        }
        Role::AttnV | Role::FfnDown if mixture && use_more_bits(layer.unwrap_or(0), layers) => {
            TensorType::Q6K
        }
        _ => base,
    };
    fall_back(chosen, row_len)
}

/// `llama-quantize`'s fallback for rows that are not whole blocks of the chosen type.
fn fall_back(chosen: TensorType, row_len: usize) -> TensorType {
    if row_len.is_multiple_of(chosen.block_size()) {
        return chosen;
    }
    let next = match chosen {
        TensorType::Q4K => TensorType::Q5_0,
        TensorType::Q5K => TensorType::Q5_1,
        TensorType::Q6K => TensorType::Q8_0,
        other => other,
    };
    if row_len.is_multiple_of(next.block_size()) {
        next
    } else {
        TensorType::F16
    }
}

/// Rows quantised per task: enough to share the work, few enough to keep each task's
/// buffer small.
const ROWS_PER_TASK: usize = 64;

/// The bytes of `values` (`rows` x `row_len`, row-major) in type `t`.
pub(crate) fn encode(
    values: &[f32],
    rows: usize,
    row_len: usize,
    t: TensorType,
) -> candle_core::Result<Vec<u8>> {
    match t {
        TensorType::F32 => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        TensorType::F16 => Ok(values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect()),
        TensorType::BF16 => Ok(values
            .iter()
            .flat_map(|v| bf16_round(*v).to_le_bytes())
            .collect()),
        TensorType::Q4K | TensorType::Q5K | TensorType::Q6K => {
            let block = match t {
                TensorType::Q4K => kquants::q4k_block,
                TensorType::Q5K => kquants::q5k_block,
                _ => kquants::q6k_block,
            };
            let chunks: Vec<Vec<u8>> = values
                .par_chunks(ROWS_PER_TASK * row_len)
                .map(|chunk| {
                    let mut out = Vec::with_capacity(t.bytes_for(chunk.len()));
                    for b in chunk.chunks_exact(kquants::QK_K) {
                        block(b, &mut out);
                    }
                    out
                })
                .collect();
            Ok(chunks.concat())
        }
        _ => {
            let chunks: Vec<Vec<u8>> = values
                .par_chunks(ROWS_PER_TASK * row_len)
                .map(|chunk| {
                    let n = chunk.len() / row_len;
                    let tensor = Tensor::from_slice(chunk, (n, row_len), &Device::Cpu)?;
                    let q = QTensor::quantize(&tensor, t.candle())?;
                    Ok(q.data()?.into_owned())
                })
                .collect::<candle_core::Result<_>>()?;
            let out = chunks.concat();
            debug_assert_eq!(out.len(), t.bytes_for(rows * row_len));
            Ok(out)
        }
    }
}

/// f32 -> bf16 rounding to nearest even, NaN kept a NaN (what `half` and the converter's
/// numpy code both do).
fn bf16_round(v: f32) -> half::bf16 {
    half::bf16::from_f32(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        // 32 layers: 0-3, 28-31, and every third from 6.
        let picked: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        // 2 layers: n/8 = 0, 7n/8 = 1: only the last; (0 - 0) % 3 != 2.
        let picked: Vec<usize> = (0..2).filter(|&i| use_more_bits(i, 2)).collect();
        assert_eq!(picked, vec![1]);
    }

    #[test]
    fn mixtures_and_fallbacks() {
        let t = |f, role, layer, row_len, tied| {
            tensor_type(f, role, true, Some(layer), 32, row_len, tied)
        };
        assert_eq!(
            t(GgufType::Q4KM, Role::AttnV, 0, 4096, false),
            TensorType::Q6K
        );
        assert_eq!(
            t(GgufType::Q4KM, Role::AttnV, 4, 4096, false),
            TensorType::Q4K
        );
        assert_eq!(
            t(GgufType::Q4KM, Role::AttnQ, 0, 4096, false),
            TensorType::Q4K
        );
        assert_eq!(
            t(GgufType::Q5KM, Role::FfnDown, 31, 4096, false),
            TensorType::Q6K
        );
        assert_eq!(
            t(GgufType::Q4KM, Role::Output, 0, 4096, false),
            TensorType::Q6K
        );
        assert_eq!(
            t(GgufType::Q4KM, Role::TokenEmbd, 0, 4096, false),
            TensorType::Q4K
        );
        assert_eq!(
            t(GgufType::Q4KM, Role::TokenEmbd, 0, 4096, true),
            TensorType::Q6K
        );
        assert_eq!(
            t(GgufType::Q8_0, Role::TokenEmbd, 0, 4096, true),
            TensorType::Q8_0
        );
        // Rows of 576 (SmolLM2-135M) are not whole 256-blocks.
        assert_eq!(
            t(GgufType::Q4KM, Role::AttnQ, 4, 576, false),
            TensorType::Q5_0
        );
        assert_eq!(
            t(GgufType::Q5KM, Role::AttnQ, 4, 576, false),
            TensorType::Q5_1
        );
        assert_eq!(
            t(GgufType::Q6K, Role::AttnQ, 4, 576, false),
            TensorType::Q8_0
        );
        assert_eq!(
            t(GgufType::Q4KM, Role::TokenEmbd, 0, 576, true),
            TensorType::Q8_0
        );
        assert_eq!(
            t(GgufType::Q8_0, Role::AttnQ, 4, 48, false),
            TensorType::F16
        );
        assert_eq!(
            tensor_type(GgufType::Q4KM, Role::Small, false, Some(0), 32, 4096, false),
            TensorType::F32
        );
        assert_eq!(
            t(GgufType::BF16, Role::AttnQ, 0, 48, false),
            TensorType::BF16
        );
    }

    #[test]
    fn quantised_rows_are_whole_blocks_in_order() {
        let rows = 130;
        let values: Vec<f32> = (0..rows * 256)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        for t in [TensorType::Q8_0, TensorType::Q5_0, TensorType::Q5_1] {
            let parallel = encode(&values, rows, 256, t).unwrap();
            let whole = QTensor::quantize(
                &Tensor::from_slice(&values, (rows, 256), &Device::Cpu).unwrap(),
                t.candle(),
            )
            .unwrap();
            assert_eq!(parallel, whole.data().unwrap().into_owned(), "{t}");
        }
        for (t, block) in [
            (
                TensorType::Q4K,
                kquants::q4k_block as fn(&[f32], &mut Vec<u8>),
            ),
            (TensorType::Q5K, kquants::q5k_block),
            (TensorType::Q6K, kquants::q6k_block),
        ] {
            let parallel = encode(&values, rows, 256, t).unwrap();
            let mut one_by_one = Vec::new();
            for b in values.chunks_exact(256) {
                block(b, &mut one_by_one);
            }
            assert_eq!(parallel, one_by_one, "{t}");
            assert_eq!(parallel.len(), t.bytes_for(values.len()));
        }
    }
}
