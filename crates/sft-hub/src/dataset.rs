//! A dataset id to local files per split, by the rules `datasets` applies to a Hub repo:
//!
//! 1. the card's YAML `configs:` (`config_name`, `data_files` as a string, a list, or a list
//!    of `{split, path}` with globs, `data_dir`, `default: true`);
//! 2. else split names in file and folder names: `data/SPLIT-00000-of-00002.parquet` first,
//!    then `train`/`training`, `validation`/`valid`/`dev`/`val`, `test`/`testing`/`eval`/
//!    `evaluation` as a word of a folder name, then of a file name; else every data file is
//!    `train`;
//! 3. else (no data files, or a config the card does not name) the Hub's Parquet conversion
//!    under the revision `refs/convert/parquet`: `CONFIG/SPLIT/NNNN.parquet`.
//!
//! Only the chosen config's requested splits are downloaded, into the shared cache; the
//! files are read from there as they are (JSON lines, JSON, Parquet, CSV), not converted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cache::{list_files, RepoCache};
use crate::client::{HubClient, RepoFile};
use crate::repo::is_commit_sha;
use crate::{HubError, HubPath, RepoId};

/// The Hub's Parquet conversion of every dataset, a revision of its own.
pub const CONVERT_REVISION: &str = "refs/convert/parquet";

const DATA_EXTENSIONS: &[&str] = &[".jsonl", ".json", ".parquet", ".csv", ".ndjson"];

const SPLIT_KEYWORDS: &[(&str, &[&str])] = &[
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "dev", "val"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];

/// What to resolve: TRL's `--dataset_name`, `--dataset_config`, and the splits the job reads.
#[derive(Debug, Clone, Default)]
pub struct DatasetRequest {
    pub id: String,
    pub revision: Option<String>,
    pub config: Option<String>,
    /// The splits to download; empty for all of the config's.
    pub splits: Vec<String>,
}

/// A config's files per split, local paths in the cache.
#[derive(Debug, Clone)]
pub struct DatasetFiles {
    pub repo: String,
    pub config: String,
    /// The commit the files come from.
    pub commit: String,
    pub splits: BTreeMap<String, Vec<PathBuf>>,
}

/// Repo paths per split for one config.
pub type SplitFiles = BTreeMap<String, Vec<String>>;

