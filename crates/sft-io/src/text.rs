//! Raw text files: each document becomes a `{"text": ...}` row.

use std::io::BufRead;
use std::str::FromStr;

use serde_json::json;

use crate::{FileError, FileKind, RawRow, RowBatch, RowContent, RowReader};

/// How a text file is cut into documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TextSplit {
    /// The whole file is one document.
    #[default]
    Whole,
    /// Every non-blank line is a document.
    Line,
    /// Documents are separated by blank lines.
    Paragraph,
    /// Documents are separated by this string, such as `<|endoftext|>`.
    Separator(String),
}

impl FromStr for TextSplit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "whole" => TextSplit::Whole,
            "line" | "lines" => TextSplit::Line,
            "paragraph" | "paragraphs" => TextSplit::Paragraph,
            "" => return Err("the text separator is empty".into()),
            sep => TextSplit::Separator(sep.to_string()),
        })
    }
}

pub(crate) struct TextReader {
    input: Option<Box<dyn BufRead + Send>>,
    split: TextSplit,
}

impl TextReader {
    pub(crate) fn new(input: Box<dyn BufRead + Send>, split: TextSplit) -> Self {
        TextReader {
            input: Some(input),
            split,
        }
    }
}

/// Splits `text` into (1-based start line, document) pairs, dropping blank documents.
fn documents(text: &str, split: &TextSplit) -> Vec<(u64, String)> {
    let pieces: Vec<(usize, &str)> = match split {
        TextSplit::Whole => vec![(0, text)],
        TextSplit::Line => {
            let mut offset = 0;
            text.split_inclusive('\n')
                .map(|l| {
                    let start = offset;
                    offset += l.len();
                    (start, l)
                })
                .collect()
        }
        // Paragraphs end at a blank line, whether lines end in \n or \r\n.
        TextSplit::Paragraph => {
            let (mut pieces, mut start, mut offset) = (Vec::new(), 0, 0);
            for line in text.split_inclusive('\n') {
                if line.trim_end_matches(['\n', '\r']).is_empty() {
                    pieces.push((start, &text[start..offset]));
                    start = offset + line.len();
                }
                offset += line.len();
            }
            pieces.push((start, &text[start..]));
            pieces
        }
        TextSplit::Separator(sep) => {
            let sep = sep.as_str();
            let mut offset = 0;
            text.split(sep)
                .map(|d| {
                    let start = offset;
                    offset += d.len() + sep.len();
                    (start, d)
                })
                .collect()
        }
    };
    pieces
        .into_iter()
        .filter_map(|(start, piece)| {
            let trimmed = piece.trim_matches(|c| c == '\n' || c == '\r');
            if trimmed.trim().is_empty() {
                return None;
            }
            let lead = piece.len() - piece.trim_start_matches(['\n', '\r']).len();
            let line = 1 + text[..start + lead].bytes().filter(|&b| b == b'\n').count() as u64;
            Some((line, trimmed.to_string()))
        })
        .collect()
}

impl RowReader for TextReader {
    fn kind(&self) -> FileKind {
        FileKind::Text
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>, FileError> {
        let Some(mut input) = self.input.take() else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).map_err(FileError::io)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            let mut err = FileError::unreadable(format!(
                "line {line}: the text is not valid UTF-8 (byte {at}); re-encode the file as UTF-8"
            ));
            err.line = Some(line);
            err
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let rows = documents(text, &self.split)
            .into_iter()
            .enumerate()
            .map(|(i, (line, doc))| RawRow {
                line: Some(line),
                index: i as u64,
                content: RowContent::Value(json!({ "text": doc })),
            })
            .collect();
        Ok(Some(RowBatch {
            buf: Vec::new(),
            rows,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_split_keeps_start_lines() {
        let text = "Once upon a time.\nThe end.\n<|endoftext|>\nAnother story.\n<|endoftext|>\n";
        let docs = documents(text, &TextSplit::Separator("<|endoftext|>".into()));
        assert_eq!(
            docs,
            vec![
                (1, "Once upon a time.\nThe end.".to_string()),
                (4, "Another story.".to_string())
            ]
        );
        let lines = documents("a\n\nb\n", &TextSplit::Line);
        assert_eq!(lines, vec![(1, "a".to_string()), (3, "b".to_string())]);
        let paragraphs = documents("a\nb\n\nc", &TextSplit::Paragraph);
        assert_eq!(
            paragraphs,
            vec![(1, "a\nb".to_string()), (4, "c".to_string())]
        );
    }

    #[test]
    fn paragraphs_of_crlf_text() {
        // Windows line ends: a blank line is \r\n\r\n, and runs of blank lines are one break.
        let paragraphs = documents("a\r\nb\r\n\r\nc\r\n\r\n\r\nd\r\n", &TextSplit::Paragraph);
        assert_eq!(
            paragraphs,
            vec![
                (1, "a\r\nb".to_string()),
                (4, "c".to_string()),
                (7, "d".to_string())
            ]
        );
    }
}
