//! Which architecture a `config.json` is: its `model_type` (or, without one, its
//! `architectures` class names) looked up in [`ARCHITECTURES`], and the loaders that build
//! the model a folder's config names. Adding an architecture is a file implementing
//! [`crate::CausalLm`] and [`crate::ModelConfig`] (with its [`Architecture`]) and a line here.

use std::path::Path;

use candle_core::{DType, Device};
use serde_json::{Map, Value};

use crate::config::ModelConfig;
use crate::model::{Architecture, CausalLm};
use crate::{ModelError, Result};

/// Every implemented architecture.
pub const ARCHITECTURES: &[&Architecture] = &[&crate::llama::ARCHITECTURE];

/// Every `model_type` some architecture implements, in registry order.
pub fn supported_model_types() -> Vec<&'static str> {
    ARCHITECTURES
        .iter()
        .flat_map(|a| a.model_types.iter().copied())
        .collect()
}

/// The architecture of a config.json's contents: by `model_type`; without one by the first
/// known class of `architectures`; with neither, llama (as transformers' `LlamaConfig`
/// defaults). Anything else is refused with a message naming it and a hint listing the
/// supported model types.
pub fn architecture(
    config: &Value,
) -> std::result::Result<&'static Architecture, (String, String)> {
    let empty = Map::new();
    let raw = config.as_object().unwrap_or(&empty);
    let refusal = |what: String| {
        (
            what,
            format!(
                "the trainer implements the llama family ({})",
                supported_model_types().join(", ")
            ),
        )
    };
    if let Some(model_type) = raw.get("model_type").and_then(Value::as_str) {
        return ARCHITECTURES
            .iter()
            .copied()
            .find(|a| a.model_types.contains(&model_type))
            .ok_or_else(|| refusal(format!("model_type \"{model_type}\" is not supported")));
    }
    let classes: Vec<&str> = raw
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if classes.is_empty() {
        return Ok(ARCHITECTURES[0]);
    }
    ARCHITECTURES
        .iter()
        .copied()
        .find(|a| classes.iter().any(|c| a.classes.contains(c)))
        .ok_or_else(|| {
            refusal(format!(
                "architectures {classes:?} (and no model_type) is not supported"
            ))
        })
}

/// Reads a model folder's `config.json` as its architecture ([`crate::registry`]) reads it;
/// an architecture this crate does not implement is refused, naming the ones it does.
pub fn read_config(path: &Path) -> Result<Box<dyn ModelConfig>> {
    let raw = read_config_json(path)?;
    let arch =
        architecture(&raw).map_err(|(message, hint)| ModelError::config(path, message, hint))?;
    (arch.config)(raw).map_err(|(message, hint)| ModelError::config(path, message, hint))
}

/// `config.json` as JSON, read from `path`.
pub(crate) fn read_config_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::config(path, format!("not valid JSON: {e}"), "check the file"))
}

/// The architecture of the model folder `dir`, from its `config.json`.
fn architecture_of(dir: &Path) -> Result<&'static Architecture> {
    let path = dir.join("config.json");
    let raw = read_config_json(&path)?;
    architecture(&raw).map_err(|(message, hint)| ModelError::config(&path, message, hint))
}

/// Loads `config.json` and the weights of a Hugging Face model folder, cast to `dtype`, as
/// the architecture its config names.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Box<dyn CausalLm>> {
    (architecture_of(dir)?.load)(dir, dtype, device)
}

/// Loads a model folder for LoRA training: the matrices stay in the dtype of their files
/// (bf16 and f16 weights stay 2 bytes each; the forward widens one projection at a time
/// to f32), the norm weights and biases are read as f32.
pub fn load_frozen(dir: &Path, device: &Device) -> Result<Box<dyn CausalLm>> {
    (architecture_of(dir)?.load_frozen)(dir, device)
}

/// A model with transformers' initialisation from a config.json's contents, seeded: for
/// benchmarks and tests.
pub fn init_random(config: Value, seed: u64, device: &Device) -> Result<Box<dyn CausalLm>> {
    let path = Path::new("(config)");
    let arch =
        architecture(&config).map_err(|(message, hint)| ModelError::config(path, message, hint))?;
    (arch.init_random)(config, seed, device)
}

/// A model to evaluate or generate with: a model folder, or a LoRA adapter folder on
/// its base model (`base` or the adapter's `base_model_name_or_path`, see
/// [`crate::lora::base_model_dir`]) with the adapters merged in, in `dtype`.
pub fn load_merged(
    dir: &Path,
    base: Option<&str>,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn CausalLm>> {
    if !crate::lora::is_adapter_dir(dir) {
        return load(dir, dtype, device);
    }
    let adapter = crate::lora::read_adapter(dir)?;
    let base_dir = crate::lora::base_model_dir(&adapter, base)?;
    let mut model = load(&base_dir, dtype, device)?;
    model.load_adapter(&adapter)?;
    model.merge_adapters()?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_architectures_naming_them_and_the_supported_ones() {
        let (message, hint) = architecture(&serde_json::json!({"model_type": "gemma2"}))
            .err()
            .unwrap();
        assert_eq!(message, "model_type \"gemma2\" is not supported");
        assert!(
            hint.contains("llama, mistral, qwen2, qwen3, smollm3"),
            "{hint}"
        );
        let (message, _) = architecture(&serde_json::json!({"architectures": ["GPT2LMHeadModel"]}))
            .err()
            .unwrap();
        assert!(message.contains("GPT2LMHeadModel"), "{message}");
    }

    #[test]
    fn finds_the_llama_family_by_type_class_or_default() {
        for config in [
            serde_json::json!({"model_type": "qwen3"}),
            serde_json::json!({"architectures": ["Qwen2ForCausalLM"]}),
            serde_json::json!({}),
        ] {
            assert_eq!(
                architecture(&config).ok().unwrap().name,
                "llama",
                "{config}"
            );
        }
    }
}