fn is_data_file(path: &str) -> bool {
    let lower = path.to_lowercase();
    let hidden = path
        .split('/')
        .any(|p| p.starts_with('.') || p.starts_with("__"));
    !hidden && DATA_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// The words of a name: split at `-`, `.`, `_`, space and digits (datasets' separators).
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(|c: char| matches!(c, '-' | '.' | '_' | ' ') || c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// `data/SPLIT-00000-of-00002.ext`: the layout `push_to_hub` writes; any split name.
fn sharded_split(path: &str) -> Option<String> {
    let file = path.strip_prefix("data/")?;
    if file.contains('/') {
        return None;
    }
    let stem = file.split('.').next()?;
    let (split, rest) = stem.split_once('-')?;
    let (a, b) = rest.split_once("-of-")?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|c| c.is_ascii_digit());
    (digits(a) && digits(&b[..b.len().min(5)]) && !split.is_empty()).then(|| split.to_string())
}

/// Splits from file and folder names, in `datasets`' order of preference.
pub fn infer_splits(files: &[String]) -> SplitFiles {
    let data: Vec<&String> = files.iter().filter(|f| is_data_file(f)).collect();
    let mut out = SplitFiles::new();
    for f in &data {
        if let Some(split) = sharded_split(f) {
            out.entry(split).or_default().push(f.to_string());
        }
    }
    if !out.is_empty() {
        return out;
    }
    type Part = fn(&str) -> Vec<String>;
    let in_dirs: Part = |f| {
        let parts: Vec<&str> = f.split('/').collect();
        parts[..parts.len() - 1]
            .iter()
            .flat_map(|p| words(p))
            .collect()
    };
    let in_file: Part = |f| words(f.rsplit('/').next().unwrap_or(f)).collect();
    for part in [in_dirs, in_file] {
        for f in &data {
            let found = part(f);
            for (split, keywords) in SPLIT_KEYWORDS {
                if keywords.iter().any(|k| found.iter().any(|w| w == k)) {
                    out.entry(split.to_string())
                        .or_default()
                        .push(f.to_string());
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    if !data.is_empty() {
        out.insert("train".into(), data.iter().map(|f| f.to_string()).collect());
    }
    out
}

/// One entry of the card's `configs:`.
#[derive(Debug, Clone, PartialEq)]
pub struct CardConfig {
    pub name: String,
    pub default: bool,
    /// Patterns per split; `None` when the config gives only a `data_dir`.
    pub data_files: Option<BTreeMap<String, Vec<String>>>,
    pub data_dir: Option<String>,
}

/// The `configs:` of a dataset card's YAML front matter; empty when there is none.
pub fn card_configs(readme: &str) -> Result<Vec<CardConfig>, String> {
    let Some(rest) = readme
        .strip_prefix("---\n")
        .or_else(|| readme.strip_prefix("---\r\n"))
    else {
        return Ok(Vec::new());
    };
    let Some(end) = rest.find("\n---") else {
        return Ok(Vec::new());
    };
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&rest[..end]).map_err(|e| format!("README.md front matter: {e}"))?;
    let Some(configs) = yaml.get("configs").and_then(|c| c.as_sequence()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in configs {
        let name = c
            .get("config_name")
            .and_then(|n| n.as_str())
            .unwrap_or("default")
            .to_string();
        let default = c.get("default").and_then(|d| d.as_bool()).unwrap_or(false);
        let data_dir = c
            .get("data_dir")
            .and_then(|d| d.as_str())
            .map(|d| d.trim_matches('/').to_string());
        let strings = |v: &serde_yaml::Value| -> Vec<String> {
            match v {
                serde_yaml::Value::String(s) => vec![s.clone()],
                serde_yaml::Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let data_files = match c.get("data_files") {
            None => None,
            Some(v @ serde_yaml::Value::String(_)) => {
                Some(BTreeMap::from([("train".to_string(), strings(v))]))
            }
            Some(serde_yaml::Value::Sequence(items)) => {
                let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for item in items {
                    match item {
                        serde_yaml::Value::String(s) => {
                            map.entry("train".into()).or_default().push(s.clone())
                        }
                        serde_yaml::Value::Mapping(_) => {
                            let split = item
                                .get("split")
                                .and_then(|s| s.as_str())
                                .unwrap_or("train")
                                .to_string();
                            let paths = item.get("path").map(strings).unwrap_or_default();
                            map.entry(split).or_default().extend(paths);
                        }
                        _ => {
                            return Err(format!(
                                "config {name}: data_files entries are strings or {{split, path}}"
                            ))
                        }
                    }
                }
                Some(map)
            }
            Some(serde_yaml::Value::Mapping(m)) => Some(
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), strings(v))))
                    .collect(),
            ),
            Some(_) => {
                return Err(format!(
                    "config {name}: data_files is a string, a list or a mapping"
                ))
            }
        };
        out.push(CardConfig {
            name,
            default,
            data_files,
            data_dir,
        });
    }
    Ok(out)
}

/// The repo files a config's patterns name (relative to its `data_dir`, if any).
fn match_patterns(files: &[String], patterns: &[String], data_dir: Option<&str>) -> Vec<String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut out = Vec::new();
    for pattern in patterns {
        let full = match data_dir {
            Some(d) if !d.is_empty() => format!("{d}/{}", pattern.trim_start_matches("./")),
            _ => pattern.trim_start_matches("./").to_string(),
        };
        let compiled = glob::Pattern::new(&full).ok();
        let folder = format!("{}/", full.trim_end_matches('/'));
        for f in files {
            let hit = compiled
                .as_ref()
                .is_some_and(|p| p.matches_with(f, options))
                || (f.starts_with(&folder) && is_data_file(f));
            if hit && !out.contains(f) {
                out.push(f.clone());
            }
        }
    }
    out.sort();
    out
}

fn config_splits(config: &CardConfig, files: &[String]) -> SplitFiles {
    match &config.data_files {
        Some(map) => map
            .iter()
            .map(|(split, patterns)| {
                (
                    split.clone(),
                    match_patterns(files, patterns, config.data_dir.as_deref()),
                )
            })
            .filter(|(_, f)| !f.is_empty())
            .collect(),
        None => {
            let prefix = config
                .data_dir
                .as_deref()
                .map(|d| format!("{d}/"))
                .unwrap_or_default();
            let under: Vec<String> = files
                .iter()
                .filter_map(|f| f.strip_prefix(&prefix).map(str::to_string))
                .collect();
            infer_splits(&under)
                .into_iter()
                .map(|(s, fs)| (s, fs.into_iter().map(|f| format!("{prefix}{f}")).collect()))
                .collect()
        }
    }
}

/// `CONFIG/SPLIT/NNNN.parquet` (and `CONFIG/partial-SPLIT/...`) per config.
pub fn convert_configs(files: &[String]) -> BTreeMap<String, SplitFiles> {
    let mut out: BTreeMap<String, SplitFiles> = BTreeMap::new();
    for f in files.iter().filter(|f| f.ends_with(".parquet")) {
        let parts: Vec<&str> = f.split('/').collect();
        if parts.len() != 3 {
            continue;
        }
        let split = parts[1].strip_prefix("partial-").unwrap_or(parts[1]);
        out.entry(parts[0].to_string())
            .or_default()
            .entry(split.to_string())
            .or_default()
            .push(f.clone());
    }
    for splits in out.values_mut() {
        for files in splits.values_mut() {
            files.sort();
        }
    }
    out
}

/// The config the job reads: the one asked for, else the card's default, else `default`,
/// else the only one.
fn choose<'a, T>(
    repo: &str,
    configs: &'a BTreeMap<String, T>,
    default: Option<&str>,
    asked: Option<&str>,
) -> Result<(String, &'a T), HubError> {
    let names: Vec<&str> = configs.keys().map(|s| s.as_str()).collect();
    let name = match asked {
        Some(a) => a.to_string(),
        None => match default
            .or_else(|| configs.contains_key("default").then_some("default"))
            .or_else(|| (names.len() == 1).then(|| names[0]))
        {
            Some(n) => n.to_string(),
            None => {
                return Err(HubError::Dataset {
                    repo: repo.to_string(),
                    message: format!("it has several configs: {}", names.join(", ")),
                    hint: "pick one with --dataset_config NAME".into(),
                })
            }
        },
    };
    match configs.get(&name) {
        Some(c) => Ok((name, c)),
        None => Err(HubError::Dataset {
            repo: repo.to_string(),
            message: format!("no config {name:?}; it has {}", names.join(", ")),
            hint: "pass one of those with --dataset_config".into(),
        }),
    }
}

/// Which files make each split of the chosen config, from a repo's file list and its card.
/// `Ok(None)` when the repo's own files make no dataset (or not that config): the caller
/// then looks at `refs/convert/parquet`.
pub fn plan_from_files(
    repo: &str,
    files: &[String],
    readme: Option<&str>,
    asked: Option<&str>,
) -> Result<Option<(String, SplitFiles)>, HubError> {
    let configs = match readme.map(card_configs).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(message) => {
            return Err(HubError::Dataset {
                repo: repo.to_string(),
                message,
                hint: "fix the YAML between the --- lines at the top of the dataset's README.md"
                    .into(),
            })
        }
    };
    if configs.is_empty() {
        let splits = infer_splits(files);
        if splits.is_empty() || asked.is_some_and(|a| a != "default") {
            return Ok(None);
        }
        return Ok(Some(("default".into(), splits)));
    }
    let map: BTreeMap<String, &CardConfig> = configs.iter().map(|c| (c.name.clone(), c)).collect();
    if asked.is_some_and(|a| !map.contains_key(a)) {
        return Ok(None);
    }
    let default = configs.iter().find(|c| c.default).map(|c| c.name.as_str());
    let (name, config) = choose(repo, &map, default, asked)?;
    Ok(Some((name, config_splits(config, files))))
}

