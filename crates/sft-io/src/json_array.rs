//! JSON files: an array of rows, read one element at a time so memory stays flat and every
//! row keeps its line number; or one object holding the list of rows.

use std::io::BufRead;

use serde_json::Value;

use crate::{
    FileError, FileKind, RawRow, RowBatch, RowContent, RowReader, BATCH_BYTES, BATCH_ROWS,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// Between elements: whitespace and commas.
    Between,
    /// Inside an object or array element, `depth` brackets deep.
    Nested {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// Inside a top-level string element.
    Str { escaped: bool },
    /// Inside a top-level number or literal.
    Scalar,
    /// After the closing `]`.
    Done,
}

pub(crate) struct JsonArrayReader {
    input: Box<dyn BufRead + Send>,
    scan: Scan,
    finished: bool,
    /// An error found after the last rows: reported on the next call.
    pending: Option<FileError>,
}

/// Where the scanner is in the file.
struct Scan {
    state: State,
    line: u64,
    index: u64,
    /// Line where the current element started.
    element_line: u64,
}

impl JsonArrayReader {
    pub(crate) fn new(input: Box<dyn BufRead + Send>) -> Self {
        JsonArrayReader {
            input,
            scan: Scan {
                state: State::Start,
                line: 1,
                index: 0,
                element_line: 1,
            },
            finished: false,
            pending: None,
        }
    }
}

/// The line of the first non-whitespace byte left in `input`, if any.
fn trailing_content(input: &mut Box<dyn BufRead + Send>, mut line: u64) -> Option<u64> {
    loop {
        let chunk = input.fill_buf().ok()?;
        if chunk.is_empty() {
            return None;
        }
        for &b in chunk {
            if b == b'\n' {
                line += 1;
            } else if !b.is_ascii_whitespace() {
                return Some(line);
            }
        }
        let n = chunk.len();
        input.consume(n);
    }
}

impl Scan {
    fn push_row(&mut self, batch: &mut RowBatch, start: usize) {
        batch.rows.push(RawRow {
            line: Some(self.element_line),
            index: self.index,
            content: RowContent::Json(start..batch.buf.len()),
        });
        self.index += 1;
    }
}

impl RowReader for JsonArrayReader {
    fn kind(&self) -> FileKind {
        FileKind::JsonArray
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError> {
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        if self.finished {
            return Ok(None);
        }
        let scan = &mut self.scan;
        // Batches end between elements, so no element spans two batches.
        let mut batch = RowBatch::default();
        // Start of the element being copied, in `batch.buf`.
        let mut element_start = 0;
        loop {
            let chunk = self.input.fill_buf().map_err(|e| {
                let mut err =
                    FileError::unreadable(format!("reading stopped near line {}: {e}", scan.line));
                err.line = Some(scan.line);
                err
            })?;
            if chunk.is_empty() {
                self.finished = true;
                match scan.state {
                    State::Done => {}
                    State::Start => {
                        return Err(FileError::unreadable(
                            "the file does not start with a JSON array `[`",
                        ))
                    }
                    State::Between => {
                        let mut err = FileError::unreadable(
                            "the JSON array is not closed with `]`: the file is probably truncated",
                        );
                        err.line = Some(scan.line);
                        return Err(err);
                    }
                    // A cut-off element: deliver it, so its parse error names its line.
                    State::Nested { .. } | State::Str { .. } | State::Scalar => {
                        scan.push_row(&mut batch, element_start);
                    }
                }
                return Ok(if batch.rows.is_empty() {
                    None
                } else {
                    Some(batch)
                });
            }
            let mut consumed = 0;
            let mut batch_full = false;
            for (i, &b) in chunk.iter().enumerate() {
                consumed = i + 1;
                match scan.state {
                    State::Start => match b {
                        b'[' => scan.state = State::Between,
                        0xEF | 0xBB | 0xBF => {}
                        b if b.is_ascii_whitespace() => {}
                        _ => {
                            return Err(FileError::unreadable(format!(
                                "line {}: expected a JSON array `[`, found `{}`",
                                scan.line, b as char
                            )))
                        }
                    },
                    State::Between => match b {
                        b',' => {}
                        b']' => scan.state = State::Done,
                        b if b.is_ascii_whitespace() => {}
                        _ => {
                            scan.element_line = scan.line;
                            element_start = batch.buf.len();
                            batch.buf.push(b);
                            scan.state = match b {
                                b'{' | b'[' => State::Nested {
                                    depth: 1,
                                    in_string: false,
                                    escaped: false,
                                },
                                b'"' => State::Str { escaped: false },
                                _ => State::Scalar,
                            };
                        }
                    },
                    State::Nested {
                        depth,
                        in_string,
                        escaped,
                    } => {
                        batch.buf.push(b);
                        scan.state = if in_string {
                            match (escaped, b) {
                                (true, _) => State::Nested {
                                    depth,
                                    in_string: true,
                                    escaped: false,
                                },
                                (false, b'\\') => State::Nested {
                                    depth,
                                    in_string: true,
                                    escaped: true,
                                },
                                (false, b'"') => State::Nested {
                                    depth,
                                    in_string: false,
                                    escaped: false,
                                },
                                _ => scan.state,
                            }
                        } else {
                            match b {
                                b'"' => State::Nested {
                                    depth,
                                    in_string: true,
                                    escaped: false,
                                },
                                b'{' | b'[' => State::Nested {
                                    depth: depth + 1,
                                    in_string,
                                    escaped,
                                },
                                b'}' | b']' if depth == 1 => {
                                    scan.push_row(&mut batch, element_start);
                                    State::Between
                                }
                                b'}' | b']' => State::Nested {
                                    depth: depth - 1,
                                    in_string,
                                    escaped,
                                },
                                _ => scan.state,
                            }
                        };
                    }
                    State::Str { escaped } => {
                        batch.buf.push(b);
                        scan.state = match (escaped, b) {
                            (true, _) => State::Str { escaped: false },
                            (false, b'\\') => State::Str { escaped: true },
                            (false, b'"') => {
                                scan.push_row(&mut batch, element_start);
                                State::Between
                            }
                            _ => scan.state,
                        };
                    }
                    State::Scalar => match b {
                        b',' | b']' => {
                            scan.push_row(&mut batch, element_start);
                            scan.state = if b == b']' {
                                State::Done
                            } else {
                                State::Between
                            };
                        }
                        b if b.is_ascii_whitespace() => {
                            scan.push_row(&mut batch, element_start);
                            scan.state = State::Between;
                        }
                        _ => batch.buf.push(b),
                    },
                    State::Done => {}
                }
                if b == b'\n' {
                    scan.line += 1;
                }
                if scan.state == State::Done {
                    break;
                }
                if scan.state == State::Between
                    && (batch.buf.len() >= BATCH_BYTES || batch.rows.len() >= BATCH_ROWS)
                {
                    batch_full = true;
                    break;
                }
            }
            self.input.consume(consumed);
            if batch_full {
                return Ok(Some(batch));
            }
            if scan.state == State::Done {
                self.finished = true;
                // Anything but whitespace after the closing `]` would be lost silently.
                if let Some(line) = trailing_content(&mut self.input, scan.line) {
                    let mut err = FileError::unreadable(format!(
                        "line {line}: there is more after the closing `]` of the JSON array (a second array, or JSON lines in a .json file?)"
                    ));
                    err.line = Some(line);
                    if batch.rows.is_empty() {
                        return Err(err);
                    }
                    self.pending = Some(err);
                }
                return Ok(if batch.rows.is_empty() {
                    None
                } else {
                    Some(batch)
                });
            }
        }
    }
}

/// Reads a `.json` file holding one object: the list of rows inside it (under `data`,
/// `rows`, `train` or the only list of objects), or the object as the one row.
pub(crate) fn json_object(mut input: Box<dyn BufRead + Send>) -> Result<ObjectRows, FileError> {
    let mut text = Vec::new();
    input.read_to_end(&mut text).map_err(FileError::io)?;
    let value: Value = serde_json::from_slice(crate::sniff::strip_bom(&text)).map_err(|e| {
        let mut err = FileError::unreadable(format!(
            "invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ));
        err.line = Some(e.line() as u64);
        err
    })?;
    let rows = match value {
        Value::Object(mut obj) => {
            let is_row = [
                "messages",
                "text",
                "prompt",
                "completion",
                "conversations",
                "instruction",
            ]
            .iter()
            .any(|k| obj.contains_key(*k));
            let lists: Vec<String> = obj
                .iter()
                .filter(|(_, v)| {
                    v.as_array()
                        .is_some_and(|a| a.iter().all(Value::is_object) && !a.is_empty())
                })
                .map(|(k, _)| k.clone())
                .collect();
            let preferred = ["data", "rows", "examples", "instances", "train"]
                .iter()
                .find(|k| lists.iter().any(|l| l == *k))
                .map(|k| k.to_string());
            match (
                is_row,
                preferred.or_else(|| (lists.len() == 1).then(|| lists[0].clone())),
            ) {
                (false, Some(key)) => match obj.shift_remove(&key) {
                    Some(Value::Array(rows)) => rows,
                    _ => unreachable!("the key holds a list"),
                },
                _ => vec![Value::Object(obj)],
            }
        }
        other => vec![other],
    };
    Ok(ObjectRows { rows: Some(rows) })
}

pub(crate) struct ObjectRows {
    rows: Option<Vec<Value>>,
}

impl RowReader for ObjectRows {
    fn kind(&self) -> FileKind {
        FileKind::JsonObject
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError> {
        Ok(self.rows.take().map(|rows| RowBatch {
            buf: Vec::new(),
            rows: rows
                .into_iter()
                .enumerate()
                .map(|(i, v)| RawRow {
                    line: None,
                    index: i as u64,
                    content: RowContent::Value(v),
                })
                .collect(),
        }))
    }
}
