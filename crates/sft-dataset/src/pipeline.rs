//! The loop every dataset job shares: read batches on one thread, work on the rows of a
//! batch in parallel, fold the results in input order on the caller's thread.

use std::sync::mpsc;

use rayon::prelude::*;
use serde_json::Value;
use sft_io::{
    open_counted, ByteCounter, DataFile, FileError, FileKind, RawRow, ReadOptions, RowBatch,
    RowContent,
};

use crate::location::Location;

/// Why a row could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseProblem {
    pub invalid_utf8: bool,
    pub message: String,
    /// The line of the problem when it is not the row's first line (multi-line JSON).
    pub line: Option<u64>,
    /// What to do, when it is not the code's usual advice.
    pub hint: Option<&'static str>,
}

/// Parses one row's JSON text (checking UTF-8 first, to say so precisely).
pub fn parse_row(batch: &RowBatch, raw: &RawRow) -> Result<Value, ParseProblem> {
    let bytes = match &raw.content {
        RowContent::Value(v) => return Ok(v.clone()),
        RowContent::Json(range) => &batch.buf[range.clone()],
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line_offset = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
        let column = at
            - bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        ParseProblem {
            invalid_utf8: true,
            message: format!(
                "invalid UTF-8 at byte {} (column {column}): {}",
                at,
                describe_bad_bytes(&bytes[at..])
            ),
            line: raw.line.map(|l| l + line_offset),
            hint: None,
        }
    })?;
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = full
            .rfind(" at line ")
            .map(|i| full[..i].to_string())
            .unwrap_or(full);
        // Not broken JSON: nesting deeper than the parser goes (128 levels).
        let too_deep = message.contains("recursion limit exceeded");
        let message = if too_deep {
            "the row nests lists or objects more than 128 levels deep, deeper than rows are read (it may be valid JSON)".to_string()
        } else {
            message
        };
        ParseProblem {
            invalid_utf8: false,
            message: format!("invalid JSON at column {}: {message}", e.column()),
            line: raw.line.map(|l| l + e.line().saturating_sub(1) as u64),
            hint: too_deep.then_some("no dataset row needs such nesting: flatten the field or drop the row"),
        }
    })
}

fn describe_bad_bytes(rest: &[u8]) -> String {
    let shown: Vec<String> = rest.iter().take(4).map(|b| format!("{b:#04x}")).collect();
    format!("bytes {} (Latin-1 or Windows-1252 text?)", shown.join(" "))
}

/// What the pipeline tells the fold about each file.
pub enum FileEvent<'a, T> {
    /// The file opened; its sniffed kind.
    Opened(FileKind),
    /// One row and the result of the parallel work on it, in input order.
    Row(&'a RawRow, T),
    /// The file could not be read (from the start, or from some point on).
    Failed(FileError),
}