fn keep_splits(
    repo: &str,
    config: &str,
    mut splits: SplitFiles,
    wanted: &[String],
) -> Result<SplitFiles, HubError> {
    if wanted.is_empty() {
        return Ok(splits);
    }
    let available: Vec<String> = splits.keys().cloned().collect();
    let mut out = SplitFiles::new();
    for w in wanted {
        match splits.remove(w) {
            Some(f) => {
                out.insert(w.clone(), f);
            }
            None => {
                return Err(HubError::Dataset {
                    repo: repo.to_string(),
                    message: format!(
                        "config {config:?} has no split {w:?}; it has {}",
                        available.join(", ")
                    ),
                    hint: "name one of those with --dataset_train_split / --dataset_test_split"
                        .into(),
                })
            }
        }
    }
    Ok(out)
}

/// The files of a dataset's config per split, downloaded into the cache (or, offline,
/// found there).
pub fn resolve_dataset(
    client: &HubClient,
    request: &DatasetRequest,
) -> Result<DatasetFiles, HubError> {
    let repo = RepoId::dataset(&request.id)?;
    let revision = request.revision.as_deref().unwrap_or("main");
    let asked = request.config.as_deref();
    if client.settings().offline {
        return resolve_offline(client, &repo, revision, request);
    }
    let info = client.repo_info(&repo, revision)?;
    let names: Vec<String> = info.files.iter().map(|f| f.path.clone()).collect();
    let readme = match info.files.iter().find(|f| f.path == "README.md") {
        Some(f) => {
            let dir = client.fetch_files(&repo, &info.sha, std::slice::from_ref(f))?;
            let path = dir.join("README.md");
            Some(std::fs::read_to_string(&path).map_err(|e| HubError::io(&path, e))?)
        }
        None => None,
    };
    let cache = RepoCache::new(&client.settings().cache_dir, &repo);
    let plan = plan_from_files(&repo.to_string(), &names, readme.as_deref(), asked)?;
    let (config, splits, commit, files, rev_used) = match plan {
        Some((config, splits)) => (config, splits, info.sha.clone(), info.files, revision),
        None => {
            let converted = client.repo_info(&repo, CONVERT_REVISION).map_err(|e| match e {
                HubError::NotFound { .. } => HubError::Dataset {
                    repo: repo.to_string(),
                    message: "no data files (.jsonl, .json, .parquet, .csv) in the repo and no Parquet conversion (refs/convert/parquet)".into(),
                    hint: "check the id; a dataset made by a loading script must be converted to data files first".into(),
                },
                other => other,
            })?;
            let names: Vec<String> = converted.files.iter().map(|f| f.path.clone()).collect();
            let configs = convert_configs(&names);
            let (config, splits) = choose(&repo.to_string(), &configs, None, asked)?;
            let splits = splits.clone();
            (
                config,
                splits,
                converted.sha,
                converted.files,
                CONVERT_REVISION,
            )
        }
    };
    let splits = keep_splits(&repo.to_string(), &config, splits, &request.splits)?;
    let wanted: Vec<RepoFile> = files
        .into_iter()
        .filter(|f| splits.values().any(|fs| fs.contains(&f.path)))
        .collect();
    let dir = client.fetch_files(&repo, &commit, &wanted)?;
    cache.write_ref(rev_used, &commit)?;
    Ok(DatasetFiles {
        repo: repo.id().to_string(),
        config,
        commit,
        splits: splits
            .into_iter()
            .map(|(s, fs)| (s, fs.iter().map(|f| dir.join(f)).collect()))
            .collect(),
    })
}

