//! Per-row keys spilled to a Parquet table, and the group-bys over it that say which rows
//! share a key with an earlier row, in memory that does not grow with the dataset.
//!
//! A dataset job appends one record per row (its sequence number, hashes that identify
//! it, a small payload such as where the row is); the table goes to a temporary Parquet
//! file as it fills. [`SpilledKeys::repeats`] then runs a polars query over that file for
//! one key column: group the rows by the key, keep each group's first row, join it back,
//! and return every later row with its group's first. The query reads only the two or
//! three columns it needs, and runs over hash partitions of the key (a scan per
//! partition) so that no group-by holds more than [`ROWS_PER_PARTITION`] keys (`dedupe` of 1 M
//! rows peaks at 393 MB in all): `check`
//! past a few million rows, `dedupe` and `split` use it, and their memory stays flat.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use tempfile::NamedTempFile;

/// The most rows one group-by holds; more rows are grouped in hash partitions, one scan
/// of the spilled table each.
pub const ROWS_PER_PARTITION: u64 = 1_000_000;

/// Records buffered before they are written to the table as a row group.
const FLUSH_ROWS: usize = 65_536;

/// A key table being written: `row` (u64), one nullable u64 column per key, and an
/// optional u64 payload.
pub struct KeyTable {
    file: NamedTempFile,
    writer: polars::io::parquet::write::BatchedWriter<File>,
    keys: Vec<String>,
    rows: Vec<u64>,
    values: Vec<Vec<Option<u64>>>,
    payload: Vec<u64>,
    written: u64,
}

/// A finished key table (a temporary file, removed when this is dropped).
pub struct SpilledKeys {
    file: NamedTempFile,
    rows: u64,
}

/// A row that has the same key as an earlier row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub row: u64,
    pub payload: u64,
    /// The first row with that key.
    pub first: u64,
    pub first_payload: u64,
}

fn polars_error(e: PolarsError) -> String {
    format!("the key table: {e}")
}

impl KeyTable {
    /// A table with these key columns, in a temporary file in `dir` (the system's
    /// temporary folder when `None`).
    pub fn create(keys: &[&str], dir: Option<&Path>) -> Result<KeyTable, String> {
        let file = match dir {
            Some(d) => NamedTempFile::new_in(d),
            None => NamedTempFile::new(),
        }
        .map_err(|e| format!("cannot create a temporary key table: {e}"))?;
        let mut fields = vec![Field::new("row".into(), DataType::UInt64)];
        fields.extend(
            keys.iter()
                .map(|k| Field::new((*k).into(), DataType::UInt64)),
        );
        fields.push(Field::new("payload".into(), DataType::UInt64));
        let schema = Schema::from_iter(fields);
        let writer = ParquetWriter::new(file.reopen().map_err(|e| e.to_string())?)
            .with_compression(ParquetCompression::Uncompressed)
            .batched(&schema)
            .map_err(polars_error)?;
        Ok(KeyTable {
            file,
            writer,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            rows: Vec::with_capacity(FLUSH_ROWS),
            values: vec![Vec::with_capacity(FLUSH_ROWS); keys.len()],
            payload: Vec::with_capacity(FLUSH_ROWS),
            written: 0,
        })
    }

    /// Appends a row's keys (one per key column, `None` where the row has none).
    pub fn push(&mut self, row: u64, keys: &[Option<u64>], payload: u64) -> Result<(), String> {
        debug_assert_eq!(keys.len(), self.keys.len());
        self.rows.push(row);
        for (column, key) in self.values.iter_mut().zip(keys) {
            column.push(*key);
        }
        self.payload.push(payload);
        if self.rows.len() >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let height = self.rows.len();
        let mut columns = vec![Column::new("row".into(), std::mem::take(&mut self.rows))];
        for (name, values) in self.keys.iter().zip(self.values.iter_mut()) {
            columns.push(Column::new(name.as_str().into(), std::mem::take(values)));
        }
        columns.push(Column::new(
            "payload".into(),
            std::mem::take(&mut self.payload),
        ));
        let frame = DataFrame::new(height, columns).map_err(polars_error)?;
        self.writer.write_batch(&frame).map_err(polars_error)?;
        self.written += height as u64;
        Ok(())
    }

