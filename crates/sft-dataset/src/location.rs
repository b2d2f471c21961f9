//! Where something is: a file, and a line or a row inside it.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    /// 1-based line, for line-oriented files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based row index in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
}

impl Location {
    pub fn file(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            line: None,
            row: None,
        }
    }
}

/// `file:line` for line-oriented files, `file row N` otherwise, `file` for the whole file.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.row) {
            (Some(line), _) => write!(f, "{}:{line}", self.file),
            (None, Some(row)) => write!(f, "{} row {row}", self.file),
            (None, None) => f.write_str(&self.file),
        }
    }
}