fn resolve_offline(
    client: &HubClient,
    repo: &RepoId,
    revision: &str,
    request: &DatasetRequest,
) -> Result<DatasetFiles, HubError> {
    let cache = RepoCache::new(&client.settings().cache_dir, repo);
    let offline = |missing: String, rev: &str| HubError::Offline {
        repo: repo.to_string(),
        revision: rev.to_string(),
        missing,
        cache: cache.root().to_path_buf(),
    };
    let commit_of = |rev: &str| {
        if is_commit_sha(rev) {
            Some(rev.to_string())
        } else {
            cache.ref_commit(rev)
        }
    };
    let asked = request.config.as_deref();
    let mut plan = None;
    if let Some(commit) = commit_of(revision) {
        let dir = cache.snapshot_dir(&commit);
        let names = list_files(&dir);
        let readme = std::fs::read_to_string(dir.join("README.md")).ok();
        if let Some((config, splits)) =
            plan_from_files(&repo.to_string(), &names, readme.as_deref(), asked)?
        {
            plan = Some((config, splits, commit));
        }
    }
    if plan.is_none() {
        if let Some(commit) = commit_of(CONVERT_REVISION) {
            let names = list_files(&cache.snapshot_dir(&commit));
            let configs = convert_configs(&names);
            if !configs.is_empty() {
                let (config, splits) = choose(&repo.to_string(), &configs, None, asked)?;
                plan = Some((config, splits.clone(), commit));
            }
        }
    }
    let Some((config, splits, commit)) = plan else {
        return Err(offline(
            format!("refs/{revision} with data files (this dataset was never downloaded at that revision)"),
            revision,
        ));
    };
    let splits =
        keep_splits(&repo.to_string(), &config, splits, &request.splits).map_err(|_| {
            offline(
                format!(
                    "the files of split(s) {} of config {config}",
                    request.splits.join(", ")
                ),
                revision,
            )
        })?;
    let dir = cache.snapshot_dir(&commit);
    Ok(DatasetFiles {
        repo: repo.id().to_string(),
        config,
        commit,
        splits: splits
            .into_iter()
            .map(|(s, fs)| (s, fs.iter().map(|f| dir.join(f)).collect()))
            .collect(),
    })
}

