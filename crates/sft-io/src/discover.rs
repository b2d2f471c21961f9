//! From the paths a person typed to the data files behind them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sniff::{is_data_extension, is_text_extension};
use crate::DataFile;

/// A path that cannot be used at all: the command line is wrong, not the data.
#[derive(Debug)]
pub struct DiscoverError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DiscoverError {}

fn err(path: &Path, message: impl Into<String>) -> DiscoverError {
    DiscoverError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Expands files and folders into data files, in a deterministic order.
///
/// A folder written by `datasets.Dataset.save_to_disk` (a `state.json` listing its
/// `.arrow` shards) gives those shards in order; a `DatasetDict` folder (`dataset_dict.json`)
/// gives the shards of every split; any other folder gives its data files (`.jsonl`,
/// `.json`, `.parquet`, `.arrow`, compressed or not), sorted by path, recursively. Each file
/// is read once, by its real path, however many names or links lead to it.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<DataFile>, DiscoverError> {
    discover_noting(paths).map(|d| d.files)
}

/// The data files behind some paths, and what the walk left out and why.
#[derive(Debug, Default)]
pub struct Discovered {
    pub files: Vec<DataFile>,
    /// Paths left out: symbolic-link loops, files reached twice, files that are not data
    /// (`.txt` in a folder, `prepare`'s manifests), one line each.
    pub notes: Vec<String>,
}

/// As [`discover`], with what was left out.
pub fn discover_noting(paths: &[PathBuf]) -> Result<Discovered, DiscoverError> {
    let mut walk = Walk::default();
    for path in paths {
        if crate::stdin::is_stdin(path) {
            let (spool, size) = crate::stdin::stdin_file()
                .map_err(|e| err(path, format!("cannot read standard input: {e}")))?;
            let mut file = data_file(&spool, size);
            file.display = crate::stdin::STDIN_NAME.to_string();
            walk.found.files.push(file);
            continue;
        }
        let meta = fs::metadata(path).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                "no such file or folder".to_string()
            } else {
                e.to_string()
            };
            err(path, message)
        })?;
        if meta.is_dir() {
            let before = walk.found.files.len();
            walk.folder(path)?;
            if walk.found.files.len() == before {
                let mut message = "the folder holds no data files (.jsonl, .json, .parquet, .arrow, optionally .gz or .zst)".to_string();
                if walk.text_files > 0 {
                    message.push_str("; text files (.txt) are read only when named one by one, with --text-split");
                }
                return Err(err(path, message));
            }
        } else {
            walk.file(path, meta.len());
        }
    }
    if walk.text_files > 0 {
        walk.found.notes.push(format!(
            "{} in the folders {} not read: name text files one by one to read them (with --text-split)",
            if walk.text_files == 1 { "1 text file (.txt)".to_string() } else { format!("{} text files (.txt)", walk.text_files) },
            if walk.text_files == 1 { "was" } else { "were" }
        ));
    }
    Ok(walk.found)
}

#[derive(Default)]
struct Walk {
    found: Discovered,
    /// Real paths of the files taken, with the name they were taken under.
    files_seen: HashMap<PathBuf, String>,
    /// Real paths of the folders being walked (the current chain), to see loops.
    ancestors: Vec<PathBuf>,
    /// Real paths of the folders walked.
    folders_seen: HashSet<PathBuf>,
    text_files: u64,
}

impl Walk {
    fn file(&mut self, path: &Path, size: u64) {
        let real = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(first) = self.files_seen.get(&real) {
            self.found.notes.push(format!(
                "{}: the same file as {first}, read once",
                path.display()
            ));
            return;
        }
        self.files_seen.insert(real, path.display().to_string());
        self.found.files.push(data_file(path, size));
    }

    fn folder(&mut self, dir: &Path) -> Result<(), DiscoverError> {
        let real = dir.canonicalize().map_err(|e| err(dir, e.to_string()))?;
        if self.ancestors.contains(&real) {
            self.found.notes.push(format!(
                "{}: a symbolic-link loop (it leads back to {}), not followed",
                dir.display(),
                real.display()
            ));
            return Ok(());
        }
        if !self.folders_seen.insert(real.clone()) {
            self.found.notes.push(format!(
                "{}: a folder already read under another name, read once",
                dir.display()
            ));
            return Ok(());
        }
        self.ancestors.push(real);
        let result = self.walk_folder(dir);
        self.ancestors.pop();
        result
    }

    fn walk_folder(&mut self, dir: &Path) -> Result<(), DiscoverError> {
        let read_json = |p: &Path| -> Result<Value, DiscoverError> {
            let text = fs::read_to_string(p).map_err(|e| err(p, e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| err(p, format!("invalid JSON: {e}")))
        };
        let dict = dir.join("dataset_dict.json");
        if dict.is_file() {
            let splits = read_json(&dict)?;
            let names: Vec<String> = splits
                .get("splits")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                self.folder(&dir.join(name))?;
            }
            return Ok(());
        }
        let state = dir.join("state.json");
        if state.is_file() {
            let state = read_json(&state)?;
            if let Some(shards) = state.get("_data_files").and_then(Value::as_array) {
                for shard in shards {
                    if let Some(name) = shard.get("filename").and_then(Value::as_str) {
                        let p = dir.join(name);
                        let size = fs::metadata(&p)
                            .map_err(|e| {
                                err(&p, format!("listed in state.json but unreadable: {e}"))
                            })?
                            .len();
                        self.file(&p, size);
                    }
                }
                return Ok(());
            }
        }
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| err(dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                self.folder(&p)?;
            } else if is_manifest(&name) {
                self.found.notes.push(format!(
                    "{}: a manifest of `sft-data prepare`, not data; not read",
                    p.display()
                ));
            } else if is_data_extension(&p)
                && !matches!(
                    name.as_str(),
                    "dataset_info.json" | "state.json" | "dataset_dict.json"
                )
            {
                let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                self.file(&p, size);
            } else if is_text_extension(&p) {
                self.text_files += 1;
            }
        }
        Ok(())
    }
}

/// `prepare` writes `OUT.manifest.json` beside its table.
fn is_manifest(name: &str) -> bool {
    name == "manifest.json" || name.ends_with(".manifest.json")
}

fn data_file(path: &Path, size: u64) -> DataFile {
    DataFile {
        path: path.to_path_buf(),
        display: path.display().to_string(),
        size,
    }
}
