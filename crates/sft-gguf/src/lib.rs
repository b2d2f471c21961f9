//! Export of a fine-tuned model to GGUF, the file llama.cpp, Ollama, LM Studio and
//! llamafile run: the last step of the flow (... -> train -> evaluate -> **export**).
//!
//! A Hugging Face model folder (config.json, safetensors weights, tokenizer.json,
//! tokenizer_config.json, chat template) becomes one self-contained GGUF file per type
//! asked for, and an Ollama `Modelfile` beside them:
//!
//! ```no_run
//! use sft_gguf::{export, ExportOptions, GgufType};
//! let types = GgufType::parse_list("q4_k_m,q8_0")?;
//! let written = export(
//!     "out/checkpoint-40".as_ref(),
//!     "out/gguf".as_ref(),
//!     &types,
//!     &ExportOptions::default(),
//! )?;
//! for f in &written {
//!     println!("{} {} bytes in {:.1} s", f.path.display(), f.bytes, f.seconds);
//! }
//! # Ok::<(), sft_gguf::GgufError>(())
//! ```
//!
//! What llama.cpp's own tools write is the reference, checked by the tests against files
//! they made (`tests/fixtures/gguf`, for llama, qwen2, qwen3, smollm3, Llama 3 and linear
//! rope scaling): the F32/F16/BF16 files hold the same tensors, bit for bit, and the same
//! metadata as `convert_hf_to_gguf.py --outtype`; the quantised files hold the tensors, bit
//! for bit, that `llama-quantize` makes of the F32 conversion (the same type for every
//! tensor, see [`quant`] for the mixtures), and llama.cpp computes with them exactly what it
//! computes with its own. The differences, all in provenance or explicitness:
//! `general.basename` and `general.quantized_by` are written; `general.name` comes from
//! the folder or the `name` option; `tokenizer.ggml.add_bos_token` and `add_eos_token` are
//! always written (the converter leaves out what the tokenizer does not say, and llama.cpp
//! then falls back to a default of the pre-tokenizer); a model trained with a sliding
//! attention window gets the window as its context length (llama.cpp's llama graph has no
//! window, and is the same model only within it).
//!
//! Architectures: `llama` (Llama, Mistral, SmolLM2), `qwen2`, `qwen3`, `smollm3` (when its
//! NoPE layers are llama.cpp's every-4th pattern); tokenizers: byte-level BPE. Anything
//! else is refused with an error that names it, never written half right.
//!
//! Files are written through a temporary file beside them and renamed into place; one
//! tensor is in memory at a time; nothing is ever written into the model folder.

pub mod arch;
mod error;
mod export;
pub mod format;
mod kquants;
mod modelfile;
pub mod quant;
mod source;
mod tokenizer;
pub mod types;

pub use error::GgufError;
pub use export::{export, export_with_progress, ExportEvent, ExportOptions, Exported};
pub use format::{read_info, read_tensor_bytes, GgufInfo, MetaValue, TensorRecord};
pub use modelfile::MAX_NUM_CTX;
pub use tokenizer::pre_tokenizer_fingerprint;
pub use types::{GgufType, TensorType};
