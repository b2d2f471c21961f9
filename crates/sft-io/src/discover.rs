//! From the paths a person typed to the data files behind them.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sniff::is_data_extension;
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
/// `.json`, `.parquet`, `.arrow`, compressed or not), sorted by path, recursively.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<DataFile>, DiscoverError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                "no such file or folder".to_string()
            } else {
                e.to_string()
            };
            err(path, message)
        })?;
        if meta.is_dir() {
            let before = files.len();
            walk_folder(path, &mut files)?;
            if files.len() == before {
                return Err(err(
                    path,
                    "the folder holds no data files (.jsonl, .json, .parquet, .arrow, optionally .gz or .zst)",
                ));
            }
        } else {
            files.push(data_file(path, meta.len()));
        }
    }
    Ok(files)
}

fn data_file(path: &Path, size: u64) -> DataFile {
    DataFile {
        path: path.to_path_buf(),
        display: path.display().to_string(),
        size,
    }
}

fn walk_folder(dir: &Path, files: &mut Vec<DataFile>) -> Result<(), DiscoverError> {
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
            walk_folder(&dir.join(name), files)?;
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
                        .map_err(|e| err(&p, format!("listed in state.json but unreadable: {e}")))?
                        .len();
                    files.push(data_file(&p, size));
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
            walk_folder(&p, files)?;
        } else if is_data_extension(&p)
            && !matches!(
                name.as_str(),
                "dataset_info.json" | "state.json" | "dataset_dict.json"
            )
        {
            let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            files.push(data_file(&p, size));
        }
    }
    Ok(())
}
