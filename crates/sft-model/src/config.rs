//! `config.json`: what every architecture's config tells the rest of the toolkit
//! ([`ModelConfig`], [`Dims`]), and the llama family's ([`LlamaConfig`]), in both the
//! transformers 4 layout (`rope_theta` and `rope_scaling` at the top level) and the
//! transformers 5 layout (`rope_parameters`).

use std::path::Path;

use serde_json::{Map, Value};

pub use crate::rope::RopeScaling;
use crate::ModelError;

/// The sizes of a decoder the memory plan ([`crate::memory_plan`]) and LoRA's shapes are
/// computed from: a stack of attention (`num_attention_heads` query heads,
/// `num_key_value_heads` key/value heads of `head_dim`) and MLP (`intermediate_size` wide)
/// layers over a residual stream of `hidden_size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dims {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// Floats per token a layer's training forward keeps beyond the plain decoder's
    /// (per-head query/key norms, projection biases).
    pub extra_layer_floats: usize,
}

impl Dims {
    /// Width of the queries (`heads x head_dim`).
    pub fn q_width(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of the keys and of the values.
    pub fn kv_width(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }
}

/// What the rest of the toolkit reads from a model's `config.json`, whatever its
/// architecture.
pub trait ModelConfig: std::fmt::Debug + Send + Sync {
    /// config.json's `model_type` ("llama", "qwen3"...).
    fn model_type(&self) -> &str;
    fn vocab_size(&self) -> usize;
    fn hidden_size(&self) -> usize;
    fn num_hidden_layers(&self) -> usize;
    /// Every parameter (transformers' `num_parameters()`), the tied head counted once.
    fn num_parameters(&self) -> usize;
    fn bos_token_id(&self) -> Option<u32>;
    fn eos_token_ids(&self) -> &[u32];
    fn pad_token_id(&self) -> Option<u32>;
    /// The file as read.
    fn raw(&self) -> &Map<String, Value>;
    /// The sizes the memory plan works from.
    fn dims(&self) -> Dims;
    /// The sizes a checkpoint must share with the model it resumes (config.json's names).
    fn sizes(&self) -> Vec<(&'static str, usize)>;

    /// Parameters outside the token embedding (transformers'
    /// `num_parameters(exclude_embeddings=True)`): with tied embeddings the output
    /// projection is the embedding and is not counted either.
    fn non_embedding_parameters(&self) -> usize {
        self.num_parameters() - self.vocab_size() * self.hidden_size()
    }

    /// The token that pads a batch's shorter rows (never attended to, never trained):
    /// config.json's `pad_token_id`, else the tokenizer's pad token, else the first EOS,
    /// else 0.
    fn pad_id(&self, tokenizer_pad: Option<u32>) -> u32 {
        self.pad_token_id()
            .or(tokenizer_pad)
            .or(self.eos_token_ids().first().copied())
            .unwrap_or(0)
    }
}

/// The architecture facts the model code needs, read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// Per layer, whether RoPE applies (SmolLM3's NoPE layers do without; all others use it).
    pub rope_layers: Vec<bool>,
    /// Qwen3: RMSNorm over each head's queries and keys (`q_norm`, `k_norm`) before RoPE.
    pub qk_norm: bool,
    /// The attention window, where the config sets one (mistral's `sliding_window`, or
    /// qwen2/qwen3/smollm3 with `use_sliding_window`): rows longer than it are refused, since
    /// the model code attends to every earlier position.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// The file as read, so that a saved checkpoint keeps every key we do not interpret.
    pub raw: Map<String, Value>,
}

/// Model types whose checkpoints have llama's parameter names and forward, with the
/// differences of each: q/k/v biases (qwen2), per-head query/key norms (qwen3), layers
/// without RoPE (smollm3).
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "smollm3"];

