//! Repo ids (`OWNER/NAME`), `hf://` paths and revisions.

use crate::HubError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    /// `models` / `datasets`: the API path segment and the cache folder prefix.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Model => "models",
            Self::Dataset => "datasets",
        }
    }

    /// `model` / `dataset`: the `type` of `POST /api/repos/create`.
    pub fn singular(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Dataset => "dataset",
        }
    }
}

/// A repo on the Hub: `OWNER/NAME` (or a bare `NAME` for the Hub's oldest models).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoId {
    pub repo_type: RepoType,
    id: String,
}

impl RepoId {
    /// Checks `id` the way the Hub names repos: one or two parts of letters, digits,
    /// `-`, `_`, `.`; no `--` or `..`; a name of at most 96 characters.
    pub fn parse(repo_type: RepoType, id: &str) -> Result<Self, HubError> {
        let invalid = |reason: &str| HubError::InvalidId {
            input: id.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.is_empty() || parts.len() > 2 {
            return Err(invalid("a repo id is OWNER/NAME"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(invalid("a repo id is OWNER/NAME, neither part empty"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(invalid(
                    "a repo id has only letters, digits, '-', '_' and '.'",
                ));
            }
            if part.contains("--") || part.contains("..") {
                return Err(invalid("'--' and '..' are not allowed in a repo id"));
            }
            if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
                return Err(invalid(
                    "a repo id part cannot start or end with '-' or '.'",
                ));
            }
        }
        if parts.last().is_some_and(|n| n.len() > 96) {
            return Err(invalid("a repo name has at most 96 characters"));
        }
        Ok(Self {
            repo_type,
            id: id.to_string(),
        })
    }

    pub fn model(id: &str) -> Result<Self, HubError> {
        Self::parse(RepoType::Model, id)
    }

    pub fn dataset(id: &str) -> Result<Self, HubError> {
        Self::parse(RepoType::Dataset, id)
    }

    /// `OWNER/NAME`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `models--OWNER--NAME`, the repo's folder in the cache.
    pub fn cache_folder_name(&self) -> String {
        format!(
            "{}--{}",
            self.repo_type.plural(),
            self.id.replace('/', "--")
        )
    }

    /// `OWNER/NAME` or `datasets/OWNER/NAME`: the prefix of `resolve` and LFS URLs.
    pub fn url_path(&self) -> String {
        match self.repo_type {
            RepoType::Model => self.id.clone(),
            RepoType::Dataset => format!("datasets/{}", self.id),
        }
    }

    /// The repo's page.
    pub fn page(&self, endpoint: &str) -> String {
        format!("{endpoint}/{}", self.url_path())
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.repo_type {
            RepoType::Model => write!(f, "{}", self.id),
            RepoType::Dataset => write!(f, "dataset {}", self.id),
        }
    }
}

/// `hf://datasets/OWNER/NAME[@REVISION][/PATH]` or `hf://OWNER/NAME[@REVISION][/PATH]`
/// (`huggingface_hub`'s `HfFileSystem` paths; `hf://models/...` is a model too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubPath {
    pub repo: RepoId,
    pub revision: Option<String>,
    /// A file or folder inside the repo; empty for the whole repo.
    pub path: String,
}

impl HubPath {
    /// `None` when `s` is not an `hf://` path at all.
    pub fn parse(s: &str) -> Option<Result<Self, HubError>> {
        let rest = s.strip_prefix("hf://")?;
        let (repo_type, rest) = if let Some(r) = rest.strip_prefix("datasets/") {
            (RepoType::Dataset, r)
        } else if let Some(r) = rest.strip_prefix("models/") {
            (RepoType::Model, r)
        } else {
            (RepoType::Model, rest)
        };
        let mut parts = rest.splitn(3, '/');
        let owner = parts.next().unwrap_or_default();
        let Some(name) = parts.next() else {
            return Some(Err(HubError::InvalidId {
                input: s.to_string(),
                reason: "an hf:// path names OWNER/NAME".into(),
            }));
        };
        let path = parts.next().unwrap_or_default();
        // A revision follows the name (`NAME@v1`); one with slashes is URL-encoded
        // (`NAME@refs%2Fconvert%2Fparquet`).
        let (name, revision) = match name.split_once('@') {
            Some((n, r)) => (n, Some(decode(r))),
            None => (name, None),
        };
        Some(
            RepoId::parse(repo_type, &format!("{owner}/{name}")).map(|repo| Self {
                repo,
                revision,
                path: path.trim_matches('/').to_string(),
            }),
        )
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A revision as one URL path segment: `refs/convert/parquet` -> `refs%2Fconvert%2Fparquet`.
pub fn encode_revision(revision: &str) -> String {
    percent_encoding::utf8_percent_encode(revision, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
}

/// A file path inside a repo as URL path segments (slashes kept).
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_revision)
        .collect::<Vec<_>>()
        .join("/")
}

/// A full commit sha (40 hex digits), which names one snapshot without asking anyone.
pub fn is_commit_sha(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_cache_names() {
        let r = RepoId::model("HuggingFaceTB/SmolLM3-3B-Base").unwrap();
        assert_eq!(
            r.cache_folder_name(),
            "models--HuggingFaceTB--SmolLM3-3B-Base"
        );
        let d = RepoId::dataset("HuggingFaceTB/smoltalk2_everyday_convs_think").unwrap();
        assert_eq!(
            d.url_path(),
            "datasets/HuggingFaceTB/smoltalk2_everyday_convs_think"
        );
        assert!(RepoId::model("gpt2").is_ok());
        for bad in ["a/b/c", "a//b", "a b/c", "a/b--c", "/x", "a/.b", ""] {
            assert!(RepoId::model(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hf_paths() {
        let p =
            HubPath::parse("hf://datasets/o/n@refs%2Fconvert%2Fparquet/default/train/0000.parquet")
                .unwrap()
                .unwrap();
        assert_eq!(p.repo, RepoId::dataset("o/n").unwrap());
        assert_eq!(p.revision.as_deref(), Some("refs/convert/parquet"));
        assert_eq!(p.path, "default/train/0000.parquet");
        let p = HubPath::parse("hf://o/n").unwrap().unwrap();
        assert_eq!(p.repo.repo_type, RepoType::Model);
        assert_eq!(p.path, "");
        assert!(HubPath::parse("data/x.jsonl").is_none());
        assert!(HubPath::parse("hf://datasets/only").unwrap().is_err());
    }

    #[test]
    fn revisions() {
        assert_eq!(
            encode_revision("refs/convert/parquet"),
            "refs%2Fconvert%2Fparquet"
        );
        assert_eq!(encode_revision("v1.0-rc_1"), "v1.0-rc_1");
        assert_eq!(encode_path("data/train 1.jsonl"), "data/train%201.jsonl");
        assert!(is_commit_sha("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_sha("main"));
    }
}
