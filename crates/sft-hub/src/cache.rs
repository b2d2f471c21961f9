//! The cache layout `huggingface_hub` writes and reads, so Python and this project share
//! one cache both ways:
//!
//! ```text
//! HF_HUB_CACHE/models--OWNER--NAME/
//!   blobs/<etag>                 file contents, named by LFS sha256 or git blob id
//!   blobs/<etag>.incomplete      a download in progress (resumed with a Range request)
//!   refs/<revision>              the commit a branch or tag pointed at when last seen
//!   snapshots/<commit>/<path>    relative symlinks to ../../blobs/<etag>
//! ```

use std::path::{Path, PathBuf};

use crate::{HubError, RepoId};

#[derive(Debug, Clone)]
pub struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo: &RepoId) -> Self {
        Self {
            root: cache_dir.join(repo.cache_folder_name()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ref_path(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    /// The commit `revision` pointed at when last seen, from `refs/<revision>`.
    pub fn ref_commit(&self, revision: &str) -> Option<String> {
        std::fs::read_to_string(self.ref_path(revision))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Records that `revision` is `commit` (atomically: a reader never sees half a sha).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit {
            return Ok(());
        }
        let path = self.ref_path(revision);
        if self.ref_commit(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        write_atomic(&path, commit.as_bytes())
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    pub fn blob_path(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    /// Whether `snapshots/<commit>/<file>` is there and leads to a file.
    pub fn has_file(&self, commit: &str, file: &str) -> bool {
        self.snapshot_dir(commit).join(file).is_file()
    }

    /// `snapshots/<commit>/<file>` -> `../../blobs/<etag>` (one `..` more per folder in
    /// `file`), as `huggingface_hub` links them. Where symlinks cannot be made the blob is
    /// copied, as `huggingface_hub` does on such systems.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        let dest = self.snapshot_dir(commit).join(file);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| HubError::io(&parent, e))?;
        let depth = file.matches('/').count() + 2;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        let tmp = parent.join(format!(
            ".{}.{}.tmp",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        let made = std::os::unix::fs::symlink(&target, &tmp);
        #[cfg(not(unix))]
        let made = std::fs::copy(self.blob_path(etag), &tmp).map(|_| ());
        made.map_err(|e| HubError::io(&tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| HubError::io(&dest, e))?;
        Ok(dest)
    }
}

/// The model id (`OWNER/NAME`) whose cached snapshot `dir` is
/// (`.../models--OWNER--NAME/snapshots/<commit>`), if it is one: what a file that names a
/// model (an adapter's `base_model_name_or_path`) should say instead of a path that exists
/// only on this machine.
pub fn model_id_of_snapshot(dir: &Path) -> Option<String> {
    let snapshots = dir.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let folder = snapshots.parent()?.file_name()?.to_str()?;
    let rest = folder.strip_prefix("models--")?;
    let (owner, name) = rest.split_once("--")?;
    let id = format!("{owner}/{name}");
    RepoId::model(&id).ok().map(|_| id)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
    let tmp = parent.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| HubError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        HubError::io(path, e)
    })
}

/// Every file under `dir`, as repo paths (`a/b.json`), sorted; hidden temporaries skipped.
pub fn list_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.is_file() {
                if let Ok(rel) = path.strip_prefix(root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn a_snapshot_folder_names_its_model() {
        let dir = Path::new("/c/hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/abc123");
        assert_eq!(
            model_id_of_snapshot(dir).as_deref(),
            Some("HuggingFaceTB/SmolLM2-135M")
        );
        assert_eq!(model_id_of_snapshot(Path::new("/models/tiny-llama")), None);
        assert_eq!(
            model_id_of_snapshot(Path::new("/c/hub/datasets--a--b/snapshots/abc")),
            None
        );
    }
}
