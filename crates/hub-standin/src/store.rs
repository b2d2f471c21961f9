//! The repos the stand-in serves: commits of whole file trees, branches and tags naming
//! them, LFS objects by sha256, and who may see what.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Models and datasets live in separate namespaces, as on the Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Model,
    Dataset,
}

impl Kind {
    /// `models` / `datasets`, as in `/api/models/...`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Dataset => "datasets",
        }
    }

    pub fn from_plural(s: &str) -> Option<Self> {
        match s {
            "models" => Some(Kind::Model),
            "datasets" => Some(Kind::Dataset),
            _ => None,
        }
    }

    pub fn from_type(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Kind::Model),
            "dataset" => Some(Kind::Dataset),
            _ => None,
        }
    }
}

/// One file of a commit. Regular files are named by a content hash the stand-in makes up
/// (40 hex digits, like git's); LFS files by their sha256, as on the Hub.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub data: Arc<Vec<u8>>,
    pub lfs: bool,
    pub oid: String,
    pub sha256: String,
}

impl StoredFile {
    pub fn new(data: Vec<u8>, lfs: bool) -> Self {
        let sha256 = hex(&Sha256::digest(&data));
        // An LFS file's git object is its pointer file.
        let object = if lfs {
            format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n",
                data.len()
            )
            .into_bytes()
        } else {
            data.clone()
        };
        let mut h = Sha256::new();
        h.update(format!("blob {}\0", object.len()));
        h.update(&object);
        let oid = hex(&h.finalize())[..40].to_string();
        Self {
            data: Arc::new(data),
            lfs,
            oid,
            sha256,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub files: BTreeMap<String, StoredFile>,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Repo {
    pub owner: String,
    pub private: bool,
    pub gated: bool,
    /// Users who accepted a gated repo's conditions.
    pub accepted: BTreeSet<String>,
    pub commits: HashMap<String, Commit>,
    pub branches: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

impl Repo {
    /// A branch, a tag, or a full commit sha, to the commit sha.
    pub fn resolve(&self, revision: &str) -> Option<String> {
        if let Some(sha) = self
            .branches
            .get(revision)
            .or_else(|| self.tags.get(revision))
        {
            return Some(sha.clone());
        }
        self.commits
            .contains_key(revision)
            .then(|| revision.to_string())
    }
}

/// Whether a file of that name and content goes to LFS: the patterns of the Hub's default
/// `.gitattributes`, files of 10 MB and more, and anything that is not text.
pub fn wants_lfs(path: &str, size: usize, sample: &[u8]) -> bool {
    const LFS_SUFFIXES: &[&str] = &[
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".h5",
        ".msgpack",
        ".onnx",
        ".parquet",
        ".arrow",
        ".gguf",
        ".zip",
        ".gz",
        ".zst",
        ".tar",
        ".npy",
        ".npz",
        ".pkl",
        ".model",
    ];
    LFS_SUFFIXES.iter().any(|s| path.ends_with(s))
        || size >= 10 * 1024 * 1024
        || sample.contains(&0)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole Hub: repos, tokens, uploaded LFS objects, and the test knobs.
#[derive(Debug, Default)]
pub struct Hub {
    pub repos: BTreeMap<(Kind, String), Repo>,
    /// Access token -> user name.
    pub tokens: BTreeMap<String, String>,
    pub lfs_objects: HashMap<String, Arc<Vec<u8>>>,
    /// Paths (`resolve/...` file names or LFS oids) whose next download is cut after that
    /// many bytes, once.
    pub cuts: HashMap<String, usize>,
    /// Every request seen: `METHOD PATH` plus ` Range: ...` when there was one.
    pub log: Vec<String>,
    /// `http://127.0.0.1:PORT` of the second listener that plays the CDN and the LFS storage
    /// (another origin, as on the Hub: clients follow redirects there without the token).
    pub cdn_base: Option<String>,
    counter: u64,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A user and the token that authenticates it.
    pub fn add_token(&mut self, token: &str, user: &str) {
        self.tokens.insert(token.to_string(), user.to_string());
    }

    /// An empty repo with a `main` branch holding an empty first commit (the Hub makes the
    /// initial `.gitattributes` commit; the stand-in keeps it empty).
    pub fn create_repo(&mut self, kind: Kind, id: &str, private: bool) -> &mut Repo {
        let sha = self.next_sha(id, "initial commit");
        let owner = id.split('/').next().unwrap_or_default().to_string();
        let repo = self.repos.entry((kind, id.to_string())).or_default();
        repo.owner = owner;
        repo.private = private;
        repo.commits.insert(
            sha.clone(),
            Commit {
                files: BTreeMap::new(),
                message: "initial commit".into(),
            },
        );
        repo.branches.insert("main".into(), sha);
        repo
    }

    pub fn repo_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&(kind, id.to_string()))
    }

    /// A new commit on `branch` (created from `main` if new): the branch's files plus
    /// `files`, minus `deleted`. LFS is chosen per file by [`wants_lfs`] unless given.
    pub fn commit(
        &mut self,
        kind: Kind,
        id: &str,
        branch: &str,
        files: Vec<(String, StoredFile)>,
        deleted: &[String],
        message: &str,
    ) -> Option<String> {
        let sha = self.next_sha(id, message);
        let repo = self.repos.get_mut(&(kind, id.to_string()))?;
        let head = repo
            .branches
            .get(branch)
            .or_else(|| repo.branches.get("main"))?
            .clone();
        let mut tree = repo.commits.get(&head)?.files.clone();
        for path in deleted {
            let prefix = format!("{}/", path.trim_end_matches('/'));
            tree.retain(|p, _| p != path && !p.starts_with(&prefix));
        }
        for (path, file) in files {
            tree.insert(path, file);
        }
        repo.commits.insert(
            sha.clone(),
            Commit {
                files: tree,
                message: message.to_string(),
            },
        );
        repo.branches.insert(branch.to_string(), sha.clone());
        Some(sha)
    }

    /// Commits plain bytes, choosing LFS by name and content.
    pub fn commit_bytes(
        &mut self,
        kind: Kind,
        id: &str,
        branch: &str,
        files: Vec<(String, Vec<u8>)>,
        message: &str,
    ) -> Option<String> {
        let files = files
            .into_iter()
            .map(|(p, d)| {
                let lfs = wants_lfs(&p, d.len(), &d[..d.len().min(512)]);
                (p, StoredFile::new(d, lfs))
            })
            .collect();
        self.commit(kind, id, branch, files, &[], message)
    }

    pub fn tag(&mut self, kind: Kind, id: &str, tag: &str, revision: &str) -> Option<()> {
        let repo = self.repos.get_mut(&(kind, id.to_string()))?;
        let sha = repo.resolve(revision)?;
        repo.tags.insert(tag.to_string(), sha);
        Some(())
    }

    /// Loads `ROOT/models/OWNER/NAME/**` and `ROOT/datasets/OWNER/NAME/**` as the `main`
    /// branch of those repos. A repo folder's `.standin.json` may say
    /// `{"private": true, "gated": true, "tags": ["v1"], "branches": {"refs/convert/parquet": "SUBDIR"}}`;
    /// a branch's `SUBDIR` is served as that branch and left out of `main`.
    pub fn load_dir(&mut self, root: &Path) -> std::io::Result<()> {
        for kind in [Kind::Model, Kind::Dataset] {
            let base = root.join(kind.plural());
            for owner in read_dir_sorted(&base)? {
                if !owner.is_dir() {
                    continue;
                }
                for repo_dir in read_dir_sorted(&owner)? {
                    if !repo_dir.is_dir() {
                        continue;
                    }
                    let id = format!(
                        "{}/{}",
                        owner.file_name().unwrap_or_default().to_string_lossy(),
                        repo_dir.file_name().unwrap_or_default().to_string_lossy()
                    );
                    self.load_repo(kind, &id, &repo_dir)?;
                }
            }
        }
        Ok(())
    }

    fn load_repo(&mut self, kind: Kind, id: &str, dir: &Path) -> std::io::Result<()> {
        let settings: serde_json::Value = match std::fs::read(dir.join(".standin.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(_) => serde_json::json!({}),
        };
        let private = settings["private"].as_bool().unwrap_or(false);
        let repo = self.create_repo(kind, id, private);
        repo.gated = settings["gated"].as_bool().unwrap_or(false);
        let mut branch_dirs = Vec::new();
        if let Some(map) = settings["branches"].as_object() {
            for (branch, sub) in map {
                branch_dirs.push((branch.clone(), sub.as_str().unwrap_or_default().to_string()));
            }
        }
        let skip: Vec<String> = branch_dirs.iter().map(|(_, s)| s.clone()).collect();
        let mut files = Vec::new();
        collect_files(dir, dir, &skip, &mut files)?;
        self.commit_bytes(kind, id, "main", files, "load from folder");
        for (branch, sub) in branch_dirs {
            let mut files = Vec::new();
            collect_files(&dir.join(&sub), &dir.join(&sub), &[], &mut files)?;
            // A convert branch shares no files with main, as on the Hub.
            let sha = self.next_sha(id, &branch);
            let repo = self.repo_mut(kind, id).expect("just created");
            let files = files
                .into_iter()
                .map(|(p, d)| {
                    let lfs = wants_lfs(&p, d.len(), &d[..d.len().min(512)]);
                    (p, StoredFile::new(d, lfs))
                })
                .collect();
            repo.commits.insert(
                sha.clone(),
                Commit {
                    files,
                    message: branch.clone(),
                },
            );
            repo.branches.insert(branch, sha);
        }
        if let Some(tags) = settings["tags"].as_array() {
            for tag in tags.iter().filter_map(|t| t.as_str()) {
                self.tag(kind, id, tag, "main");
            }
        }
        Ok(())
    }

    pub fn next_sha(&mut self, id: &str, message: &str) -> String {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(format!("{id}\0{message}\0{}", self.counter));
        hex(&h.finalize())[..40].to_string()
    }
}

fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

fn collect_files(
    root: &Path,
    dir: &Path,
    skip: &[String],
    out: &mut Vec<(String, Vec<u8>)>,
) -> std::io::Result<()> {
    for path in read_dir_sorted(dir)? {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if rel == ".standin.json" || skip.contains(&rel) {
            continue;
        }
        if path.is_dir() {
            collect_files(root, &path, skip, out)?;
        } else {
            out.push((rel, std::fs::read(&path)?));
        }
    }
    Ok(())
}