/// An `hf://` path to a local one: the file (or every file under the folder) downloaded
/// into the cache; the local path of that file or folder.
pub fn fetch_hub_path(client: &HubClient, path: &HubPath) -> Result<PathBuf, HubError> {
    let revision = path.revision.as_deref().unwrap_or("main");
    let cache = RepoCache::new(&client.settings().cache_dir, &path.repo);
    if client.settings().offline {
        let commit = if is_commit_sha(revision) {
            Some(revision.to_string())
        } else {
            cache.ref_commit(revision)
        };
        let local = commit.map(|c| cache.snapshot_dir(&c).join(&path.path));
        return match local {
            Some(p) if p.exists() => Ok(p),
            _ => Err(HubError::Offline {
                repo: path.repo.to_string(),
                revision: revision.to_string(),
                missing: if path.path.is_empty() {
                    format!("refs/{revision}")
                } else {
                    path.path.clone()
                },
                cache: cache.root().to_path_buf(),
            }),
        };
    }
    let info = client.repo_info(&path.repo, revision)?;
    let prefix = format!("{}/", path.path);
    let files: Vec<RepoFile> = info
        .files
        .into_iter()
        .filter(|f| path.path.is_empty() || f.path == path.path || f.path.starts_with(&prefix))
        .collect();
    if files.is_empty() {
        return Err(HubError::NotFound {
            repo: path.repo.to_string(),
            what: crate::Missing::File(path.path.clone()),
            had_token: client.settings().token.is_some(),
        });
    }
    let dir = client.fetch_files(&path.repo, &info.sha, &files)?;
    cache.write_ref(revision, &info.sha)?;
    Ok(dir.join(&path.path))
}

/// Whether `name` means a Hub dataset: an `hf://` path, or `OWNER/NAME` where no local path
/// of that name exists and whose first part is not a local folder.
pub fn is_hub_dataset(name: &str) -> bool {
    if Path::new(name).exists() {
        return false;
    }
    if HubPath::parse(name).is_some() {
        return true;
    }
    // `data/trian.jsonl` under an existing `data/` is a mistyped path, not a repo.
    let local_parent = Path::new(name)
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty() && p.is_dir());
    if local_parent {
        return false;
    }
    // `runs/train.jsonl` that is not there is a mistyped path, not a repo.
    let data_file = [
        ".jsonl", ".json", ".parquet", ".arrow", ".csv", ".gz", ".zst", ".txt",
    ]
    .iter()
    .any(|e| name.to_lowercase().ends_with(e));
    name.contains('/') && !data_file && RepoId::dataset(name).is_ok()
}

