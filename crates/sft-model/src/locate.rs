//! Where a model is: a local folder, or a model id found in the local Hugging Face cache
//! (there is no network at run time).

use std::path::PathBuf;

use crate::ModelError;

/// A model folder: a local path, or OWNER/NAME in the local Hugging Face cache
/// (`HF_HUB_CACHE`, `HF_HOME/hub` or `~/.cache/huggingface/hub`), its newest snapshot.
pub fn model_dir(name: &str) -> Result<PathBuf, ModelError> {
    let path = PathBuf::from(name);
    if path.is_dir() {
        return Ok(path);
    }
    if path.exists() {
        return Err(ModelError::NotFound {
            name: name.to_string(),
            message: "not a folder; a model is a Hugging Face model folder".into(),
            hint: String::new(),
        });
    }
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        });
    if let (Some(hub), Some((owner, repo))) = (hub.as_ref(), name.split_once('/')) {
        let snapshots = hub
            .join(format!("models--{owner}--{repo}"))
            .join("snapshots");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("config.json").is_file())
            .collect();
        found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    Err(ModelError::NotFound {
        name: name.to_string(),
        message: format!(
            "no such folder, and not in the local Hugging Face cache ({})",
            hub.map(|h| h.display().to_string()).unwrap_or_else(|| "unknown".into())
        ),
        hint: format!("there is no network at run time; download it first (`hf download {name}`) or pass a local folder. For SmolLM2-135M-Instruct offline see the README (data-samples/models/smollm2_from_gguf.py)"),
    })
}
