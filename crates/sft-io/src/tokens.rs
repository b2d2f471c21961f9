//! Token tables: Parquet files whose columns are lists of 32-bit integers (`input_ids`,
//! `labels`, `completion_mask`, `seq_lengths`), as TRL reads pre-tokenized datasets, and
//! optionally one text column beside them (the rows' `source`: a string per row, or a list
//! of strings per packed row, one per document). Written in row groups as rows arrive,
//! through a temporary file renamed at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::write::WriteError;

const ROWS_PER_BATCH: usize = 1024;
/// Rows per Parquet row group: a few megabytes of tokens.
const ROW_GROUP_ROWS: usize = 8192;

/// The text column of a token table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextColumn<'a> {
    /// One string per row (`utf8`).
    PerRow(&'a str),
    /// One string per document of a packed row (`list<utf8>`), in the order of
    /// `seq_lengths`.
    PerDocument(&'a str),
}

enum TextBuilder {
    PerRow(StringBuilder),
    PerDocument(ListBuilder<StringBuilder>),
}

impl TextBuilder {
    fn finish(&mut self) -> ArrayRef {
        match self {
            TextBuilder::PerRow(b) => Arc::new(b.finish()),
            TextBuilder::PerDocument(b) => Arc::new(b.finish()),
        }
    }
}

pub struct TokenTableWriter {
    path: PathBuf,
    temp: crate::write::Temp,
    schema: Arc<Schema>,
    builders: Vec<ListBuilder<Int32Builder>>,
    text: Option<TextBuilder>,
    writer: ArrowWriter<std::fs::File>,
    pending: usize,
    rows: u64,
}

impl TokenTableWriter {
    /// A table with the given list<int32> columns.
    pub fn create(path: &Path, columns: &[&str]) -> Result<TokenTableWriter, WriteError> {
        TokenTableWriter::create_with_text(path, columns, None)
    }

    /// A table with the given list<int32> columns and, after them, a text column.
    pub fn create_with_text(
        path: &Path,
        columns: &[&str],
        text: Option<TextColumn>,
    ) -> Result<TokenTableWriter, WriteError> {
        let fail = |message: String| WriteError {
            path: path.to_path_buf(),
            message,
        };
        let temp = crate::write::temp_beside(path)
            .map_err(|e| fail(format!("cannot create a file in its folder: {e}")))?;
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                Field::new(
                    *c,
                    DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                    false,
                )
            })
            .collect();
        match text {
            Some(TextColumn::PerRow(name)) => fields.push(Field::new(name, DataType::Utf8, false)),
            Some(TextColumn::PerDocument(name)) => fields.push(Field::new(
                name,
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            )),
            None => {}
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            // Row groups are flushed as they fill, so memory does not grow with the file.
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let file = temp.reopen().map_err(|e| fail(e.to_string()))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| fail(format!("cannot start the Parquet file: {e}")))?;
        Ok(TokenTableWriter {
            path: path.to_path_buf(),
            temp,
            builders: columns
                .iter()
                .map(|_| ListBuilder::new(Int32Builder::new()))
                .collect(),
            text: text.map(|t| match t {
                TextColumn::PerRow(_) => TextBuilder::PerRow(StringBuilder::new()),
                TextColumn::PerDocument(_) => {
                    TextBuilder::PerDocument(ListBuilder::new(StringBuilder::new()))
                }
            }),
            schema,
            writer,
            pending: 0,
            rows: 0,
        })
    }

    fn fail(&self, message: impl Into<String>) -> WriteError {
        WriteError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Appends a row: one list per column, in the order the columns were given.
    pub fn write(&mut self, row: &[&[i32]]) -> Result<(), WriteError> {
        self.write_with_text(row, &[])
    }

    /// Appends a row and its text: exactly one string for a [`TextColumn::PerRow`] column,
    /// one per document for [`TextColumn::PerDocument`], none without a text column.
    pub fn write_with_text(&mut self, row: &[&[i32]], text: &[&str]) -> Result<(), WriteError> {
        let fits = match (&self.text, text.len()) {
            (None, n) => n == 0,
            (Some(TextBuilder::PerRow(_)), n) => n == 1,
            (Some(TextBuilder::PerDocument(_)), n) => n >= 1,
        };
        if !fits {
            return Err(self.fail(format!(
                "{} strings for the text column of a table that {}",
                text.len(),
                match self.text {
                    None => "has none",
                    Some(TextBuilder::PerRow(_)) => "takes one per row",
                    Some(TextBuilder::PerDocument(_)) => "takes one per document",
                }
            )));
        }
        if row.len() != self.builders.len() {
            return Err(self.fail(format!(
                "a row of {} columns for a table of {}",
                row.len(),
                self.builders.len()
            )));
        }
        match &mut self.text {
            None => {}
            Some(TextBuilder::PerRow(b)) => b.append_value(text[0]),
            Some(TextBuilder::PerDocument(b)) => {
                for t in text {
                    b.values().append_value(t);
                }
                b.append(true);
            }
        }
        for (builder, values) in self.builders.iter_mut().zip(row) {
            builder.values().append_slice(values);
            builder.append(true);
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WriteError> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        if let Some(text) = self.text.as_mut() {
            arrays.push(text.finish());
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| self.fail(e.to_string()))?;
        self.writer.write(&batch).map_err(|e| WriteError {
            path: self.path.clone(),
            message: format!("Parquet write failed: {e}"),
        })?;
        self.pending = 0;
        Ok(())
    }

    /// Completes the file and moves it into place; returns the rows written.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        self.flush()?;
        let path = self.path.clone();
        self.writer.close().map_err(|e| WriteError {
            path: path.clone(),
            message: format!("Parquet write failed: {e}"),
        })?;
        self.temp.persist(&path).map_err(|e| WriteError {
            path,
            message: format!("cannot move the finished file into place: {}", e.error),
        })?;
        Ok(self.rows)
    }
}

