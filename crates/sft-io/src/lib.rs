//! Dataset files in, dataset files out.
//!
//! The reading end of the flow (**read** -> detect -> validate -> ...) and its writing end.
//! [`discover`] turns the paths a person typed (files, folders of shards, Hugging Face
//! `save_to_disk` folders) into [`DataFile`]s; [`open`] sniffs each file's real content
//! (a `.jsonl` that is gzip, a Git LFS pointer, a binary) and returns a [`RowReader`] that
//! yields rows in batches, each row with its 1-based line (for line-oriented files) and its
//! 0-based row index. Rows stay raw JSON text where the file is JSON, so parsing can run in
//! parallel downstream; Parquet and Arrow rows are turned into the same JSON text.
//!
//! Writers ([`write`]) produce JSON lines or Parquet with the natural nested schema, always
//! through a temporary file renamed into place, so a failed run never leaves half a file.
//!
//! ```no_run
//! use sft_io::{discover, open, ReadOptions, RowContent};
//! let files = discover(&["data/train.jsonl".into()]).unwrap();
//! let mut reader = open(&files[0], &ReadOptions::default()).unwrap();
//! while let Some(batch) = reader.next_batch().unwrap() {
//!     for row in &batch.rows {
//!         if let RowContent::Json(range) = &row.content {
//!             let text = &batch.buf[range.clone()];
//!             println!("line {:?}: {} bytes", row.line, text.len());
//!         }
//!     }
//! }
//! ```

mod arrow_rows;
mod csv_rows;
mod discover;
mod json_array;
pub mod json_type;
mod lines;
pub mod paths;
pub mod rng;
mod sniff;
pub mod stdin;
mod text;
pub mod tokens;
pub mod write;

pub use discover::{discover, discover_noting, DiscoverError, Discovered};
pub use sniff::{Compression, FileKind};
pub use text::TextSplit;

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

/// A data file found among the inputs.
#[derive(Debug, Clone)]
pub struct DataFile {
    pub path: PathBuf,
    /// The path as shown to the user.
    pub display: String,
    /// Size on disk in bytes.
    pub size: u64,
}

/// How to read files that are not JSON or tables.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub text_split: TextSplit,
}

/// One row, not yet parsed.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// 1-based line where the row starts, for line-oriented files (JSON lines, JSON arrays, text).
    pub line: Option<u64>,
    /// 0-based index of the row in its file.
    pub index: u64,
    pub content: RowContent,
}

#[derive(Debug, Clone)]
pub enum RowContent {
    /// JSON text of the row: a range of the batch's buffer. Not yet checked for UTF-8.
    Json(Range<usize>),
    /// A row already built (raw text documents).
    Value(Value),
}

/// Rows read together; their JSON text lives in `buf`.
#[derive(Debug, Default)]
pub struct RowBatch {
    pub buf: Vec<u8>,
    pub rows: Vec<RawRow>,
}

impl RowBatch {
    /// The bytes of a row's JSON text, or `None` for a built row.
    pub fn json(&self, row: &RawRow) -> Option<&[u8]> {
        match &row.content {
            RowContent::Json(range) => Some(&self.buf[range.clone()]),
            RowContent::Value(_) => None,
        }
    }
}

/// Why a whole file (or the rest of it) could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileErrorKind {
    Empty,
    LfsPointer,
    Binary,
    Unreadable,
}

#[derive(Debug, Clone)]
pub struct FileError {
    pub kind: FileErrorKind,
    pub message: String,
    /// The line where reading stopped, when it stopped part way through a line-oriented file.
    pub line: Option<u64>,
    /// How many rows of the file were not read, when the file says how many it has
    /// (Parquet); `None` when unknown.
    pub rows_not_read: Option<u64>,
}

impl FileError {
    pub(crate) fn new(kind: FileErrorKind, message: impl Into<String>) -> Self {
        FileError {
            kind,
            message: message.into(),
            line: None,
            rows_not_read: None,
        }
    }

    pub(crate) fn unreadable(message: impl Into<String>) -> Self {
        FileError::new(FileErrorKind::Unreadable, message)
    }

    pub(crate) fn io(e: io::Error) -> Self {
        FileError::unreadable(format!("read failed: {e}"))
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// A source of row batches.
pub trait RowReader: Send {
    /// The next batch, `None` at the end. An error ends the file; rows before it were delivered.
    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError>;
    /// What the file holds, as sniffed.
    fn kind(&self) -> FileKind;
}

/// Counts bytes read from the file on disk (compressed bytes for compressed files), for
/// progress bars and throughput.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Counting<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Target size of a batch's JSON text: large enough to spread over cores, small enough to
/// keep memory flat.
pub(crate) const BATCH_BYTES: usize = 4 << 20;
pub(crate) const BATCH_ROWS: usize = 16_384;

/// Opens a data file, sniffing what it really holds.
pub fn open(file: &DataFile, options: &ReadOptions) -> Result<Box<dyn RowReader>, FileError> {
    open_counted(file, options, &ByteCounter::default())
}

/// As [`open`], adding every byte read from disk to `counter`.
pub fn open_counted(
    file: &DataFile,
    options: &ReadOptions,
    counter: &ByteCounter,
) -> Result<Box<dyn RowReader>, FileError> {
    let f =
        File::open(&file.path).map_err(|e| FileError::unreadable(format!("cannot open: {e}")))?;
    let raw = Counting {
        inner: f,
        counter: counter.clone(),
    };
    let (compression, kind) = sniff::sniff(&file.path)?;
    match kind {
        FileKind::Parquet => {
            let f = File::open(&file.path).map_err(FileError::io)?;
            // Parquet reads by seeking; count the whole file once read.
            let reader = arrow_rows::parquet(f, file.size, counter.clone())?;
            Ok(Box::new(reader))
        }
        FileKind::ArrowStream | FileKind::ArrowFile => {
            let f = File::open(&file.path).map_err(FileError::io)?;
            let reader = arrow_rows::ipc(f, kind, file.size, counter.clone())?;
            Ok(Box::new(reader))
        }
        FileKind::JsonLines
        | FileKind::JsonArray
        | FileKind::JsonObject
        | FileKind::Text
        | FileKind::Csv
        | FileKind::Tsv => {
            let input: Box<dyn BufRead + Send> = match compression {
                Compression::None => Box::new(BufReader::with_capacity(1 << 20, raw)),
                Compression::Gzip => Box::new(BufReader::with_capacity(
                    1 << 20,
                    flate2::read::MultiGzDecoder::new(BufReader::new(raw)),
                )),
                Compression::Zstd => Box::new(BufReader::with_capacity(
                    1 << 20,
                    zstd::stream::read::Decoder::new(raw).map_err(FileError::io)?,
                )),
            };
            Ok(match kind {
                FileKind::JsonLines => Box::new(lines::JsonLinesReader::new(input)),
                FileKind::JsonArray => Box::new(json_array::JsonArrayReader::new(input)),
                FileKind::JsonObject => Box::new(json_array::json_object(input)?),
                FileKind::Csv | FileKind::Tsv => Box::new(csv_rows::CsvReader::new(input, kind)),
                _ => Box::new(text::TextReader::new(input, options.text_split.clone())),
            })
        }
    }
}
