//! The architectures exported, as llama.cpp knows them: the `general.architecture` each
//! `model_type` becomes, the hyperparameter keys its loader reads, the GGUF name of every
//! Hugging Face tensor, and the row order llama.cpp's RoPE expects of q/k weights.
//!
//! What llama.cpp's converter (`convert_hf_to_gguf.py`) writes is the reference: the same
//! keys with the same types, the same tensor names, shapes and bytes.

use std::path::Path;

use sft_model::config::{LlamaConfig, RopeScaling};

use crate::format::MetaValue;
use crate::GgufError;

/// A llama.cpp architecture this crate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama`: Llama, Mistral (without a sliding window), SmolLM2, TinyLlama.
    Llama,
    Qwen2,
    Qwen3,
    /// `smollm3`: llama with every 4th layer NoPE, which llama.cpp hard-codes.
    Smollm3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Smollm3 => "smollm3",
        }
    }

    /// Whether llama.cpp's RoPE for this architecture wants q/k rows reordered: the
    /// converter undoes transformers' half-split layout for the `llama` family (whose
    /// graph uses ggml's interleaved "normal" RoPE) and leaves qwen2/qwen3 (NeoX RoPE) as
    /// they are.
    fn permutes_qk(self) -> bool {
        matches!(self, Arch::Llama | Arch::Smollm3)
    }

    /// The architecture of a config, or why it cannot be exported right.
    pub fn of(config: &LlamaConfig, config_path: &Path) -> Result<Arch, GgufError> {
        let arch = match config.model_type.as_str() {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "smollm3" => Arch::Smollm3,
            other => {
                return Err(GgufError::unsupported(
                    config_path,
                    format!("model_type \"{other}\" cannot be exported to GGUF"),
                    "supported: llama, mistral, qwen2, qwen3, smollm3",
                ))
            }
        };
        if arch == Arch::Smollm3 {
            // llama.cpp's smollm3 graph skips RoPE in layers (il + 1) % 4 == 0 whatever the
            // file says; any other pattern would run with RoPE where the model has none.
            let expected: Vec<bool> = (0..config.num_hidden_layers)
                .map(|i| (i + 1) % 4 != 0)
                .collect();
            if config.rope_layers != expected {
                return Err(GgufError::unsupported(
                    config_path,
                    format!(
                        "smollm3 with NoPE layers {:?}: llama.cpp's smollm3 architecture hard-codes every 4th layer as NoPE ({:?}), so the file would run a different model",
                        nope_layers(&config.rope_layers),
                        nope_layers(&expected),
                    ),
                    "only smollm3 models with no_rope_layers in the every-4th pattern can be exported",
                ));
            }
        }
        if matches!(config.rope_scaling, RopeScaling::Llama3 { .. }) && !arch.permutes_qk() {
            return Err(GgufError::unsupported(
                config_path,
                format!(
                    "rope_type \"llama3\" with model_type \"{}\": llama.cpp reads llama3 rope factors only for llama-family architectures",
                    config.model_type
                ),
                "",
            ));
        }
        Ok(arch)
    }
}

fn nope_layers(rope_layers: &[bool]) -> Vec<usize> {
    rope_layers
        .iter()
        .enumerate()
        .filter(|(_, r)| !**r)
        .map(|(i, _)| i)
        .collect()
}

/// What a tensor is, for choosing its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    TokenEmbd,
    Output,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// Norm weights, biases, rope factors: always F32.
    Small,
}

/// How a Hugging Face tensor becomes a GGUF tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapped {
    pub name: String,
    pub role: Role,
    /// The layer, for block tensors.
    pub layer: Option<usize>,
    /// Heads whose rows are reordered for llama.cpp's RoPE (q: all heads, k: the kv heads).
    pub permute_heads: Option<usize>,
}

