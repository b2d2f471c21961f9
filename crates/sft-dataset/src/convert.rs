//! `convert`: rows in = rows written + rows rejected, every rejected row kept with its reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use sft_formats::convert::{convert_row, ConvertOptions};
use sft_io::write::{DatasetWriter, OutputFormat, WriteError};
use sft_io::{ByteCounter, DataFile, RawRow, ReadOptions, RowBatch};

use crate::location::Location;
use crate::pipeline::{self, parse_row, row_location, FileEvent};

pub struct ConvertJob {
    pub inputs: Vec<DataFile>,
    pub read: ReadOptions,
    pub options: ConvertOptions,
    pub output: PathBuf,
    /// Where rejected rows go; `None` puts them beside the output as `NAME.rejects.jsonl`.
    pub rejects: Option<PathBuf>,
    pub progress: ByteCounter,
}

/// One rejected row (or unreadable file), as written to the rejects file.
#[derive(Debug, Clone)]
pub struct Reject {
    pub location: Location,
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub rows_in: u64,
    pub written: u64,
    pub rejected: u64,
    /// Rejections per reason code.
    pub reasons: BTreeMap<String, u64>,
    /// The first few rejections, for the summary.
    pub first_rejects: Vec<Reject>,
    /// Files that could not be read (their rows are not counted in `rows_in`).
    pub unreadable_files: Vec<Reject>,
    /// Rows converted but not written: an input could not be read (to its end), so no
    /// output was written at all. rows_in = written + withheld + rejected.
    pub withheld: u64,
    /// Whether the output file was written (false after a read error that lost rows).
    pub output_written: bool,
    /// Rows known not to have been read (files that say how many rows they have).
    pub rows_not_read: u64,
    pub output: PathBuf,
    /// The rejects file, when one was written.
    pub rejects_file: Option<PathBuf>,
    pub bytes: u64,
    pub seconds: f64,
    /// Fields a Parquet output stores as JSON text (the `arrow.json` extension type),
    /// because their rows hold different JSON types.
    pub json_text_fields: Vec<String>,
}

enum Converted {
    Written(Value),
    Rejected {
        code: String,
        reason: String,
        /// `record`, or `record_excerpt` and `record_bytes` for a huge row.
        record: serde_json::Map<String, Value>,
        line: Option<u64>,
    },
}

fn convert_one(options: &ConvertOptions, batch: &RowBatch, raw: &RawRow) -> Converted {
    match parse_row(batch, raw) {
        Err(problem) => Converted::Rejected {
            code: if problem.invalid_utf8 {
                "invalid_utf8"
            } else {
                "invalid_json"
            }
            .into(),
            reason: problem.message,
            record: pipeline::reject_record(batch, raw, || {
                Value::String(
                    String::from_utf8_lossy(batch.json(raw).unwrap_or_default()).into_owned(),
                )
            }),
            line: problem.line,
        },
        Ok(row) => match convert_row(row, options) {
            Ok(out) => Converted::Written(out),
            Err(rejection) => Converted::Rejected {
                code: rejection.code,
                reason: rejection.reason,
                // Parsed again only for the rare rejected row, so the common path never clones.
                record: pipeline::reject_record(batch, raw, || {
                    parse_row(batch, raw).unwrap_or(Value::Null)
                }),
                line: None,
            },
        },
    }
}

/// The default rejects file: `out.jsonl` -> `out.rejects.jsonl`.
pub fn default_rejects_path(output: &std::path::Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "output".into());
    output.with_file_name(format!("{stem}.rejects.jsonl"))
}

const FIRST_REJECTS_KEPT: usize = 5;

