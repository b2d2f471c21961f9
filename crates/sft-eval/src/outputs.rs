//! What an evaluation reads and writes, checked before anything is scored: no output may
//! replace, or land inside, a checkpoint, the run, the base model or the data; and the
//! checkpoints named by Hub id resolved to their snapshot folders.

use std::path::{Path, PathBuf};

use sft_io::paths::{Output, Read};

use crate::EvalError;

/// The files and folders an evaluation writes.
#[derive(Debug, Clone, Default)]
pub struct EvalOutputs {
    /// The JSON report (`--report`); the prepared held-out rows go beside it, in
    /// `<stem>.data/`.
    pub report: Option<PathBuf>,
    /// The Markdown summary (`--markdown`).
    pub markdown: Option<PathBuf>,
    /// The plots folder (`--plots`).
    pub plots: Option<PathBuf>,
}

/// What an evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct EvalReads<'a> {
    pub checkpoints: &'a [PathBuf],
    pub run: Option<&'a Path>,
    pub dataset: &'a Path,
    pub base_model: Option<&'a Path>,
}

/// The names of the plots written into `--plots`.
pub const PLOTS: [&str; 3] = ["loss.svg", "heldout_loss.svg", "samples.svg"];

impl EvalOutputs {
    /// Where the prepared held-out rows (and their rejects) go: beside the report when there
    /// is one (so the rejects file named on stderr stays), else in `temporary`.
    pub fn work_dir(&self, temporary: &Path) -> PathBuf {
        match &self.report {
            Some(report) => {
                let stem = report
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                report.with_file_name(format!("{stem}.data"))
            }
            None => temporary.to_path_buf(),
        }
    }

    /// Refuses an output that would replace a file the evaluation reads or land inside a
    /// checkpoint, the run, the base model or the data (the command's fault).
    pub fn check(&self, reads: EvalReads, work_dir: &Path) -> Result<(), EvalError> {
        let usage = |e: sft_io::paths::PathError| EvalError::Options(e.to_string());
        let mut inputs = sft_io::paths::files_of(reads.dataset);
        for dir in reads
            .checkpoints
            .iter()
            .map(PathBuf::as_path)
            .chain(reads.run)
        {
            inputs.extend(sft_io::paths::files_of(dir));
        }
        let named = |path: &Path, what: &str, flag: &str, hint: String| {
            Output::new(path, format!("{what} ({flag})"), hint)
        };
        let mut files = Vec::new();
        if let Some(p) = &self.report {
            files.push(("the report", "--report", p));
        }
        if let Some(p) = &self.markdown {
            files.push(("the summary", "--markdown", p));
        }
        let replaced: Vec<Output> = files
            .iter()
            .map(|(what, flag, p)| named(p, what, flag, format!("pass {flag} another path")))
            .collect();
        sft_io::paths::check_outputs(&inputs, &replaced).map_err(usage)?;
        if let Some(dir) = &self.plots {
            let plots: Vec<Output> = PLOTS
                .iter()
                .map(|n| {
                    Output::new(
                        dir.join(n),
                        "a plot (--plots)",
                        "pass --plots another folder",
                    )
                })
                .collect();
            sft_io::paths::refuse_overwriting_inputs(&inputs, &plots).map_err(usage)?;
        }
        let mut read: Vec<Read> = reads
            .checkpoints
            .iter()
            .map(|c| Read::new(c, "the checkpoint (--checkpoint)"))
            .collect();
        read.extend(reads.run.map(|r| Read::new(r, "the run (--run)")));
        read.push(Read::new(reads.dataset, "the held-out data (--dataset)"));
        if let Some(base) = reads.base_model {
            read.push(Read::new(base, "the base model (--base-model)"));
        }
        let elsewhere = |flag: &str| {
            format!("pass {flag} a path outside the checkpoints, the run and the data")
        };
        let mut folders = Vec::new();
        if self.report.is_some() {
            folders.push(Output::new(
                work_dir,
                "the report's data folder",
                elsewhere("--report"),
            ));
        }
        if let Some(dir) = &self.plots {
            folders.push(Output::new(
                dir,
                "the plots folder (--plots)",
                elsewhere("--plots"),
            ));
        }
        let inside: Vec<Output> = files
            .iter()
            .map(|(what, flag, p)| named(p, what, flag, elsewhere(flag)))
            .collect();
        sft_io::paths::refuse_writing_into_reads(&read, &inside, &folders, &[]).map_err(usage)
    }
}

/// A `--checkpoint` as a folder: a Hub model id (`OWNER/NAME` or `hf://...`) becomes the
/// snapshot folder it resolves to in the shared cache (downloaded if missing, unless
/// offline); a local folder of the same name wins, as in transformers, and a mistyped path
/// under an existing folder (`runs/ckpt-5` under `runs/`) is not taken for an id.
pub fn resolve_checkpoint(checkpoint: &Path, revision: Option<&str>) -> Result<PathBuf, EvalError> {
    sft_model::locate::local_or_hub(checkpoint, revision)
        .map_err(|e| EvalError::Options(format!("--checkpoint {}: {e}", checkpoint.display())))
}