/// What becomes of a Hugging Face tensor: `Ok(None)` when it is not written (a tied
/// `lm_head`, rotary buffers), an error naming it when it has no GGUF name here.
pub(crate) fn map_tensor(
    hf: &str,
    arch: Arch,
    config: &LlamaConfig,
    file: &Path,
) -> Result<Option<Mapped>, GgufError> {
    let plain = |name: &str, role: Role| {
        Some(Mapped {
            name: name.to_string(),
            role,
            layer: None,
            permute_heads: None,
        })
    };
    match hf {
        "model.embed_tokens.weight" => return Ok(plain("token_embd.weight", Role::TokenEmbd)),
        "model.norm.weight" => return Ok(plain("output_norm.weight", Role::Small)),
        "lm_head.weight" => {
            // llama.cpp uses token_embd.weight when output.weight is absent, as the
            // converter leaves it for tied models.
            return Ok(if config.tie_word_embeddings {
                None
            } else {
                plain("output.weight", Role::Output)
            });
        }
        _ => {}
    }
    let unknown = || {
        GgufError::tensor(
            file,
            hf,
            format!(
                "has no GGUF name for the {} architecture",
                arch.name()
            ),
            "the export knows the llama-family parameter names (model.layers.N.self_attn.q_proj.weight, ...); adapters must be merged first",
        )
    };
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return Err(unknown());
    };
    let Some((layer, part)) = rest.split_once('.') else {
        return Err(unknown());
    };
    let Ok(layer) = layer.parse::<usize>() else {
        return Err(unknown());
    };
    if layer >= config.num_hidden_layers {
        return Err(GgufError::tensor(
            file,
            hf,
            format!(
                "is for layer {layer}, but config.json has num_hidden_layers {}",
                config.num_hidden_layers
            ),
            "the weights and config.json are of different models",
        ));
    }
    if part == "self_attn.rotary_emb.inv_freq" {
        return Ok(None);
    }
    let qwen2_bias = arch == Arch::Qwen2;
    let (suffix, role, permute) = match part {
        "input_layernorm.weight" => ("attn_norm.weight", Role::Small, None),
        "post_attention_layernorm.weight" => ("ffn_norm.weight", Role::Small, None),
        "self_attn.q_proj.weight" => (
            "attn_q.weight",
            Role::AttnQ,
            Some(config.num_attention_heads),
        ),
        "self_attn.k_proj.weight" => (
            "attn_k.weight",
            Role::AttnK,
            Some(config.num_key_value_heads),
        ),
        "self_attn.v_proj.weight" => ("attn_v.weight", Role::AttnV, None),
        "self_attn.o_proj.weight" => ("attn_output.weight", Role::AttnOutput, None),
        "self_attn.q_proj.bias" if qwen2_bias => ("attn_q.bias", Role::Small, None),
        "self_attn.k_proj.bias" if qwen2_bias => ("attn_k.bias", Role::Small, None),
        "self_attn.v_proj.bias" if qwen2_bias => ("attn_v.bias", Role::Small, None),
        "self_attn.q_norm.weight" if arch == Arch::Qwen3 => {
            ("attn_q_norm.weight", Role::Small, None)
        }
        "self_attn.k_norm.weight" if arch == Arch::Qwen3 => {
            ("attn_k_norm.weight", Role::Small, None)
        }
        "mlp.gate_proj.weight" => ("ffn_gate.weight", Role::FfnGate, None),
        "mlp.up_proj.weight" => ("ffn_up.weight", Role::FfnUp, None),
        "mlp.down_proj.weight" => ("ffn_down.weight", Role::FfnDown, None),
        _ => return Err(unknown()),
    };
    Ok(Some(Mapped {
        name: format!("blk.{layer}.{suffix}"),
        role,
        layer: Some(layer),
        permute_heads: permute.filter(|_| arch.permutes_qk()),
    }))
}

/// The tensors a complete model of this config has, by Hugging Face name (to report what
/// is missing rather than let llama.cpp fail on load).
pub(crate) fn required_tensors(arch: Arch, config: &LlamaConfig) -> Vec<String> {
    let mut names = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".to_string(),
    ];
    if !config.tie_word_embeddings {
        names.push("lm_head.weight".into());
    }
    for i in 0..config.num_hidden_layers {
        let mut parts = vec![
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
        ];
        if arch == Arch::Qwen2 && config.attention_bias {
            parts.extend([
                "self_attn.q_proj.bias",
                "self_attn.k_proj.bias",
                "self_attn.v_proj.bias",
            ]);
        }
        if arch == Arch::Qwen3 {
            parts.extend(["self_attn.q_norm.weight", "self_attn.k_norm.weight"]);
        }
        names.extend(parts.into_iter().map(|p| format!("model.layers.{i}.{p}")));
    }
    names
}

/// The shape (PyTorch order) a Hugging Face tensor must have in a model of this config.
pub(crate) fn expected_shape(hf: &str, config: &LlamaConfig) -> Option<Vec<usize>> {
    let (h, v, i) = (
        config.hidden_size,
        config.vocab_size,
        config.intermediate_size,
    );
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let part = match hf.strip_prefix("model.layers.") {
        Some(rest) => rest.split_once('.').map(|(_, p)| p)?,
        None => {
            return match hf {
                "model.embed_tokens.weight" | "lm_head.weight" => Some(vec![v, h]),
                "model.norm.weight" => Some(vec![h]),
                _ => None,
            }
        }
    };
    Some(match part {
        "input_layernorm.weight" | "post_attention_layernorm.weight" => vec![h],
        "self_attn.q_proj.weight" => vec![q, h],
        "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, h],
        "self_attn.o_proj.weight" => vec![h, q],
        "self_attn.q_proj.bias" => vec![q],
        "self_attn.k_proj.bias" | "self_attn.v_proj.bias" => vec![kv],
        "self_attn.q_norm.weight" | "self_attn.k_norm.weight" => vec![config.head_dim],
        "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![i, h],
        "mlp.down_proj.weight" => vec![h, i],
        _ => return None,
    })
}

