//! One pass over the input rows (parsed in parallel, folded in order), the rejects file,
//! and the errors the operations end with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sft_dataset::pipeline::{self, parse_row, row_location, FileEvent};
use sft_dataset::Location;
use sft_io::write::{DatasetWriter, OutputFormat, WriteError};
use sft_io::{ByteCounter, DataFile, RawRow, ReadOptions};

/// Why an operation stopped.
#[derive(Debug)]
pub enum OpError {
    /// The command asks for something impossible (exit 2).
    Usage(String),
    /// The data cannot be processed as asked (exit 1).
    Data(String),
    /// An output could not be written (exit 1).
    Write(WriteError),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Usage(m) | OpError::Data(m) => f.write_str(m),
            OpError::Write(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpError {}

impl From<WriteError> for OpError {
    fn from(e: WriteError) -> Self {
        OpError::Write(e)
    }
}

/// The input files of an operation.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub files: Vec<DataFile>,
    pub read: ReadOptions,
    pub progress: ByteCounter,
}

/// A row that cannot be used, with what goes to the rejects file.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub code: String,
    pub reason: String,
    /// The line of the problem, when it is not the row's first line.
    pub line: Option<u64>,
    pub record: Map<String, Value>,
}

/// Where a row is: its number among all input rows (0-based, across files) and its file.
pub struct RowAt<'a> {
    pub seq: u64,
    pub file: &'a DataFile,
    pub raw: &'a RawRow,
}

impl RowAt<'_> {
    pub fn location(&self) -> Location {
        row_location(self.file, self.raw)
    }
}

/// Runs `work` on every parsed row in parallel and `fold` on the results in input order.
/// A file that cannot be read (to its end) stops the pass: an operation never writes an
/// output that silently lacks rows. Returns the number of rows.
pub fn each_row<T: Send>(
    input: &Input,
    work: impl Fn(&DataFile, Value) -> T + Sync,
    mut fold: impl FnMut(RowAt<'_>, Result<T, Box<BadRow>>) -> Result<(), OpError>,
) -> Result<u64, OpError> {
    let mut seq = 0u64;
    let mut failure: Option<OpError> = None;
    let mut file_rows = vec![0u64; input.files.len()];
    // One file at a time, so that `work` knows which file its row is from.
    for (index, file) in input.files.iter().enumerate() {
        if failure.is_some() {
            break;
        }
        pipeline::run(
            std::slice::from_ref(file),
            &input.read,
            &input.progress,
            |batch, raw| match parse_row(batch, raw) {
                Ok(value) => Ok(work(file, value)),
                Err(problem) => Err(Box::new(BadRow {
                    code: if problem.invalid_utf8 {
                        "invalid_utf8"
                    } else {
                        "invalid_json"
                    }
                    .into(),
                    reason: problem.message,
                    line: problem.line,
                    record: pipeline::reject_record(batch, raw, || {
                        Value::String(
                            String::from_utf8_lossy(batch.json(raw).unwrap_or_default())
                                .into_owned(),
                        )
                    }),
                })),
            },
            |_, event| {
                if failure.is_some() {
                    return;
                }
                match event {
                    FileEvent::Opened(_) => {}
                    FileEvent::Row(raw, result) => {
                        file_rows[index] += 1;
                        let at = RowAt { seq, file, raw };
                        seq += 1;
                        if let Err(e) = fold(at, result) {
                            failure = Some(e);
                        }
                    }
                    FileEvent::Failed(error) if error.kind == sft_io::FileErrorKind::Empty => {}
                    FileEvent::Failed(error) => {
                        let mut location = Location::file(file.display.clone());
                        location.line = error.line;
                        failure = Some(OpError::Data(format!(
                            "{location}: {} ({}); nothing was written\n  hint: run `sft-data check {}` to see what is wrong with the file",
                            error.message,
                            pipeline::not_read_note(file_rows[index], &error),
                            file.display
                        )));
                    }
                }
            },
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(seq),
    }
}

/// The rejects file of an operation: every row it does not write, with where it was,
/// a code and a reason, and the row itself.
pub struct Rejects {
    path: PathBuf,
    writer: Option<DatasetWriter>,
    /// Named by the user: written even when empty.
    asked: bool,
    pub count: u64,
    pub reasons: BTreeMap<String, u64>,
}

impl Rejects {
    pub fn new(path: &Path, asked: bool) -> Result<Rejects, OpError> {
        let writer = if asked {
            Some(DatasetWriter::create_as(path, OutputFormat::JsonLines)?)
        } else {
            None
        };
        Ok(Rejects {
            path: path.to_path_buf(),
            writer,
            asked,
            count: 0,
            reasons: BTreeMap::new(),
        })
    }

    pub fn add(
        &mut self,
        location: &Location,
        code: &str,
        reason: &str,
        record: Map<String, Value>,
    ) -> Result<(), OpError> {
        let mut entry = json!({
            "file": location.file, "line": location.line, "row": location.row,
            "code": code, "reason": reason,
        });
        if let Value::Object(entry) = &mut entry {
            entry.extend(record);
        }
        if self.writer.is_none() {
            self.writer = Some(DatasetWriter::create_as(
                &self.path,
                OutputFormat::JsonLines,
            )?);
        }
        self.writer.as_mut().expect("just created").write(&entry)?;
        self.count += 1;
        *self.reasons.entry(code.to_string()).or_default() += 1;
        Ok(())
    }

    /// A bad row of the input.
    pub fn bad_row(&mut self, at: &RowAt<'_>, bad: BadRow) -> Result<(), OpError> {
        let mut location = at.location();
        location.line = bad.line.or(location.line);
        self.add(&location, &bad.code, &bad.reason, bad.record)
    }

    /// Finishes the file; `None` when there was nothing to reject and no file was asked
    /// for (a rejects file left by an earlier run is removed: it would describe other data).
    pub fn finish(self) -> Result<Option<PathBuf>, OpError> {
        match self.writer {
            Some(w) => {
                w.finish()?;
                Ok(Some(self.path))
            }
            None => {
                if !self.asked {
                    let _ = std::fs::remove_file(&self.path);
                }
                Ok(None)
            }
        }
    }
}

/// The record of a row for the rejects file.
pub fn record(row: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("record".into(), row);
    m
}

/// The default rejects file beside an output: `out.jsonl` -> `out.rejects.jsonl`, and for
/// an output folder `DIR` -> `DIR.rejects.jsonl` beside it.
pub fn default_rejects_path(output: &Path) -> PathBuf {
    if output.extension().is_none() || output.is_dir() {
        let name = output
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "output".into());
        return output.with_file_name(format!("{name}.rejects.jsonl"));
    }
    sft_dataset::convert::default_rejects_path(output)
}