/// Runs `work` over every row of every file in parallel and hands the results to `fold`
/// in input order, file by file. Reading runs one batch ahead on its own thread.
pub fn run<T, W, F>(
    files: &[DataFile],
    options: &ReadOptions,
    counter: &ByteCounter,
    work: W,
    mut fold: F,
) where
    T: Send,
    W: Fn(&RowBatch, &RawRow) -> T + Sync,
    F: FnMut(usize, FileEvent<'_, T>),
{
    for (file_index, file) in files.iter().enumerate() {
        let mut reader = match open_counted(file, options, counter) {
            Ok(r) => r,
            Err(e) => {
                fold(file_index, FileEvent::Failed(e));
                continue;
            }
        };
        fold(file_index, FileEvent::Opened(reader.kind()));
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Result<RowBatch, FileError>>(2);
            scope.spawn(move || loop {
                match reader.next_batch() {
                    Ok(Some(batch)) => {
                        if tx.send(Ok(batch)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            });
            for message in rx {
                match message {
                    Ok(batch) => {
                        let results: Vec<T> = batch
                            .rows
                            .par_iter()
                            .with_min_len(64)
                            .map(|raw| work(&batch, raw))
                            .collect();
                        for (raw, result) in batch.rows.iter().zip(results) {
                            fold(file_index, FileEvent::Row(raw, result));
                        }
                    }
                    Err(e) => fold(file_index, FileEvent::Failed(e)),
                }
            }
        });
    }
}

/// The issue code of a file that cannot be read (as a whole or from some point on).
pub fn file_error_code(kind: sft_io::FileErrorKind) -> sft_formats::IssueCode {
    use sft_formats::IssueCode;
    use sft_io::FileErrorKind;
    match kind {
        FileErrorKind::Empty => IssueCode::EmptyFile,
        FileErrorKind::LfsPointer => IssueCode::LfsPointer,
        FileErrorKind::Binary => IssueCode::BinaryFile,
        FileErrorKind::Unreadable => IssueCode::UnreadableFile,
    }
}

/// The location of a row in a file.
pub fn row_location(file: &DataFile, raw: &RawRow) -> Location {
    Location {
        file: file.display.clone(),
        line: raw.line,
        row: Some(raw.index),
    }
}

/// The errors `check` reports on a row (its row validation), which make every command
/// that reads rows refuse the row: `prepare` (and so `sft-train` and `sft-eval`) rejects
/// it, `show` shows why, `render` writes the error. Warnings are not returned.
///
/// `ignore` lists codes a command does not care about (`render` of prompts has no reply);
/// rows in a convertible shape are left to the command's own `needs_conversion` message.
/// `text_field` is the column text rows are read from: with another column than `text`,
/// the check of `text` does not apply.
pub fn row_errors(
    row: &Value,
    ignore: &[sft_formats::IssueCode],
    text_field: &str,
) -> Vec<sft_formats::RowIssue> {
    use sft_formats::{Format, RowKind, Severity};
    let checked = sft_formats::validate_row(row);
    if matches!(checked.kind, RowKind::Convertible(_)) {
        return Vec::new();
    }
    let other_text_field = checked.kind == RowKind::Format(Format::Text) && text_field != "text";
    checked
        .issues
        .into_iter()
        .filter(|i| i.severity() == Severity::Error && !ignore.contains(&i.code))
        .filter(|i| !(other_text_field && i.path == "text"))
        .collect()
}

/// One line for a row error: `code at path: message`.
pub fn describe_row_error(issue: &sft_formats::RowIssue) -> String {
    if issue.path.is_empty() {
        format!("{}: {}", issue.code, issue.message)
    } else {
        format!("{} at {}: {}", issue.code, issue.path, issue.message)
    }
}

/// Whether a file error loses rows: every error but an empty file (which has none).
pub fn loses_rows(error: &FileError) -> bool {
    error.kind != sft_io::FileErrorKind::Empty
}

/// A file that could not be read (as a whole or from some point on), as every job
/// reports it: where, the issue code, the reason with what was left unread, and whether
/// rows were lost (an empty file loses none).
#[derive(Debug, Clone)]
pub struct UnreadFile {
    pub location: Location,
    pub code: sft_formats::IssueCode,
    pub reason: String,
    pub lost_rows: bool,
    /// Rows the file says it has that were not read (0 when it does not say).
    pub rows_not_read: u64,
    /// The rejects file's entry for it.
    pub reject_entry: serde_json::Value,
}

impl UnreadFile {
    /// What `error` did to `file`, of which `rows_read` rows had been read.
    pub fn of(file: &DataFile, rows_read: u64, error: &FileError) -> UnreadFile {
        let lost_rows = loses_rows(error);
        let mut reason = error.message.clone();
        if lost_rows {
            reason = format!("{reason} ({})", not_read_note(rows_read, error));
        }
        let code = file_error_code(error.kind);
        let reject_entry = serde_json::json!({
            "file": file.display, "line": error.line,
            "code": code.as_str(), "reason": reason,
            "rows_read": rows_read, "rows_not_read": error.rows_not_read,
        });
        UnreadFile {
            location: Location {
                file: file.display.clone(),
                line: error.line,
                row: None,
            },
            code,
            reason,
            lost_rows,
            rows_not_read: if lost_rows {
                error.rows_not_read.unwrap_or(0)
            } else {
                0
            },
            reject_entry,
        }
    }
}

/// What a read error left unread, for summaries: `16,384 rows read, 23,616 not read`, or
/// `16,384 rows read; the rest of the file was not read` when the file does not say how
/// many rows it has.
pub fn not_read_note(rows_read: u64, error: &FileError) -> String {
    use crate::text::thousands;
    match (error.rows_not_read, rows_read) {
        (Some(n), r) => format!("{} rows read, {} not read", thousands(r), thousands(n)),
        (None, 0) => "no row read".to_string(),
        (None, r) => format!(
            "{} rows read; the rest of the file was not read",
            thousands(r)
        ),
    }
}

/// The largest record a rejects file keeps whole; a larger one is kept as an excerpt.
pub const MAX_REJECT_RECORD_BYTES: usize = 1 << 20;

/// The fields that keep a rejected row in a rejects file: `record` (the row, or its text
/// when it is not JSON), or for a row over [`MAX_REJECT_RECORD_BYTES`] `record_excerpt`
/// (its first MiB of text, cut at a character) and `record_bytes`, so that one huge line
/// does not make a huge rejects file.
pub fn reject_record(
    batch: &RowBatch,
    raw: &RawRow,
    row: impl FnOnce() -> Value,
) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    let bytes = match batch.json(raw) {
        Some(b) => std::borrow::Cow::Borrowed(b),
        // A built row (a text document): its size as JSON.
        None => match &raw.content {
            RowContent::Value(v) => {
                std::borrow::Cow::Owned(serde_json::to_vec(v).unwrap_or_default())
            }
            RowContent::Json(_) => std::borrow::Cow::Borrowed(&[][..]),
        },
    };
    if bytes.len() > MAX_REJECT_RECORD_BYTES {
        let mut end = MAX_REJECT_RECORD_BYTES;
        // Back to the start of a UTF-8 character.
        while end > 0 && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        fields.insert(
            "record_excerpt".into(),
            Value::String(String::from_utf8_lossy(&bytes[..end]).into_owned()),
        );
        fields.insert("record_bytes".into(), Value::from(bytes.len() as u64));
    } else {
        fields.insert("record".into(), row());
    }
    fields
}

/// The library's own guard (the commands check first, with better messages): a job never
/// writes over one of its inputs, whoever calls it.
pub fn refuse_overwriting_inputs(
    inputs: &[DataFile],
    outputs: &[std::path::PathBuf],
    output: &std::path::Path,
) -> Result<(), sft_io::write::WriteError> {
    let inputs: Vec<std::path::PathBuf> = inputs.iter().map(|f| f.path.clone()).collect();
    let outputs: Vec<sft_io::paths::Output> = outputs
        .iter()
        .map(|p| sft_io::paths::Output::new(p, "the output", "write to another file"))
        .collect();
    sft_io::paths::refuse_overwriting_inputs(&inputs, &outputs).map_err(|e| {
        sft_io::write::WriteError {
            path: output.to_path_buf(),
            message: e.to_string(),
        }
    })
}