/// A column of a token table: its name and one list per row.
pub type TokenColumn = (String, Vec<Vec<i32>>);

/// A reader of the columns of the Parquet file at `path` that `wanted` picks; `None` when
/// it picks none (with `ProjectionMask::roots` of nothing, every column would be empty).
fn columns_reader(
    path: &Path,
    wanted: impl Fn(&Field) -> bool,
) -> Result<Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(&e))?;
    let picked: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted(f))
        .map(|(i, _)| i)
        .collect();
    if picked.is_empty() {
        return Ok(None);
    }
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), picked);
    builder
        .with_projection(mask)
        .build()
        .map(Some)
        .map_err(|e| fail(&e))
}

fn is_int32_list(t: &DataType) -> bool {
    matches!(t, DataType::List(item) if item.data_type() == &DataType::Int32)
}

/// Reads a token table back: every list<int32> column as a list of rows (a text column
/// such as `source` is left out: [`read_text_column`] reads it).
pub fn read_token_table(path: &Path) -> Result<Vec<TokenColumn>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::Array;
    let Some(reader) = columns_reader(path, |f| is_int32_list(f.data_type()))? else {
        // No token column: the callers name the one they miss.
        return Ok(Vec::new());
    };
    let mut columns: Vec<TokenColumn> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        if columns.is_empty() {
            columns = batch
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), Vec::new()))
                .collect();
        }
        for (i, (_, rows)) in columns.iter_mut().enumerate() {
            let list = batch
                .column(i)
                .as_list_opt::<i32>()
                .ok_or_else(|| format!("column {i} is not a list"))?;
            for r in 0..list.len() {
                let values = list.value(r);
                let ints = values
                    .as_primitive_opt::<Int32Type>()
                    .ok_or_else(|| format!("column {i} is not a list of int32"))?;
                rows.push(ints.values().to_vec());
            }
        }
    }
    Ok(columns)
}

/// Reads a token table's text column: per row, its strings (one for a per-row column, one
/// per document for a per-document one). `None` when the table has no such column.
pub fn read_text_column(path: &Path, name: &str) -> Result<Option<Vec<Vec<String>>>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let Some(reader) = columns_reader(path, |f| f.name() == name)? else {
        return Ok(None);
    };
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = batch.column(0);
        if let Some(strings) = column.as_string_opt::<i32>() {
            rows.extend((0..strings.len()).map(|r| vec![strings.value(r).to_string()]));
        } else if let Some(lists) = column.as_list_opt::<i32>() {
            for r in 0..lists.len() {
                let values = lists.value(r);
                let strings = values.as_string_opt::<i32>().ok_or_else(|| {
                    format!("{}: {name} is not a list of strings", path.display())
                })?;
                rows.push(
                    (0..strings.len())
                        .map(|i| strings.value(i).to_string())
                        .collect(),
                );
            }
        } else {
            return Err(format!("{}: {name} is not a text column", path.display()));
        }
    }
    Ok(Some(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_column_beside_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w = TokenTableWriter::create_with_text(
            &path,
            &["input_ids", "seq_lengths"],
            Some(TextColumn::PerDocument("source")),
        )
        .unwrap();
        w.write_with_text(&[&[1, 2, 3], &[2, 1]], &["a", "b"])
            .unwrap();
        w.write_with_text(&[&[4], &[1]], &["c"]).unwrap();
        // A row without its text, or with a column missing, is refused rather than
        // misaligned.
        assert!(w.write(&[&[5], &[1]]).is_err());
        assert!(w.write_with_text(&[&[5]], &["d"]).is_err());
        assert_eq!(w.finish().unwrap(), 2);
        let tokens = read_token_table(&path).unwrap();
        assert_eq!(tokens.len(), 2, "the text column is not a token column");
        assert_eq!(tokens[0].1, vec![vec![1, 2, 3], vec![4]]);
        let text = read_text_column(&path, "source").unwrap().unwrap();
        assert_eq!(text[0], vec!["a", "b"]);
        assert_eq!(text[1], vec!["c"]);
        assert!(read_text_column(&path, "missing").unwrap().is_none());

        let path = dir.path().join("u.parquet");
        let mut w = TokenTableWriter::create_with_text(
            &path,
            &["input_ids"],
            Some(TextColumn::PerRow("source")),
        )
        .unwrap();
        w.write_with_text(&[&[1]], &["x"]).unwrap();
        assert!(w.write_with_text(&[&[1]], &["x", "y"]).is_err());
        assert!(w.write(&[&[1]]).is_err());
        assert_eq!(w.finish().unwrap(), 1);
        assert_eq!(
            read_text_column(&path, "source").unwrap().unwrap(),
            vec![vec!["x".to_string()]]
        );
    }
}