/// The local files of `split` of a Hub dataset (downloaded into the shared cache, or found
/// there offline); `None` when `name` is not a Hub dataset (see [`is_hub_dataset`]).
/// An `hf://datasets/OWNER/NAME/PATH` names its files directly (the split is not used).
pub fn dataset_split_files(
    name: &str,
    config: Option<&str>,
    split: &str,
) -> Result<Option<Vec<PathBuf>>, HubError> {
    if !is_hub_dataset(name) {
        return Ok(None);
    }
    let client = HubClient::from_env()?;
    let (id, revision) = match HubPath::parse(name) {
        Some(p) => {
            let p = p?;
            if !p.path.is_empty() {
                return Ok(Some(vec![crate::fetch_hub_path(&client, &p)?]));
            }
            (p.repo.id().to_string(), p.revision)
        }
        None => (name.to_string(), None),
    };
    let files = resolve_dataset(
        &client,
        &DatasetRequest {
            id,
            revision,
            config: config.map(str::to_string),
            splits: vec![split.to_string()],
        },
    )?;
    Ok(files.splits.into_values().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_names_in_file_and_folder_names() {
        let s = infer_splits(&v(&[
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
        ]));
        assert_eq!(s["train"].len(), 2);
        assert_eq!(s["test"], v(&["data/test-00000-of-00001.parquet"]));
        let s = infer_splits(&v(&[
            "train.jsonl",
            "dev.jsonl",
            "my_test_set.csv",
            "notes.txt",
        ]));
        assert_eq!(s["train"], v(&["train.jsonl"]));
        assert_eq!(s["validation"], v(&["dev.jsonl"]));
        assert_eq!(s["test"], v(&["my_test_set.csv"]));
        let s = infer_splits(&v(&["training/a.jsonl", "eval/b.jsonl", "contest.jsonl"]));
        assert_eq!(s["train"], v(&["training/a.jsonl"]));
        assert_eq!(s["test"], v(&["eval/b.jsonl"]));
        // "contest" is not "test": words only.
        assert!(!s.values().flatten().any(|f| f == "contest.jsonl"));
        let s = infer_splits(&v(&["conversations.jsonl"]));
        assert_eq!(s["train"], v(&["conversations.jsonl"]));
    }

    #[test]
    fn card_configs_in_every_shape() {
        let card = "---\nlicense: apache-2.0\nconfigs:\n- config_name: a\n  data_files:\n  - split: train\n    path: a/train-*\n  - split: test\n    path: [a/test.jsonl]\n  default: true\n- config_name: b\n  data_files: b/*.csv\n- config_name: c\n  data_files:\n  - c/x.jsonl\n  - c/y.jsonl\n---\n# Card\n";
        let c = card_configs(card).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c[0].default);
        let files = v(&[
            "a/train-0.jsonl",
            "a/train-1.jsonl",
            "a/test.jsonl",
            "b/one.csv",
            "c/x.jsonl",
            "c/y.jsonl",
            "README.md",
        ]);
        let (name, splits) = plan_from_files("r", &files, Some(card), None)
            .unwrap()
            .unwrap();
        assert_eq!(name, "a");
        assert_eq!(splits["train"], v(&["a/train-0.jsonl", "a/train-1.jsonl"]));
        assert_eq!(splits["test"], v(&["a/test.jsonl"]));
        let (_, splits) = plan_from_files("r", &files, Some(card), Some("b"))
            .unwrap()
            .unwrap();
        assert_eq!(splits["train"], v(&["b/one.csv"]));
        let (_, splits) = plan_from_files("r", &files, Some(card), Some("c"))
            .unwrap()
            .unwrap();
        assert_eq!(splits["train"], v(&["c/x.jsonl", "c/y.jsonl"]));
        assert!(plan_from_files("r", &files, Some(card), Some("zzz"))
            .unwrap()
            .is_none());
        assert!(card_configs("no front matter").unwrap().is_empty());
        assert!(card_configs("---\nconfigs: [\n---\n").is_err());
    }

    #[test]
    fn parquet_conversion_layout() {
        let c = convert_configs(&v(&[
            "default/train/0000.parquet",
            "default/train/0001.parquet",
            "default/partial-test/0000.parquet",
            "other/train/0000.parquet",
        ]));
        assert_eq!(c["default"]["train"].len(), 2);
        assert_eq!(
            c["default"]["test"],
            v(&["default/partial-test/0000.parquet"])
        );
        assert_eq!(c["other"]["train"].len(), 1);
    }
}