impl LlamaConfig {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            ModelError::config(path, format!("not valid JSON: {e}"), "check the file")
        })?;
        Self::from_value(value).map_err(|(msg, hint)| ModelError::config(path, msg, hint))
    }

    pub fn from_value(value: Value) -> Result<Self, (String, String)> {
        let Value::Object(raw) = value else {
            return Err(("is not a JSON object".into(), "".into()));
        };
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("llama")
            .to_string();
        if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err((
                format!("model_type \"{model_type}\" is not supported"),
                format!(
                    "the trainer implements the llama family ({})",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            ));
        }
        let usize_key = |key: &str| -> Result<usize, (String, String)> {
            raw.get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| {
                    (
                        format!("field \"{key}\" is missing or not a whole number"),
                        "a llama config.json names it".to_string(),
                    )
                })
        };
        let hidden_size = usize_key("hidden_size")?;
        let num_attention_heads = usize_key("num_attention_heads")?;
        let num_key_value_heads = raw
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(num_attention_heads);
        let head_dim = raw
            .get("head_dim")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || num_attention_heads % num_key_value_heads != 0
        {
            return Err((
                format!(
                    "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
                ),
                "grouped-query attention needs whole groups".into(),
            ));
        }
        if head_dim % 2 != 0 {
            return Err((
                format!("head_dim {head_dim} is odd"),
                "RoPE needs an even head_dim".into(),
            ));
        }
        let act = raw
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("silu");
        if act != "silu" {
            return Err((
                format!("hidden_act \"{act}\" is not supported"),
                "llama-family models use silu".into(),
            ));
        }
        // transformers 5 nests rope settings in `rope_parameters`; 4 keeps them at the top.
        let rope = raw.get("rope_parameters").and_then(Value::as_object);
        let rope_theta = rope
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| raw.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0);
        let scaling = rope.or_else(|| raw.get("rope_scaling").and_then(Value::as_object));
        let rope_scaling = match scaling {
            None => RopeScaling::Default,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let f = |k: &str| -> Result<f64, (String, String)> {
                    s.get(k).and_then(Value::as_f64).ok_or_else(|| {
                        (
                            format!("rope scaling \"{kind}\" lacks \"{k}\""),
                            String::new(),
                        )
                    })
                };
                match kind {
                    "default" => RopeScaling::Default,
                    "linear" => RopeScaling::Linear {
                        factor: f("factor")?,
                    },
                    "llama3" => RopeScaling::Llama3 {
                        factor: f("factor")?,
                        low_freq_factor: f("low_freq_factor")?,
                        high_freq_factor: f("high_freq_factor")?,
                        original_max_position_embeddings: f("original_max_position_embeddings")?,
                    },
                    other => {
                        return Err((
                            format!("rope_type \"{other}\" is not supported"),
                            "supported: default, linear, llama3".into(),
                        ))
                    }
                }
            }
        };
        let ids = |key: &str| -> Vec<u32> {
            match raw.get(key) {
                Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|v| v as u32)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let default_bias = model_type == "qwen2";
        let num_hidden_layers = usize_key("num_hidden_layers")?;
        let rope_layers = if model_type == "smollm3" {
            match raw.get("no_rope_layers") {
                // transformers' name: 1 where the layer uses RoPE, 0 for a NoPE layer.
                Some(Value::Array(flags)) => {
                    let flags: Vec<bool> = flags
                        .iter()
                        .filter_map(Value::as_u64)
                        .map(|v| v != 0)
                        .collect();
                    if flags.len() != num_hidden_layers {
                        return Err((
                            format!(
                                "no_rope_layers has {} entries for {num_hidden_layers} layers",
                                flags.len()
                            ),
                            "it needs one 0 or 1 per layer".into(),
                        ));
                    }
                    flags
                }
                _ => {
                    // transformers' default: every `no_rope_layer_interval`-th layer is NoPE.
                    let every = raw
                        .get("no_rope_layer_interval")
                        .and_then(Value::as_u64)
                        .unwrap_or(4)
                        .max(1) as usize;
                    (0..num_hidden_layers)
                        .map(|i| (i + 1) % every != 0)
                        .collect()
                }
            }
        } else {
            vec![true; num_hidden_layers]
        };
        let window = raw
            .get("sliding_window")
            .and_then(Value::as_u64)
            .map(|v| v as usize);
        let uses_window = match model_type.as_str() {
            "mistral" => true,
            "qwen2" | "qwen3" | "smollm3" => raw
                .get("use_sliding_window")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            _ => false,
        };
        let attention_bias = raw
            .get("attention_bias")
            .and_then(Value::as_bool)
            .unwrap_or(default_bias);
        if attention_bias && matches!(model_type.as_str(), "qwen3" | "smollm3" | "llama") {
            return Err((
                format!("attention_bias with model_type \"{model_type}\" is not supported"),
                "its attention output projection would need a bias too; only qwen2's q/k/v biases are implemented".into(),
            ));
        }
        let mlp_bias = raw
            .get("mlp_bias")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if mlp_bias {
            return Err((
                "mlp_bias is not supported".into(),
                "the MLP projections are implemented without biases".into(),
            ));
        }
        Ok(Self {
            vocab_size: usize_key("vocab_size")?,
            hidden_size,
            intermediate_size: usize_key("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(2048) as usize,
            tie_word_embeddings: raw
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attention_bias,
            mlp_bias,
            rope_layers,
            qk_norm: model_type == "qwen3",
            sliding_window: window.filter(|_| uses_window),
            bos_token_id: ids("bos_token_id").first().copied(),
            eos_token_ids: ids("eos_token_id"),
            pad_token_id: ids("pad_token_id").first().copied(),
            model_type,
            raw,
        })
    }

    /// The config as saved with a checkpoint: the original keys, with the dtype we wrote.
    pub fn to_saved_json(&self, dtype: &str) -> Value {
        let mut raw = self.raw.clone();
        raw.insert("dtype".into(), Value::from(dtype));
        if raw.contains_key("torch_dtype") {
            raw.insert("torch_dtype".into(), Value::from(dtype));
        }
        Value::Object(raw)
    }

    /// Rotary inverse frequencies, in f32 as transformers computes them.
    pub fn inv_freq(&self) -> Vec<f32> {
        crate::rope::inv_freq(self.head_dim, self.rope_theta, &self.rope_scaling)
    }

    /// Every parameter (transformers' `num_parameters()`), the tied head counted once.
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let attn = h * q + 2 * h * kv + q * h + if self.attention_bias { q + 2 * kv } else { 0 };
        let mlp = 3 * h * self.intermediate_size;
        let qk_norm = if self.qk_norm { 2 * self.head_dim } else { 0 };
        let layer = attn + mlp + 2 * h + qk_norm;
        let embed = self.vocab_size * h;
        embed
            + self.num_hidden_layers * layer
            + h
            + if self.tie_word_embeddings { 0 } else { embed }
    }
}

impl ModelConfig for LlamaConfig {
    fn model_type(&self) -> &str {
        &self.model_type
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    fn num_hidden_layers(&self) -> usize {
        self.num_hidden_layers
    }
    fn num_parameters(&self) -> usize {
        LlamaConfig::num_parameters(self)
    }
    fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }
    fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }
    fn pad_token_id(&self) -> Option<u32> {
        self.pad_token_id
    }
    fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
    fn dims(&self) -> Dims {
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        Dims {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            // Qwen3's normed queries and keys, qwen2's biased projections.
            extra_layer_floats: if self.qk_norm { q + kv } else { 0 }
                + if self.attention_bias { q + 2 * kv } else { 0 },
        }
    }
    fn sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ]
    }
}
