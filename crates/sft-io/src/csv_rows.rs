//! CSV and TSV files (as the Hub serves some datasets): the header names the fields, each
//! record becomes a JSON object row of text cells (an empty cell is `null`, as `datasets`
//! reads it through pandas; cells stay text, where pandas would infer numeric columns).

use std::io::BufRead;

use serde_json::{Map, Value};

use crate::{
    FileError, FileKind, RawRow, RowBatch, RowContent, RowReader, BATCH_BYTES, BATCH_ROWS,
};

pub(crate) struct CsvReader {
    records: csv::Reader<Box<dyn BufRead + Send>>,
    kind: FileKind,
    header: Option<Vec<String>>,
    index: u64,
    done: bool,
}

impl CsvReader {
    pub(crate) fn new(input: Box<dyn BufRead + Send>, kind: FileKind) -> Self {
        let delimiter = if kind == FileKind::Tsv { b'\t' } else { b',' };
        let records = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        CsvReader {
            records,
            kind,
            header: None,
            index: 0,
            done: false,
        }
    }

    fn error(line: u64, message: impl std::fmt::Display) -> FileError {
        let mut e = FileError::unreadable(format!("line {line}: {message}"));
        e.line = Some(line);
        e
    }
}

impl RowReader for CsvReader {
    fn kind(&self) -> FileKind {
        self.kind
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError> {
        if self.done {
            return Ok(None);
        }
        let mut batch = RowBatch::default();
        let mut record = csv::ByteRecord::new();
        while batch.rows.len() < BATCH_ROWS && batch.buf.len() < BATCH_BYTES {
            let more = self.records.read_byte_record(&mut record).map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                match e.kind() {
                    csv::ErrorKind::Io(io) => Self::error(line, format!("read failed: {io}")),
                    _ => Self::error(line, e),
                }
            })?;
            if !more {
                self.done = true;
                break;
            }
            let line = record.position().map_or(0, |p| p.line());
            let mut cells = Vec::with_capacity(record.len());
            for (i, cell) in record.iter().enumerate() {
                let text = std::str::from_utf8(cell).map_err(|e| {
                    Self::error(
                        line,
                        format!(
                            "field {} is not valid UTF-8 (byte {}); re-encode the file as UTF-8",
                            i + 1,
                            e.valid_up_to()
                        ),
                    )
                })?;
                cells.push(text);
            }
            let Some(header) = &self.header else {
                let mut names: Vec<String> = Vec::with_capacity(cells.len());
                for (i, name) in cells.iter().enumerate() {
                    let name = if i == 0 {
                        name.trim_start_matches('\u{feff}')
                    } else {
                        name
                    };
                    if names.iter().any(|n| n == name) {
                        return Err(Self::error(
                            line,
                            format!("the header names the column `{name}` twice; give each column its own name"),
                        ));
                    }
                    names.push(name.to_string());
                }
                self.header = Some(names);
                continue;
            };
            if cells.len() != header.len() {
                return Err(Self::error(
                    line,
                    format!(
                        "the record has {} fields but the header has {}; quote fields that hold the delimiter",
                        cells.len(),
                        header.len()
                    ),
                ));
            }
            let row: Map<String, Value> = header
                .iter()
                .zip(&cells)
                .map(|(name, cell)| {
                    let value = if cell.is_empty() {
                        Value::Null
                    } else {
                        Value::String(cell.to_string())
                    };
                    (name.clone(), value)
                })
                .collect();
            let start = batch.buf.len();
            serde_json::to_writer(&mut batch.buf, &row)
                .map_err(|e| Self::error(line, format!("cannot hold the row: {e}")))?;
            batch.rows.push(RawRow {
                line: Some(line),
                index: self.index,
                content: RowContent::Json(start..batch.buf.len()),
            });
            self.index += 1;
        }
        if batch.rows.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: impl AsRef<[u8]>, kind: FileKind) -> Result<Vec<(u64, Value)>, FileError> {
        let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.as_ref().to_vec()));
        let mut reader = CsvReader::new(input, kind);
        let mut out = Vec::new();
        while let Some(batch) = reader.next_batch()? {
            for row in &batch.rows {
                let v: Value = serde_json::from_slice(batch.json(row).unwrap()).unwrap();
                out.push((row.line.unwrap(), v));
            }
        }
        Ok(out)
    }

    #[test]
    fn records_become_rows_of_text_with_lines() {
        let text = "prompt,completion\n\"Say \"\"hi\"\", please\",hi\n\"two\nlines\",\n3,4\n";
        let r = rows(text, FileKind::Csv).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            (
                2,
                serde_json::json!({"prompt": "Say \"hi\", please", "completion": "hi"})
            )
        );
        assert_eq!(
            r[1],
            (
                3,
                serde_json::json!({"prompt": "two\nlines", "completion": null})
            )
        );
        assert_eq!(
            r[2],
            (5, serde_json::json!({"prompt": "3", "completion": "4"}))
        );
        let tsv = rows("\u{feff}text\tsource\na, b\tweb\n", FileKind::Tsv).unwrap();
        assert_eq!(
            tsv[0].1,
            serde_json::json!({"text": "a, b", "source": "web"})
        );
    }

    #[test]
    fn a_ragged_record_or_a_repeated_column_stops_with_its_line() {
        let e = rows("a,b\n1,2\n1,2,3\n", FileKind::Csv).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.message.contains("3 fields but the header has 2"),
            "{}",
            e.message
        );
        let e = rows("a,a\n1,2\n", FileKind::Csv).unwrap_err();
        assert!(e.message.contains("`a` twice"), "{}", e.message);
        let e = rows(b"a\n\"\xff\"\n", FileKind::Csv).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("not valid UTF-8"), "{}", e.message);
    }
}
