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

/// Something a job reads that no output may be written into or over: a model, adapter,
/// tokenizer or checkpoint folder, or a dataset file or folder.
#[derive(Debug, Clone)]
pub struct Read {
    pub path: PathBuf,
    /// What it is, as the user knows it: `the base model (--model_name_or_path)`, ...
    pub what: String,
}

impl Read {
    pub fn new(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Read {
            path: path.into(),
            what: what.into(),
        }
    }
}

/// A path made absolute with every link followed, also when its last parts do not exist
/// yet: the longest existing prefix is resolved by the file system, the rest lexically
/// (`new/..` is where `mkdir -p` would land: the folder holding `new`).
pub fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    // Whether `out` still names something that exists (then links in it are followed).
    let mut exists = true;
    for part in absolute.components() {
        match part {
            Component::Prefix(_) | Component::RootDir => out.push(part.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
                // Back within what exists: links below are followed again.
                exists = exists || out.exists();
            }
            Component::Normal(name) => {
                out.push(name);
                if exists {
                    match out.canonicalize() {
                        Ok(real) => out = real,
                        Err(_) => exists = false,
                    }
                }
            }
        }
    }
    out
}

/// Refuses a job that would write into or over what it reads: an output (a file, or a
/// folder the job fills) that is a read folder or lies inside one, and an output folder that
/// holds a read file or folder (the job may replace or delete what is inside it). Links are
/// followed, so a second name for the same folder is no way around it. `allowed_inside`:
/// read paths that may sit inside an output folder (the checkpoint a run resumes from).
pub fn refuse_writing_into_reads(
    reads: &[Read],
    outputs: &[Output],
    output_folders: &[Output],
    allowed_inside: &[PathBuf],
) -> Result<(), PathError> {
    let allowed: Vec<PathBuf> = allowed_inside.iter().map(|p| resolved(p)).collect();
    let reads: Vec<(&Read, PathBuf)> = reads
        .iter()
        .filter(|r| r.path.exists())
        .map(|r| (r, resolved(&r.path)))
        .collect();
    for (output, is_folder) in outputs
        .iter()
        .map(|o| (o, false))
        .chain(output_folders.iter().map(|o| (o, true)))
    {
        let out = resolved(&output.path);
        for (read, real) in &reads {
            let through = |shown: &Path, real: &Path| {
                if shown.is_absolute() && shown == real {
                    String::new()
                } else {
                    format!(" ({})", real.display())
                }
            };
            if real.is_dir() && out.starts_with(real) {
                let relation = if &out == real { "is" } else { "is inside" };
                return Err(PathError {
                    message: format!(
                        "{} {}{} {relation} {} {}; writing there would change or destroy what the job reads",
                        output.what,
                        output.path.display(),
                        through(&output.path, &out),
                        read.what,
                        read.path.display(),
                    ),
                    hint: output.hint.clone(),
                });
            }
            if is_folder && real.starts_with(&out) && real != &out && !allowed.contains(real) {
                return Err(PathError {
                    message: format!(
                        "{} {} holds {} {}{}; the job writes and deletes files there, and could replace or delete it",
                        output.what,
                        output.path.display(),
                        read.what,
                        read.path.display(),
                        through(&read.path, real),
                    ),
                    hint: output.hint.clone(),
                });
            }
        }
    }
    Ok(())
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
    fn no_output_lands_in_or_over_a_folder_the_job_reads() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        fs::create_dir(&model).unwrap();
        fs::write(model.join("config.json"), "{}").unwrap();
        let data = dir.path().join("train.jsonl");
        fs::write(&data, "{}\n").unwrap();
        let reads = vec![
            Read::new(&model, "the base model (--model_name_or_path)"),
            Read::new(&data, "the training data"),
        ];
        let refused = |folder: &Path| {
            refuse_writing_into_reads(&reads, &[], &[out(folder)], &[]).unwrap_err()
        };
        // The model folder itself, a folder inside it, the same folder through `..`.
        let e = refused(&model);
        assert!(e.message.contains("is the base model"), "{e}");
        let e = refused(&model.join("run"));
        assert!(e.message.contains("is inside the base model"), "{e}");
        let e = refused(&dir.path().join("x/../model"));
        assert!(e.message.contains("is the base model"), "{e}");
        // A folder that holds what the job reads.
        let e = refused(dir.path());
        assert!(e.message.contains("holds the base model"), "{e}");
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&model, &link).unwrap();
            let e = refused(&link);
            assert!(e.message.contains("is the base model"), "{e}");
            assert!(
                e.message
                    .contains(&model.canonicalize().unwrap().display().to_string()),
                "{e}"
            );
        }
        // A file written inside a model folder.
        let e =
            refuse_writing_into_reads(&reads, &[out(&model.join("r.json"))], &[], &[]).unwrap_err();
        assert!(e.message.contains("is inside the base model"), "{e}");
        // A sibling folder is fine, and so is a checkpoint the run resumes from.
        refuse_writing_into_reads(&reads, &[], &[out(&dir.path().join("out"))], &[]).unwrap();
        let run = dir.path().join("out");
        let checkpoint = run.join("checkpoint-2");
        fs::create_dir_all(&checkpoint).unwrap();
        let with_resume = [Read::new(&checkpoint, "the checkpoint")];
        refuse_writing_into_reads(
            &with_resume,
            &[],
            &[out(&run)],
            std::slice::from_ref(&checkpoint),
        )
        .unwrap();
        refuse_writing_into_reads(&with_resume, &[], &[out(&run)], &[]).unwrap_err();
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
