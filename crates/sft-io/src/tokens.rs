//! Token tables: Parquet files whose columns are lists of 32-bit integers (`input_ids`,
//! `labels`, `completion_mask`, `seq_lengths`), as TRL reads pre-tokenized datasets.
//! Written in row groups as rows arrive, through a temporary file renamed at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::write::WriteError;

const ROWS_PER_BATCH: usize = 1024;
/// Rows per Parquet row group: a few megabytes of tokens.
const ROW_GROUP_ROWS: usize = 8192;

pub struct TokenTableWriter {
    path: PathBuf,
    temp: crate::write::Temp,
    schema: Arc<Schema>,
    builders: Vec<ListBuilder<Int32Builder>>,
    writer: ArrowWriter<std::fs::File>,
    pending: usize,
    rows: u64,
}

impl TokenTableWriter {
    /// A table with the given list<int32> columns.
    pub fn create(path: &Path, columns: &[&str]) -> Result<TokenTableWriter, WriteError> {
        let fail = |message: String| WriteError {
            path: path.to_path_buf(),
            message,
        };
        let temp = crate::write::temp_beside(path)
            .map_err(|e| fail(format!("cannot create a file in its folder: {e}")))?;
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                Field::new(
                    *c,
                    DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                    false,
                )
            })
            .collect();
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
        if row.len() != self.builders.len() {
            return Err(self.fail(format!(
                "a row of {} columns for a table of {}",
                row.len(),
                self.builders.len()
            )));
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
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
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

/// Reads a token table back: every column as a list of rows.
pub fn read_token_table(path: &Path) -> Result<Vec<TokenColumn>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::Array;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{}: {e}", path.display()))?;
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
