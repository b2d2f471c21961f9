//! A model id to a local folder, as `huggingface_hub` resolves it: the cache first (a
//! commit sha names its snapshot; a branch or tag goes through `refs/<revision>`), then the
//! Hub for the commit and its file list, then only the files a job reads.

use std::path::PathBuf;

use crate::cache::RepoCache;
use crate::client::{HubClient, RepoFile};
use crate::repo::is_commit_sha;
use crate::{HubError, RepoId};

/// Files read by training, evaluation and generation, whatever the model.
const MODEL_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "adapter_config.json",
    "adapter_model.safetensors",
];

/// Which of a repo's files a job needs: the config, tokenizer and template files, every
/// top-level `*.safetensors` shard; `*.bin` / `*.pth` weights only when the repo has no
/// safetensors at all.
pub fn wanted_model_files(files: &[String]) -> Vec<String> {
    let top = |f: &&String| !f.contains('/');
    let has_safetensors = files
        .iter()
        .filter(top)
        .any(|f| f.ends_with(".safetensors"));
    files
        .iter()
        .filter(top)
        .filter(|f| {
            MODEL_FILES.contains(&f.as_str())
                || f.ends_with(".safetensors")
                || (!has_safetensors
                    && (f.ends_with(".bin")
                        || f.ends_with(".pth")
                        || f.ends_with(".bin.index.json")))
        })
        .cloned()
        .collect()
}

/// The local folder of `id` at `revision` (`main` when `None`), downloading what is missing
/// unless offline.
pub fn resolve_model(
    client: &HubClient,
    id: &str,
    revision: Option<&str>,
) -> Result<PathBuf, HubError> {
    let repo = RepoId::model(id)?;
    let revision = revision.unwrap_or("main");
    let settings = client.settings();
    let cache = RepoCache::new(&settings.cache_dir, &repo);
    let cached_commit = if is_commit_sha(revision) {
        Some(revision.to_string())
    } else {
        cache.ref_commit(revision)
    };
    let complete = |commit: &str| {
        let dir = cache.snapshot_dir(commit);
        (dir.join("config.json").is_file() || dir.join("adapter_config.json").is_file())
            .then_some(dir)
    };
    if settings.offline {
        return match &cached_commit {
            Some(commit) => complete(commit).ok_or_else(|| HubError::Offline {
                repo: repo.to_string(),
                revision: revision.to_string(),
                missing: format!(
                    "snapshots/{commit}/config.json (the snapshot {} has no model files)",
                    cache.ref_path(revision).display()
                ),
                cache: cache.root().to_path_buf(),
            }),
            None => Err(HubError::Offline {
                repo: repo.to_string(),
                revision: revision.to_string(),
                missing: format!(
                    "refs/{revision} (this model was never downloaded at that revision)"
                ),
                cache: cache.root().to_path_buf(),
            }),
        };
    }
    let info = match client.repo_info(&repo, revision) {
        Ok(info) => info,
        // No answer from the Hub: a snapshot already in the cache still serves, as in Python.
        Err(e @ HubError::Network { .. }) => {
            return match cached_commit.as_deref().and_then(complete) {
                Some(dir) => {
                    eprintln!(
                        "note: {repo}: the Hub did not answer ({}); using the cached snapshot {}",
                        e.to_string().lines().next().unwrap_or_default(),
                        dir.display()
                    );
                    Ok(dir)
                }
                None => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let names: Vec<String> = info.files.iter().map(|f| f.path.clone()).collect();
    let wanted = wanted_model_files(&names);
    if !wanted
        .iter()
        .any(|f| f == "config.json" || f == "adapter_config.json")
    {
        return Err(HubError::NotFound {
            repo: repo.to_string(),
            what: crate::error::Missing::File("config.json".into()),
            had_token: settings.token.is_some(),
        });
    }
    let files: Vec<RepoFile> = info
        .files
        .into_iter()
        .filter(|f| wanted.contains(&f.path))
        .collect();
    let dir = client.fetch_files(&repo, &info.sha, &files)?;
    cache.write_ref(revision, &info.sha)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_safetensors_and_tokenizer_never_bin_when_safetensors_exist() {
        let files: Vec<String> = [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "tokenizer.json",
            "README.md",
            "onnx/model.onnx",
            "chat_template.jinja",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            wanted_model_files(&files),
            [
                "config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "tokenizer.json",
                "chat_template.jinja"
            ]
        );
        let only_bin: Vec<String> = ["config.json", "pytorch_model.bin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(wanted_model_files(&only_bin), only_bin);
    }
}
