//! Trainable causal LMs on candle: the model of the flow (... -> prepare ->
//! **train / evaluate**), used by `sft-train` and `sft-eval`, knowing nothing of datasets.
//!
//! Callers see a model as a [`CausalLm`] with a [`ModelConfig`]; [`registry`] builds the
//! right implementation from a folder's `config.json` ([`load`], [`load_frozen`],
//! [`load_merged`]). The llama family ([`llama`]: llama, mistral, qwen2, qwen3, smollm3) is
//! the implementation there is today.
//!
//! candle's stock LLMs cannot be trained as shipped (their fused ops record no backward,
//! they take a scalar position offset and return only the last position), so this crate
//! has its own model code: Hugging Face parameter names, RoPE driven by per-token position
//! ids, a block-diagonal causal mask for packed rows, and a masked cross-entropy that never
//! materialises the whole vocabulary's logits for a row ([`loss`]).

pub mod attention;
pub mod batch;
pub mod config;
pub mod device;
pub mod float;
pub mod generate;
pub mod kv_cache;
pub mod linear;
pub mod llama;
pub mod locate;
pub mod lora;
pub mod loss;
pub mod mask;
pub mod memory_plan;
pub mod mlp;
pub mod model;
pub mod norm;
pub mod ops;
pub mod param;
pub mod registry;
pub mod rng;
pub mod rope;
pub mod weights;

use std::path::{Path, PathBuf};

pub use batch::{Batch, BatchRow};
pub use config::{Dims, LlamaConfig, ModelConfig};
pub use generate::{Generate, GenerateOptions, Generation};
pub use kv_cache::KvCache;
pub use llama::Llama;
pub use lora::LoraConfig;
pub use loss::{LossStats, TokenLoss};
pub use model::{Architecture, CausalLm, Scored};
pub use param::{Mode, Param};
pub use registry::{init_random, load, load_frozen, load_merged, read_config};

/// Errors of loading, running and saving a model. Each names the file it concerns.
#[derive(Debug)]
pub enum ModelError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Config {
        path: PathBuf,
        message: String,
        hint: String,
    },
    Weights {
        path: PathBuf,
        message: String,
        hint: String,
    },
    Candle(candle_core::Error),
    Input(String),
    /// No model folder by that name, here or in the local Hugging Face cache.
    NotFound {
        name: String,
        message: String,
        hint: String,
    },
    /// Not a local folder, and the Hub could not give it (private, gated, missing, offline).
    Hub {
        name: String,
        source: Box<sft_hub::HubError>,
    },
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn config(path: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Config {
            path: path.to_path_buf(),
            message: message.into(),
            hint: hint.into(),
        }
    }
    pub fn weights(path: &Path, message: String) -> Self {
        Self::Weights {
            path: path.to_path_buf(),
            message,
            hint: String::new(),
        }
    }
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Config {
                path,
                message,
                hint,
            }
            | Self::Weights {
                path,
                message,
                hint,
            } => {
                write!(f, "{}: {message}", path.display())?;
                if !hint.is_empty() {
                    write!(f, "\n  hint: {hint}")?;
                }
                Ok(())
            }
            Self::NotFound {
                name,
                message,
                hint,
            } => {
                write!(f, "{name}: {message}")?;
                if !hint.is_empty() {
                    write!(f, "\n  hint: {hint}")?;
                }
                Ok(())
            }
            Self::Hub { name, source } => {
                write!(
                    f,
                    "{name}: no local folder of that name; as a Hub model id: {source}"
                )
            }
            Self::Candle(e) => write!(f, "tensor error: {e}"),
            Self::Input(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(e)
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;