/// Reorders the rows of a q or k projection (`rows` x `cols`, row-major) from
/// transformers' layout (per head: the first halves of all rotary pairs, then the second
/// halves) to the interleaved pairs llama.cpp's RoPE rotates, as the converter's
/// `LlamaModel.permute` does.
pub(crate) fn permute_qk(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let head_rows = rows / heads;
    let half = head_rows / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let to = h * head_rows + i * 2 + j;
                let from = h * head_rows + j * half + i;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// The `<arch>.*` hyperparameter keys, as the converter writes them for this config (see
/// the module docs of [`crate`] for the one deliberate difference: a sliding window).
pub(crate) fn hyperparameters(
    arch: Arch,
    config: &LlamaConfig,
    context_length: usize,
) -> Vec<(String, MetaValue)> {
    let a = arch.name();
    let key = |k: &str| format!("{a}.{k}");
    let mut out = vec![
        (
            key("block_count"),
            MetaValue::U32(config.num_hidden_layers as u32),
        ),
        (key("context_length"), MetaValue::U32(context_length as u32)),
        (
            key("embedding_length"),
            MetaValue::U32(config.hidden_size as u32),
        ),
        (
            key("feed_forward_length"),
            MetaValue::U32(config.intermediate_size as u32),
        ),
        (
            key("attention.head_count"),
            MetaValue::U32(config.num_attention_heads as u32),
        ),
        (
            key("attention.head_count_kv"),
            MetaValue::U32(config.num_key_value_heads as u32),
        ),
        (
            key("rope.freq_base"),
            MetaValue::F32(config.rope_theta as f32),
        ),
        (
            key("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(config.rms_norm_eps as f32),
        ),
    ];
    if let RopeScaling::Linear { factor } = config.rope_scaling {
        out.push((key("rope.scaling.type"), MetaValue::Str("linear".into())));
        out.push((key("rope.scaling.factor"), MetaValue::F32(factor as f32)));
    }
    // The converter writes the head size only where config.json names it; llama.cpp
    // otherwise takes hidden_size / num_attention_heads, which is then what it is.
    if config.raw.contains_key("head_dim") {
        out.push((
            key("attention.key_length"),
            MetaValue::U32(config.head_dim as u32),
        ));
        out.push((
            key("attention.value_length"),
            MetaValue::U32(config.head_dim as u32),
        ));
    }
    if arch.permutes_qk() {
        out.push((key("vocab_size"), MetaValue::U32(config.vocab_size as u32)));
        out.push((
            key("rope.dimension_count"),
            MetaValue::U32(config.head_dim as u32),
        ));
    }
    out
}

/// Llama 3's rope frequency factors (`rope_freqs.weight`, one per rotary pair), computed in
/// f32 as the converter computes them with torch.
pub(crate) fn llama3_rope_factors(config: &LlamaConfig) -> Option<Vec<f32>> {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings: old,
    } = config.rope_scaling
    else {
        return None;
    };
    let dim = config.head_dim;
    let base = config.rope_theta as f32;
    let low_wavelen = old / low_freq_factor;
    let high_wavelen = old / high_freq_factor;
    Some(
        (0..dim)
            .step_by(2)
            .map(|i| {
                let freq = 1.0f32 / base.powf(i as f32 / dim as f32);
                let wavelen = (2.0 * std::f64::consts::PI) as f32 / freq;
                let wavelen = wavelen as f64;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth = ((old as f32 / wavelen as f32) - low_freq_factor as f32)
                        / (high_freq_factor - low_freq_factor) as f32;
                    1.0 / ((1.0 - smooth) / factor as f32 + smooth)
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_interleaves_the_rotary_halves_of_each_head() {
        // 2 heads of 4 rows, 1 column: per head [a0 a1 b0 b1] -> [a0 b0 a1 b1].
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        assert_eq!(
            permute_qk(&rows, 8, 1, 2),
            vec![0., 2., 1., 3., 4., 6., 5., 7.]
        );
        // Whole rows move.
        let m: Vec<f32> = (0..8).flat_map(|r| [r as f32, -(r as f32)]).collect();
        let p = permute_qk(&m, 8, 2, 2);
        assert_eq!(&p[2..4], &[2., -2.]);
    }
}
