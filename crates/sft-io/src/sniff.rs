//! What a file really holds, from its first bytes, whatever its name says.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::{FileError, FileErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    JsonLines,
    /// A JSON array of rows.
    JsonArray,
    /// One JSON object holding the list of rows (or being the only row).
    JsonObject,
    Parquet,
    /// Arrow IPC stream, as Hugging Face `datasets` writes `.arrow` files.
    ArrowStream,
    /// Arrow IPC file (Feather v2).
    ArrowFile,
    /// Raw text documents.
    Text,
    /// Comma-separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::JsonLines => "jsonl",
            FileKind::JsonArray | FileKind::JsonObject => "json",
            FileKind::Parquet => "parquet",
            FileKind::ArrowStream | FileKind::ArrowFile => "arrow",
            FileKind::Text => "text",
            FileKind::Csv => "csv",
            FileKind::Tsv => "tsv",
        }
    }
}

const HEAD: usize = 64 << 10;
const LFS_PREFIX: &[u8] = b"version https://git-lfs.github.com/spec/";

/// The lower-case extension, after removing a compression suffix.
fn extension(path: &Path) -> (Option<String>, Compression) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
        (s.to_string(), Compression::Gzip)
    } else if let Some(s) = name.strip_suffix(".zst") {
        (s.to_string(), Compression::Zstd)
    } else {
        (name, Compression::None)
    };
    let ext = Path::new(&stem)
        .extension()
        .map(|e| e.to_string_lossy().to_string());
    (ext, compression)
}

/// Extensions that name data files, for folder walks.
pub(crate) fn is_data_extension(path: &Path) -> bool {
    matches!(
        extension(path).0.as_deref(),
        Some(
            "jsonl"
                | "ndjson"
                | "jsonlines"
                | "json"
                | "parquet"
                | "arrow"
                | "feather"
                | "csv"
                | "tsv"
        )
    )
}

/// Extensions of raw text, which folder walks leave out (they are read when named; a
/// folder's README.md is not counted).
pub(crate) fn is_text_extension(path: &Path) -> bool {
    matches!(extension(path).0.as_deref(), Some("txt" | "text"))
}

fn read_head(reader: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD);
    reader.take(HEAD as u64).read_to_end(&mut head)?;
    Ok(head)
}

