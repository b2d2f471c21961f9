//! Parquet and Arrow IPC files: record batches become JSON text rows, so the rest of the
//! flow treats every file alike. Null fields are left out, as `transformers` drops null
//! message keys before rendering (Arrow fills every missing struct field with null).
//! Fields of the `arrow.json` extension type (JSON text; Python `datasets` stores a field
//! whose rows hold different JSON types so) are read as the JSON values they hold.

use std::fs::File;
use std::io::BufReader;

use arrow_array::RecordBatch;
use arrow_json::writer::LineDelimited;
use arrow_json::WriterBuilder;
use arrow_schema::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{
    ByteCounter, FileError, FileKind, RawRow, RowBatch, RowContent, RowReader, BATCH_ROWS,
};

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

pub(crate) struct ArrowRows {
    batches: Batches,
    kind: FileKind,
    index: u64,
    total_rows: Option<u64>,
    size: u64,
    counted: u64,
    counter: ByteCounter,
}

pub(crate) fn parquet(file: File, size: u64, counter: ByteCounter) -> Result<ArrowRows, FileError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| FileError::unreadable(format!("not a readable Parquet file: {e}")))?;
    let total_rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder
        .with_batch_size(BATCH_ROWS / 4)
        .build()
        .map_err(|e| FileError::unreadable(format!("cannot read the Parquet file: {e}")))?;
    Ok(ArrowRows {
        batches: Box::new(reader),
        kind: FileKind::Parquet,
        index: 0,
        total_rows: Some(total_rows),
        size,
        counted: 0,
        counter,
    })
}

pub(crate) fn ipc(
    file: File,
    kind: FileKind,
    size: u64,
    counter: ByteCounter,
) -> Result<ArrowRows, FileError> {
    let batches: Batches = if kind == FileKind::ArrowFile {
        Box::new(
            arrow_ipc::reader::FileReader::try_new(file, None).map_err(|e| {
                FileError::unreadable(format!("not a readable Arrow IPC file: {e}"))
            })?,
        )
    } else {
        Box::new(
            arrow_ipc::reader::StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None)
                .map_err(|e| {
                    FileError::unreadable(format!("not a readable Arrow IPC stream: {e}"))
                })?,
        )
    };
    Ok(ArrowRows {
        batches,
        kind,
        index: 0,
        total_rows: None,
        size,
        counted: 0,
        counter,
    })
}

impl ArrowRows {
    /// An error from row `self.index` on, with the count of rows left unread when the file
    /// says how many it has.
    fn corrupt(&self, message: String) -> FileError {
        let mut error = FileError::unreadable(message);
        error.rows_not_read = self.total_rows.map(|t| t.saturating_sub(self.index));
        error
    }

    fn count_progress(&mut self, done: bool) {
        let target = match (done, self.total_rows) {
            (true, _) => self.size,
            (false, Some(total)) if total > 0 => self.size * self.index.min(total) / total,
            _ => self.counted,
        };
        if target > self.counted {
            self.counter
                .0
                .fetch_add(target - self.counted, std::sync::atomic::Ordering::Relaxed);
            self.counted = target;
        }
    }
}

impl RowReader for ArrowRows {
    fn kind(&self) -> FileKind {
        self.kind
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError> {
        let Some(record_batch) = self.batches.next() else {
            self.count_progress(true);
            return Ok(None);
        };
        let record_batch = record_batch.map_err(|e| {
            self.corrupt(format!("the file is corrupt after row {}: {e}", self.index))
        })?;
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, LineDelimited>(Vec::new());
        writer.write(&record_batch).map_err(|e| {
            self.corrupt(format!(
                "rows {}..{} cannot be turned into JSON: {e}",
                self.index,
                self.index + record_batch.num_rows() as u64
            ))
        })?;
        writer
            .finish()
            .map_err(|e| FileError::unreadable(format!("cannot turn rows into JSON: {e}")))?;
        let mut buf = writer.into_inner();
        let json_fields = crate::json_type::paths(record_batch.schema().fields());
        if !json_fields.is_empty() {
            buf = crate::json_type::decode_lines(&buf, &json_fields).map_err(|e| {
                self.corrupt(format!(
                    "rows {}..{}: an arrow.json field does not hold JSON: {e}",
                    self.index,
                    self.index + record_batch.num_rows() as u64
                ))
            })?;
        }
        let mut rows = Vec::with_capacity(record_batch.num_rows());
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                rows.push(RawRow {
                    line: None,
                    index: self.index,
                    content: RowContent::Json(start..i),
                });
                self.index += 1;
                start = i + 1;
            }
        }
        self.count_progress(false);
        Ok(Some(RowBatch { buf, rows }))
    }
}