    /// Writes what is buffered and closes the table.
    pub fn finish(mut self) -> Result<SpilledKeys, String> {
        self.flush()?;
        self.writer.finish().map_err(polars_error)?;
        Ok(SpilledKeys {
            file: self.file,
            rows: self.written,
        })
    }
}

impl SpilledKeys {
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn scan(&self) -> Result<LazyFrame, String> {
        let path = self
            .file
            .path()
            .to_str()
            .ok_or("the temporary folder's path is not UTF-8")?;
        LazyFrame::scan_parquet(PlRefPath::new(path), ScanArgsParquet::default())
            .map_err(polars_error)
    }

    /// Every row whose `key` equals that of an earlier row (the smallest `row` with the
    /// key), with that first row; sorted by row. Rows without the key take no part.
    pub fn repeats(&self, key: &str) -> Result<Vec<Repeat>, String> {
        let partitions = self.rows.div_ceil(ROWS_PER_PARTITION).max(1);
        let mut out = Vec::new();
        for part in 0..partitions {
            let rows = self
                .scan()?
                .select([col("row"), col(key).alias("key"), col("payload")])
                .filter(col("key").is_not_null());
            let rows = if partitions > 1 {
                rows.filter((col("key") % lit(partitions)).eq(lit(part)))
            } else {
                rows
            };
            let firsts = rows
                .clone()
                .group_by([col("key")])
                .agg([col("row").min().alias("first"), len().alias("n")])
                .filter(col("n").gt(lit(1u32)))
                .select([col("key"), col("first")]);
            let first_payloads = rows
                .clone()
                .join(
                    firsts.clone(),
                    [col("key"), col("row")],
                    [col("key"), col("first")],
                    JoinArgs::new(JoinType::Inner),
                )
                .select([col("key"), col("payload").alias("first_payload")]);
            let repeats = rows
                .join(
                    firsts,
                    [col("key")],
                    [col("key")],
                    JoinArgs::new(JoinType::Inner),
                )
                .filter(col("row").neq(col("first")))
                .join(
                    first_payloads,
                    [col("key")],
                    [col("key")],
                    JoinArgs::new(JoinType::Inner),
                )
                .select([
                    col("row"),
                    col("payload"),
                    col("first"),
                    col("first_payload"),
                ]);
            let frame = repeats
                .collect_with_engine(Engine::Streaming)
                .map_err(polars_error)?
                .unwrap_single();
            let column = |name: &str| -> Result<Vec<u64>, String> {
                Ok(frame
                    .column(name)
                    .map_err(polars_error)?
                    .u64()
                    .map_err(polars_error)?
                    .into_no_null_iter()
                    .collect())
            };
            let (row, payload, first, first_payload) = (
                column("row")?,
                column("payload")?,
                column("first")?,
                column("first_payload")?,
            );
            out.extend((0..row.len()).map(|i| Repeat {
                row: row[i],
                payload: payload[i],
                first: first[i],
                first_payload: first_payload[i],
            }));
        }
        out.sort_unstable_by_key(|r| r.row);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_rows_with_a_key_name_the_first() {
        let mut table = KeyTable::create(&["a", "b"], None).unwrap();
        // Keys: a repeats at rows 0, 2, 5; b at rows 1, 4; row 3 has no b.
        let a = [7, 8, 7, 9, 10, 7];
        let b = [Some(1), Some(2), Some(3), None, Some(2), Some(4)];
        for row in 0..6u64 {
            table
                .push(row, &[Some(a[row as usize]), b[row as usize]], 100 + row)
                .unwrap();
        }
        let spilled = table.finish().unwrap();
        assert_eq!(spilled.rows(), 6);
        let got: Vec<(u64, u64, u64, u64)> = spilled
            .repeats("a")
            .unwrap()
            .iter()
            .map(|r| (r.row, r.payload, r.first, r.first_payload))
            .collect();
        assert_eq!(got, vec![(2, 102, 0, 100), (5, 105, 0, 100)]);
        let got: Vec<(u64, u64)> = spilled
            .repeats("b")
            .unwrap()
            .iter()
            .map(|r| (r.row, r.first))
            .collect();
        assert_eq!(got, vec![(4, 1)]);
    }
}