pub(crate) fn sniff(path: &Path) -> Result<(Compression, FileKind), FileError> {
    let mut f = File::open(path).map_err(|e| FileError::unreadable(format!("cannot open: {e}")))?;
    let raw_head = read_head(&mut f).map_err(FileError::io)?;
    if raw_head.is_empty() {
        return Err(FileError::new(
            FileErrorKind::Empty,
            "the file is empty (0 bytes)",
        ));
    }
    if raw_head.starts_with(b"PAR1") {
        return Ok((Compression::None, FileKind::Parquet));
    }
    if raw_head.starts_with(b"ARROW1") {
        return Ok((Compression::None, FileKind::ArrowFile));
    }
    if raw_head.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
        return Ok((Compression::None, FileKind::ArrowStream));
    }
    let (ext, _) = extension(path);
    let (compression, head) = if raw_head.starts_with(&[0x1f, 0x8b]) {
        let f = File::open(path).map_err(FileError::io)?;
        let head = read_head(&mut flate2::read::MultiGzDecoder::new(f))
            .map_err(|e| FileError::unreadable(format!("gzip data is corrupt: {e}")))?;
        (Compression::Gzip, head)
    } else if raw_head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let f = File::open(path).map_err(FileError::io)?;
        let mut decoder = zstd::stream::read::Decoder::new(f).map_err(FileError::io)?;
        let head = read_head(&mut decoder)
            .map_err(|e| FileError::unreadable(format!("zstd data is corrupt: {e}")))?;
        (Compression::Zstd, head)
    } else {
        (Compression::None, raw_head)
    };
    if head.starts_with(LFS_PREFIX) {
        return Err(FileError::new(
            FileErrorKind::LfsPointer,
            "the file is a Git LFS pointer, not the data itself",
        ));
    }
    if matches!(ext.as_deref(), Some("parquet" | "arrow" | "feather")) {
        return Err(FileError::new(
            FileErrorKind::Binary,
            format!(
                "named .{} but its content is not {} (wrong magic bytes); the file may be truncated or mislabelled",
                ext.as_deref().unwrap_or_default(),
                if ext.as_deref() == Some("parquet") { "Parquet" } else { "Arrow IPC" }
            ),
        ));
    }
    if let Some(encoding) = utf16_or_32(&head) {
        let name = path.display();
        return Err(FileError::new(
            FileErrorKind::Binary,
            format!(
                "the file is {encoding} text (it starts with that byte order mark), not UTF-8; convert it: iconv -f {} -t UTF-8 {name} > {name}.utf8",
                encoding.split(' ').next().unwrap_or(encoding)
            ),
        ));
    }
    let compressed = match compression {
        Compression::None => "",
        Compression::Gzip => "gzip ",
        Compression::Zstd => "zstd ",
    };
    if head.is_empty() {
        return Err(FileError::new(
            FileErrorKind::Empty,
            format!("the {compressed}file decompresses to nothing (0 bytes)"),
        ));
    }
    if is_binary(&head) {
        return Err(FileError::new(
            FileErrorKind::Binary,
            if compression == Compression::None {
                "the file is binary (it contains NUL and other control bytes) and is not Parquet, Arrow, gzip or zstd".to_string()
            } else {
                format!("the file is {compressed}data that decompresses to binary content (NUL and other control bytes), not JSON or text")
            },
        ));
    }
    let body = strip_bom(&head);
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(FileError::new(
            FileErrorKind::Empty,
            "the file holds only whitespace",
        ));
    };
    let kind = match ext.as_deref() {
        Some("txt" | "text" | "md") => FileKind::Text,
        Some("csv") => FileKind::Csv,
        Some("tsv") => FileKind::Tsv,
        Some("jsonl" | "ndjson" | "jsonlines") => FileKind::JsonLines,
        Some("json") => match first {
            b'[' => FileKind::JsonArray,
            b'{' => json_object_or_lines(body, head.len() < HEAD),
            _ => FileKind::JsonLines,
        },
        _ => match first {
            b'[' => FileKind::JsonArray,
            b'{' => FileKind::JsonLines,
            _ => {
                return Err(FileError::unreadable(
                    "unknown file type: name it .jsonl, .json, .parquet, .arrow, .csv, .tsv or .txt (optionally .gz or .zst)",
                ))
            }
        },
    };
    Ok((compression, kind))
}

/// The encoding a UTF-16 or UTF-32 byte order mark names.
fn utf16_or_32(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xFF, 0xFE, 0, 0]) {
        Some("UTF-32LE (little-endian)")
    } else if head.starts_with(&[0, 0, 0xFE, 0xFF]) {
        Some("UTF-32BE (big-endian)")
    } else if head.starts_with(&[0xFF, 0xFE]) {
        Some("UTF-16LE (little-endian)")
    } else if head.starts_with(&[0xFE, 0xFF]) {
        Some("UTF-16BE (big-endian)")
    } else {
        None
    }
}

/// Binary rather than text with a stray byte: more than 1% control bytes (NUL and the
/// others that text never holds). A text file with one NUL on some line is text; that line
/// is reported when it is parsed.
fn is_binary(head: &[u8]) -> bool {
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
        .count();
    control > (head.len() / 100).max(1)
}

pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A `.json` file starting with `{` is either JSON lines under the wrong name (common) or
/// one object. It is JSON lines when a second value follows the first.
fn json_object_or_lines(head: &[u8], whole_file: bool) -> FileKind {
    let mut values =
        serde_json::Deserializer::from_slice(head).into_iter::<serde::de::IgnoredAny>();
    match values.next() {
        Some(Ok(_)) => {
            let rest = &head[values.byte_offset()..];
            if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                FileKind::JsonLines
            } else if whole_file {
                FileKind::JsonObject
            } else {
                FileKind::JsonLines
            }
        }
        // The first value does not end inside the head: one big object.
        Some(Err(e)) if e.is_eof() => FileKind::JsonObject,
        _ => FileKind::JsonLines,
    }
}