/// Runs the conversion. Fails only when an output cannot be written; unreadable inputs and
/// rejected rows are reported in the summary and the rejects file. When an input cannot be
/// read to its end, no output is written (the rejects file still is).
pub fn convert(job: &ConvertJob) -> Result<ConvertSummary, WriteError> {
    let started = Instant::now();
    let rejects_path = job
        .rejects
        .clone()
        .unwrap_or_else(|| default_rejects_path(&job.output));
    pipeline::refuse_overwriting_inputs(
        &job.inputs,
        &[job.output.clone(), rejects_path.clone()],
        &job.output,
    )?;
    let mut writer = DatasetWriter::create(&job.output)?;
    let mut rejects: Option<DatasetWriter> = match &job.rejects {
        // Asked for by name: always written, even empty, so a pipeline can rely on it.
        Some(p) => Some(DatasetWriter::create_as(p, OutputFormat::JsonLines)?),
        None => None,
    };
    let mut summary = ConvertSummary {
        rows_in: 0,
        written: 0,
        rejected: 0,
        reasons: BTreeMap::new(),
        first_rejects: Vec::new(),
        unreadable_files: Vec::new(),
        withheld: 0,
        output_written: false,
        rows_not_read: 0,
        output: job.output.clone(),
        rejects_file: None,
        bytes: job.inputs.iter().map(|f| f.size).sum(),
        seconds: 0.0,
        json_text_fields: Vec::new(),
    };
    let mut failure: Option<WriteError> = None;
    let mut file_rows = vec![0u64; job.inputs.len()];
    let mut lost_rows = false;
    pipeline::run(
        &job.inputs,
        &job.read,
        &job.progress,
        |batch, raw| convert_one(&job.options, batch, raw),
        |file, event| {
            if failure.is_some() {
                return;
            }
            if let FileEvent::Row(..) = event {
                file_rows[file] += 1;
            }
            let result = match event {
                FileEvent::Opened(_) => Ok(()),
                FileEvent::Row(_, Converted::Written(row)) => {
                    summary.rows_in += 1;
                    summary.written += 1;
                    writer.write(&row)
                }
                FileEvent::Row(
                    raw,
                    Converted::Rejected {
                        code,
                        reason,
                        record,
                        line,
                    },
                ) => {
                    summary.rows_in += 1;
                    summary.rejected += 1;
                    let mut location = row_location(&job.inputs[file], raw);
                    location.line = line.or(location.line);
                    let mut entry = json!({
                        "file": location.file, "line": location.line, "row": location.row,
                        "code": code, "reason": reason,
                    });
                    if let Value::Object(entry) = &mut entry {
                        entry.extend(record);
                    }
                    *summary.reasons.entry(code.clone()).or_default() += 1;
                    if summary.first_rejects.len() < FIRST_REJECTS_KEPT {
                        summary.first_rejects.push(Reject {
                            location,
                            code,
                            reason,
                        });
                    }
                    write_reject(&mut rejects, &rejects_path, &entry)
                }
                FileEvent::Failed(error) => {
                    let unread =
                        pipeline::UnreadFile::of(&job.inputs[file], file_rows[file], &error);
                    lost_rows |= unread.lost_rows;
                    summary.rows_not_read += unread.rows_not_read;
                    summary.unreadable_files.push(Reject {
                        location: unread.location,
                        code: unread.code.as_str().into(),
                        reason: unread.reason,
                    });
                    write_reject(&mut rejects, &rejects_path, &unread.reject_entry)
                }
            };
            if let Err(e) = result {
                failure = Some(e);
            }
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    if lost_rows {
        // An output without the rows that could not be read would look complete: none is
        // written (the temporary file is removed when the writer is dropped).
        drop(writer);
        summary.withheld = summary.written;
        summary.written = 0;
    } else {
        summary.json_text_fields = writer.json_text_fields();
        summary.written = writer.finish()?;
        summary.output_written = true;
    }
    match rejects {
        Some(r) => {
            r.finish()?;
            summary.rejects_file = Some(rejects_path);
        }
        None if job.rejects.is_none() => {
            // A rejects file left by an earlier run would describe other data.
            let _ = std::fs::remove_file(&rejects_path);
        }
        None => {}
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Appends to the rejects file, creating it at the first reject.
pub(crate) fn write_reject(
    rejects: &mut Option<DatasetWriter>,
    path: &std::path::Path,
    entry: &Value,
) -> Result<(), WriteError> {
    if rejects.is_none() {
        *rejects = Some(DatasetWriter::create_as(path, OutputFormat::JsonLines)?);
    }
    rejects.as_mut().expect("just created").write(entry)
}
