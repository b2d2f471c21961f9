//! The output folder of a run: never a folder the run reads (the base model, its tokenizer,
//! the data), and never silently mixed with another run's files. A folder that holds a
//! previous run is used only to resume it (`--resume_from_checkpoint`) or when the user says
//! so (`--overwrite_output_dir`, transformers' name), and then the previous run's files are
//! removed first, so no checkpoint, log or model of it is taken for this run's.

use std::path::{Path, PathBuf};

/// Files a finished or interrupted run leaves at the top of its output folder. Tokenizer
/// files are not listed: they are copies of the base model's, and a run writes them again.
const RUN_FILES: &[&str] = &[
    "trainer_state.json",
    "training_args.json",
    "metrics.jsonl",
    "loss.svg",
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "adapter_config.json",
];

/// Whether a name in an output folder is a run's: its files, its checkpoints (also the
/// temporary folder of one being written) and the prepared data folder.
fn is_run_entry(name: &str, is_dir: bool) -> bool {
    if is_dir {
        let step = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        name == "data"
            || name.strip_prefix("checkpoint-").is_some_and(step)
            || name
                .strip_prefix(".checkpoint-")
                .and_then(|s| s.strip_suffix(".tmp"))
                .is_some_and(step)
    } else {
        RUN_FILES.contains(&name) || (name.starts_with("model-") && name.ends_with(".safetensors"))
    }
}

/// What a previous run left in `dir` (sorted names; empty when the folder is new or holds
/// none of a run's files).
pub fn previous_run(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            is_run_entry(&name, is_dir).then_some(name)
        })
        .collect();
    found.sort();
    found
}

/// Removes a previous run's files from `dir` (`--overwrite_output_dir`); other files stay.
pub fn clear_previous_run(dir: &Path) -> Result<Vec<String>, crate::TrainError> {
    let names = previous_run(dir);
    for name in &names {
        let path = dir.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| crate::TrainError::Io {
            path: path.clone(),
            message: format!("cannot remove the previous run's file: {e}"),
        })?;
    }
    Ok(names)
}

/// Why a run may not write into its output folder.
#[derive(Debug)]
pub enum OutputDirRefusal {
    /// The folder is, is inside, or holds something the run reads.
    Overlaps(sft_io::paths::PathError),
    /// The folder holds another run's files and the run neither resumes nor overwrites.
    HoldsAnotherRun { dir: PathBuf, found: Vec<String> },
    /// The path is a file.
    NotAFolder(PathBuf),
}

impl std::fmt::Display for OutputDirRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Overlaps(e) => write!(f, "{e}"),
            Self::HoldsAnotherRun { dir, found } => {
                let shown: Vec<&str> = found.iter().take(6).map(String::as_str).collect();
                write!(
                    f,
                    "--output_dir {}: holds another run ({}{}); a new run would mix its checkpoints and logs with that one's\n  hint: continue that run with --resume_from_checkpoint, pass --overwrite_output_dir to replace it, or choose a new folder",
                    dir.display(),
                    shown.join(", "),
                    if found.len() > shown.len() { ", ..." } else { "" }
                )
            }
            Self::NotAFolder(dir) => write!(
                f,
                "--output_dir {}: a file, not a folder\n  hint: pass a folder (it is created if missing)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for OutputDirRefusal {}

/// Checks the output folder of a training run before anything is loaded: it is a folder (or
/// new), it neither is nor lies inside nor holds anything in `reads` (through links too; the
/// checkpoint resumed from, `resume`, may lie inside it), and it holds no other run unless
/// the run resumes (`resume`) or `overwrite` is set.
pub fn check_output_dir(
    dir: &Path,
    reads: &[sft_io::paths::Read],
    resume: Option<&Path>,
    overwrite: bool,
) -> Result<(), OutputDirRefusal> {
    if dir.exists() && !dir.is_dir() {
        return Err(OutputDirRefusal::NotAFolder(dir.to_path_buf()));
    }
    let output = sft_io::paths::Output::new(
        dir,
        "--output_dir",
        "write the run to a new folder outside the model and data it reads",
    );
    let allowed: Vec<PathBuf> = resume.map(Path::to_path_buf).into_iter().collect();
    sft_io::paths::refuse_writing_into_reads(reads, &[], &[output], &allowed)
        .map_err(OutputDirRefusal::Overlaps)?;
    if resume.is_none() && !overwrite {
        let found = previous_run(dir);
        if !found.is_empty() {
            return Err(OutputDirRefusal::HoldsAnotherRun {
                dir: dir.to_path_buf(),
                found,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_run_is_found_and_only_its_files_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(previous_run(d).is_empty());
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        std::fs::write(d.join("tokenizer.json"), "{}").unwrap();
        assert!(previous_run(d).is_empty());
        std::fs::create_dir(d.join("checkpoint-10")).unwrap();
        std::fs::create_dir(d.join("checkpoint-best")).unwrap();
        std::fs::write(d.join("metrics.jsonl"), "").unwrap();
        std::fs::write(d.join("model-00001-of-00002.safetensors"), "").unwrap();
        assert_eq!(
            previous_run(d),
            [
                "checkpoint-10",
                "metrics.jsonl",
                "model-00001-of-00002.safetensors"
            ]
        );
        let e = check_output_dir(d, &[], None, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("holds another run (checkpoint-10, metrics.jsonl"),
            "{e}"
        );
        check_output_dir(d, &[], None, true).unwrap();
        check_output_dir(d, &[], Some(&d.join("checkpoint-10")), false).unwrap();
        clear_previous_run(d).unwrap();
        assert!(previous_run(d).is_empty());
        assert!(d.join("notes.txt").is_file() && d.join("checkpoint-best").is_dir());
    }
}
