//! JSON lines: one row per non-blank line.

use std::io::BufRead;

use crate::sniff::strip_bom;
use crate::{
    FileError, FileKind, RawRow, RowBatch, RowContent, RowReader, BATCH_BYTES, BATCH_ROWS,
};

pub(crate) struct JsonLinesReader {
    input: Box<dyn BufRead + Send>,
    line: u64,
    index: u64,
    done: bool,
    /// An error met after some rows of a batch: reported on the next call.
    pending: Option<FileError>,
}

impl JsonLinesReader {
    pub(crate) fn new(input: Box<dyn BufRead + Send>) -> Self {
        JsonLinesReader {
            input,
            line: 0,
            index: 0,
            done: false,
            pending: None,
        }
    }
}

impl RowReader for JsonLinesReader {
    fn kind(&self) -> FileKind {
        FileKind::JsonLines
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError> {
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        if self.done {
            return Ok(None);
        }
        let mut batch = RowBatch {
            buf: Vec::with_capacity(BATCH_BYTES + (64 << 10)),
            rows: Vec::with_capacity(1024),
        };
        while batch.buf.len() < BATCH_BYTES && batch.rows.len() < BATCH_ROWS {
            let start = batch.buf.len();
            let n = match self.input.read_until(b'\n', &mut batch.buf) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    let mut err = FileError::unreadable(format!(
                        "reading stopped after line {}: {e}",
                        self.line
                    ));
                    err.line = Some(self.line + 1);
                    if batch.rows.is_empty() {
                        return Err(err);
                    }
                    // Deliver the rows read so far; the error comes with the next call.
                    batch.buf.truncate(start);
                    self.pending = Some(err);
                    return Ok(Some(batch));
                }
            };
            if n == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            let mut end = batch.buf.len();
            while end > start && matches!(batch.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            let mut begin = start;
            if self.line == 1 && strip_bom(&batch.buf[start..end]).len() != end - start {
                begin += 3;
            }
            if batch.buf[begin..end].iter().all(u8::is_ascii_whitespace) {
                batch.buf.truncate(start);
                continue;
            }
            batch.rows.push(RawRow {
                line: Some(self.line),
                index: self.index,
                content: RowContent::Json(begin..end),
            });
            self.index += 1;
        }
        Ok(if batch.rows.is_empty() {
            None
        } else {
            Some(batch)
        })
    }
}
