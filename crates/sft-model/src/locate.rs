//! Where a model is: a local folder, or a Hugging Face Hub model id resolved by `sft-hub`
//! (the shared cache first, `refs/<revision>` naming the snapshot; then a download of only
//! the files a job reads; `HF_HUB_OFFLINE=1` for the cache alone).

use std::path::{Path, PathBuf};

use crate::ModelError;

/// A model folder: a local path, or `OWNER/NAME` / `hf://OWNER/NAME` on the Hub at `main`.
pub fn model_dir(name: &str) -> Result<PathBuf, ModelError> {
    model_dir_at(name, None)
}

/// As [`model_dir`], a Hub id at `revision` (a branch, tag or commit; `main` when `None`,
/// TRL's `--model_revision`). A local folder wins over a Hub id of the same name.
pub fn model_dir_at(name: &str, revision: Option<&str>) -> Result<PathBuf, ModelError> {
    let path = PathBuf::from(name);
    if path.is_dir() {
        return Ok(path);
    }
    if path.exists() {
        return Err(ModelError::NotFound {
            name: name.to_string(),
            message: "not a folder; a model is a Hugging Face model folder".into(),
            hint: "pass the folder that holds config.json, or a Hub model id OWNER/NAME".into(),
        });
    }
    let hub = |id: &str, revision: Option<&str>, sub: &str| {
        let client = sft_hub::HubClient::from_env()?;
        let dir = sft_hub::resolve_model(&client, id, revision)?;
        Ok::<_, sft_hub::HubError>(if sub.is_empty() { dir } else { dir.join(sub) })
    };
    let resolved = match sft_hub::HubPath::parse(name) {
        Some(Ok(p)) => hub(p.repo.id(), p.revision.as_deref().or(revision), &p.path),
        Some(Err(e)) => Err(e),
        None => match sft_hub::RepoId::model(name) {
            Ok(_) if name.contains('/') => hub(name, revision, ""),
            _ => {
                return Err(ModelError::NotFound {
                    name: name.to_string(),
                    message: "no such folder".into(),
                    hint: "pass a local model folder (config.json, *.safetensors, tokenizer files) or a Hub model id OWNER/NAME".into(),
                })
            }
        },
    };
    resolved.map_err(|source| ModelError::Hub {
        name: name.to_string(),
        source: Box::new(source),
    })
}

/// `path` as given when something is there or it cannot be a Hub model id; else the Hub
/// model id it reads as (`OWNER/NAME` or `hf://...`), resolved at `revision`. A path under
/// an existing local folder (`runs/ckpt-5` under `runs/`) is a mistyped path, not an id.
pub fn local_or_hub(path: &Path, revision: Option<&str>) -> Result<PathBuf, ModelError> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let name = path.to_string_lossy();
    let local_parent = path
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty() && p.is_dir());
    let looks_like_id = name.starts_with("hf://")
        || (!name.starts_with('.')
            && !name.starts_with('/')
            && name.matches('/').count() == 1
            && !local_parent);
    if !looks_like_id {
        return Ok(path.to_path_buf());
    }
    model_dir_at(&name, revision)
}
