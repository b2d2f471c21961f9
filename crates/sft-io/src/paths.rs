//! Before a job writes anything: no output may be one of its inputs (under any name, through
//! symbolic or hard links), no two outputs may be the same file, and every output must land
//! in a folder that exists and can be written.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// A path a job will write, with what it is (for messages) and how to pick another one.
#[derive(Debug, Clone)]
pub struct Output {
    pub path: PathBuf,
    /// What the file is, as the user knows it: `the output (-o)`, `the rejects file`, ...
    pub what: String,
    /// How to choose another path: `pass --rejects FILE`, ...
    pub hint: String,
}

impl Output {
    pub fn new(path: impl Into<PathBuf>, what: impl Into<String>, hint: impl Into<String>) -> Self {
        Output {
            path: path.into(),
            what: what.into(),
            hint: hint.into(),
        }
    }
}

/// Why a job must not start: the command line is wrong (exit 2).
#[derive(Debug, Clone)]
pub struct PathError {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  hint: {}", self.message, self.hint)
    }
}

impl std::error::Error for PathError {}

/// The identity of a file: its canonical path, and on Unix its device and inode (which
/// hard links share).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    canonical: Option<PathBuf>,
    inode: Option<(u64, u64)>,
}

impl Identity {
    fn same(&self, other: &Identity) -> bool {
        (self.canonical.is_some() && self.canonical == other.canonical)
            || (self.inode.is_some() && self.inode == other.inode)
    }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The identity of a path that may not exist yet: an existing file (followed through
/// symbolic links) by its canonical path and inode; a new one by its canonical folder and
/// its name.
fn identity(path: &Path) -> Identity {
    if let Ok(meta) = fs::metadata(path) {
        return Identity {
            canonical: path.canonicalize().ok(),
            inode: inode(&meta),
        };
    }
    // A dangling symbolic link would be replaced, not followed; it names nothing yet.
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let canonical = match (folder.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => Some(dir.join(name)),
        _ => None,
    };
    Identity {
        canonical,
        inode: None,
    }
}

/// Refuses a job whose outputs would overwrite (or delete) one of its inputs or each other.
///
/// `inputs` are the files the job reads (data files, tokenizer and template files); an
/// input that does not exist is skipped. Every clash names both paths and says how to pick
/// another output.
pub fn refuse_overwriting_inputs(inputs: &[PathBuf], outputs: &[Output]) -> Result<(), PathError> {
    let inputs: Vec<(&PathBuf, Identity)> = inputs
        .iter()
        .filter(|p| p.exists())
        .map(|p| (p, identity(p)))
        .collect();
    let mut seen: Vec<(&Output, Identity)> = Vec::new();
    for output in outputs {
        let id = identity(&output.path);
        if let Some((input, _)) = inputs.iter().find(|(_, i)| i.same(&id)) {
            let how = if output.path == **input {
                String::new()
            } else {
                format!(
                    " ({}, the same file under another name or through a link)",
                    input.display()
                )
            };
            return Err(PathError {
                message: format!(
                    "{} {} is also an input{how}; writing it would destroy the input",
                    output.what,
                    output.path.display(),
                ),
                hint: output.hint.clone(),
            });
        }
        if let Some((first, _)) = seen.iter().find(|(_, i)| i.same(&id)) {
            return Err(PathError {
                message: format!(
                    "{} {} and {} {} are the same file; one would overwrite the other",
                    first.what,
                    first.path.display(),
                    output.what,
                    output.path.display()
                ),
                hint: output.hint.clone(),
            });
        }
        seen.push((output, id));
    }
    Ok(())
}

/// Refuses an output whose folder does not exist or cannot be written, or that is a folder.
pub fn check_output_folder(output: &Output) -> Result<(), PathError> {
    let path = &output.path;
    if path.is_dir() {
        return Err(PathError {
            message: format!("{} {} is a folder", output.what, path.display()),
            hint: output.hint.clone(),
        });
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        let what = if folder.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(PathError {
            message: format!(
                "{} {}: the folder {} {what}",
                output.what,
                path.display(),
                folder.display()
            ),
            hint: format!("create it first (mkdir -p {})", folder.display()),
        });
    }
    // The only sure test of a folder's permissions is to create a file in it.
    if let Err(e) = tempfile::Builder::new()
        .prefix(".sft-write-test.")
        .tempfile_in(folder)
    {
        return Err(PathError {
            message: format!(
                "{} {}: cannot create a file in {}: {e}",
                output.what,
                path.display(),
                folder.display()
            ),
            hint: "write to a folder you have write access to".into(),
        });
    }
    Ok(())
}

/// Both checks for a job: every output's folder, then no clash with inputs or each other.
pub fn check_outputs(inputs: &[PathBuf], outputs: &[Output]) -> Result<(), PathError> {
    for output in outputs {
        check_output_folder(output)?;
    }
    refuse_overwriting_inputs(inputs, outputs)
}

/// The files directly in a folder (a tokenizer or model folder an output must not replace),
/// or the path itself when it is a file.
pub fn files_of(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(path: &Path) -> Output {
        Output::new(path, "the output", "pick another path")
    }

    #[test]
    fn the_same_file_under_any_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.jsonl");
        fs::write(&input, "{}\n").unwrap();
        let inputs = vec![input.clone()];
        // The same path, the path through `..`, a symbolic link and a hard link.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let dotted = sub.join("..").join("a.jsonl");
        let hard = dir.path().join("hard.jsonl");
        fs::hard_link(&input, &hard).unwrap();
        let mut clashes = vec![input.clone(), dotted, hard];
        #[cfg(unix)]
        {
            let soft = dir.path().join("soft.jsonl");
            std::os::unix::fs::symlink(&input, &soft).unwrap();
            clashes.push(soft);
            // A link to the folder, then the file's name.
            let linked = dir.path().join("linked");
            std::os::unix::fs::symlink(dir.path(), &linked).unwrap();
            clashes.push(linked.join("a.jsonl"));
        }
        for clash in clashes {
            let e = refuse_overwriting_inputs(&inputs, &[out(&clash)]).unwrap_err();
            assert!(e.message.contains(&clash.display().to_string()), "{e}");
            assert!(e.message.contains("is also an input"), "{e}");
            if clash != input {
                assert!(e.message.contains(&input.display().to_string()), "{e}");
            }
            assert_eq!(e.hint, "pick another path");
        }
        let other = dir.path().join("b.jsonl");
        refuse_overwriting_inputs(&inputs, &[out(&other)]).unwrap();
        // Two outputs that are one file.
        let e = refuse_overwriting_inputs(&inputs, &[out(&other), out(&sub.join("../b.jsonl"))])
            .unwrap_err();
        assert!(e.message.contains("are the same file"), "{e}");
    }

    #[test]
    fn missing_and_unwritable_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/out.jsonl");
        let e = check_output_folder(&out(&missing)).unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
        assert!(e.hint.contains("mkdir -p"), "{e}");
        let e = check_output_folder(&out(dir.path())).unwrap_err();
        assert!(e.message.contains("is a folder"), "{e}");
        check_output_folder(&out(&dir.path().join("fine.jsonl"))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.path().join("ro");
            fs::create_dir(&ro).unwrap();
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
            // Root may write anywhere; the check must agree with what a write would do.
            let writable = tempfile::tempfile_in(&ro).is_ok();
            let result = check_output_folder(&out(&ro.join("out.jsonl")));
            assert_eq!(result.is_ok(), writable, "{result:?}");
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}
