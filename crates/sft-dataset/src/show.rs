//! `show`: examples as the model will see them, with the trained tokens marked.

use std::fmt::Write as _;
use std::ops::Range;

use sft_io::{open, DataFile, ReadOptions};
use sft_template::ChatTemplate;
use sft_tokenize::{tokenize_row, SftTokenizer, TokenizeOptions};

use crate::location::Location;
use crate::pipeline::{describe_row_error, parse_row, row_errors, row_location};
use crate::render::tool_call_loss;

/// A run of tokens that decodes to whole characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub trained: bool,
    pub special: bool,
    /// Tokens in the piece (more than one where a character spans tokens).
    pub tokens: usize,
}

#[derive(Debug, Clone)]
pub struct ShownRow {
    pub location: Location,
    pub format: Option<String>,
    pub pieces: Vec<Piece>,
    pub tokens: usize,
    pub trained: usize,
    pub full_length: usize,
    pub error: Option<String>,
}

/// Which rows to show: `0..5`, `7`, `0..3,10,20..22` (0-based, ends exclusive).
pub fn parse_rows(spec: &str) -> Result<Vec<Range<u64>>, String> {
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            let bad = || format!("--rows {spec}: expected ranges like 0..5 or 3 or 0..3,10");
            match part.split_once("..") {
                Some((a, b)) => {
                    let a: u64 = if a.is_empty() {
                        0
                    } else {
                        a.parse().map_err(|_| bad())?
                    };
                    let b: u64 = b.parse().map_err(|_| bad())?;
                    if b <= a {
                        return Err(format!("--rows {spec}: the range {part} is empty"));
                    }
                    Ok(a..b)
                }
                None => {
                    let a: u64 = part.parse().map_err(|_| bad())?;
                    Ok(a..a + 1)
                }
            }
        })
        .collect()
}

/// Groups tokens into pieces that decode to whole characters.
fn pieces(tok: &SftTokenizer, ids: &[u32], mask: &[u8]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        let mut end = start + 1;
        let mut text = tok
            .tokenizer
            .decode(&ids[start..end], false)
            .unwrap_or_default();
        // A character split over byte-level tokens decodes to U+FFFD until it is whole.
        while text.ends_with('\u{FFFD}') && end < ids.len() && end - start < 8 {
            end += 1;
            text = tok
                .tokenizer
                .decode(&ids[start..end], false)
                .unwrap_or_default();
        }
        out.push(Piece {
            text,
            trained: mask[start..end].contains(&1),
            special: ids[start..end].iter().all(|&id| tok.is_special(id)),
            tokens: end - start,
        });
        start = end;
    }
    out
}

/// Tokenizes the selected rows of `file`.
pub fn show_rows(
    file: &DataFile,
    read: &ReadOptions,
    tok: &SftTokenizer,
    template: Option<&ChatTemplate>,
    options: &TokenizeOptions,
    rows: &[Range<u64>],
) -> Result<Vec<ShownRow>, String> {
    let last = rows.iter().map(|r| r.end).max().unwrap_or(0);
    let mut reader = open(file, read).map_err(|e| format!("{}: {e}", file.display))?;
    let mut out = Vec::new();
    'batches: while let Some(batch) = reader
        .next_batch()
        .map_err(|e| format!("{}: {e}", file.display))?
    {
        for raw in &batch.rows {
            if raw.index >= last {
                break 'batches;
            }
            if !rows.iter().any(|r| r.contains(&raw.index)) {
                continue;
            }
            let location = row_location(file, raw);
            let shown = match parse_row(&batch, raw) {
                Err(p) => error_row(location, p.message),
                // A row `prepare` wrote is shown as it is: its tokens, trained where labelled.
                Ok(row) if prepared_tokens(&row).is_some() => {
                    let (ids, mask) = prepared_tokens(&row).expect("just checked");
                    ShownRow {
                        location,
                        format: Some("prepared".to_string()),
                        pieces: pieces(tok, &ids, &mask),
                        tokens: ids.len(),
                        trained: mask.iter().filter(|&&m| m == 1).count(),
                        full_length: ids.len(),
                        error: None,
                    }
                }
                // What `check` calls an error is never trained, so never shown as trained.
                Ok(row) if !row_errors(&row, &[], &options.text_field).is_empty() => {
                    let errors = row_errors(&row, &[], &options.text_field);
                    let listed: Vec<String> = errors.iter().map(describe_row_error).collect();
                    error_row(
                        location,
                        format!(
                            "{}; prepare and sft-train reject this row",
                            listed.join("; ")
                        ),
                    )
                }
                Ok(row)
                    if template
                        .is_some_and(|t| tool_call_loss(t, &options.render, &row).is_some()) =>
                {
                    let issue = template
                        .and_then(|t| tool_call_loss(t, &options.render, &row))
                        .expect("just found");
                    error_row(
                        location,
                        format!(
                            "{}; prepare and sft-train reject this row",
                            describe_row_error(&issue)
                        ),
                    )
                }
                Ok(row) => match tokenize_row(tok, template, &row, options) {
                    Err(e) => error_row(location, format!("{}: {}", e.code, e.reason)),
                    Ok(example) => ShownRow {
                        location,
                        format: Some(example.format.to_string()),
                        pieces: pieces(tok, &example.input_ids, &example.mask),
                        tokens: example.input_ids.len(),
                        trained: example.trained_tokens(),
                        full_length: example.full_length,
                        error: None,
                    },
                },
            };
            out.push(shown);
        }
    }
    Ok(out)
}

/// The tokens of a prepared row (`input_ids`, with `labels` -100 where not trained, or a
/// `completion_mask`), as `prepare` and TRL write them; `None` for other rows.
fn prepared_tokens(row: &serde_json::Value) -> Option<(Vec<u32>, Vec<u8>)> {
    let ints = |key: &str| -> Option<Vec<i64>> {
        row.get(key)?
            .as_array()?
            .iter()
            .map(serde_json::Value::as_i64)
            .collect()
    };
    let ids: Vec<u32> = ints("input_ids")?
        .into_iter()
        .map(|id| u32::try_from(id).ok())
        .collect::<Option<_>>()?;
    let mask: Vec<u8> = match (ints("labels"), ints("completion_mask")) {
        (Some(labels), _) if labels.len() == ids.len() => {
            labels.iter().map(|&l| u8::from(l != -100)).collect()
        }
        (_, Some(mask)) if mask.len() == ids.len() => {
            mask.iter().map(|&m| u8::from(m != 0)).collect()
        }
        _ => vec![1; ids.len()],
    };
    Some((ids, mask))
}

fn error_row(location: Location, error: String) -> ShownRow {
    ShownRow {
        location,
        format: None,
        pieces: Vec::new(),
        tokens: 0,
        trained: 0,
        full_length: 0,
        error: Some(error),
    }
}

fn header(row: &ShownRow) -> String {
    match &row.error {
        Some(e) => format!("{}: cannot be shown: {e}", row.location),
        None => {
            let cut = if row.full_length > row.tokens {
                format!(", cut from {}", row.full_length)
            } else {
                String::new()
            };
            format!(
                "{} · {} · {} tokens{cut} · {} trained",
                row.location,
                row.format.as_deref().unwrap_or("?"),
                row.tokens,
                row.trained
            )
        }
    }
}

/// Rows for a terminal: trained tokens green, the rest dim, special tokens in colour; without
/// colour, trained runs between ⟦ and ⟧. `boundaries` puts a `|` between tokens.
pub fn to_terminal(rows: &[ShownRow], color: bool, boundaries: bool) -> String {
    let mut s = String::new();
    for row in rows {
        let _ = writeln!(
            s,
            "{}",
            if color {
                format!("\x1b[1m{}\x1b[0m", header(row))
            } else {
                header(row)
            }
        );
        let mut open = false;
        for (i, p) in row.pieces.iter().enumerate() {
            if boundaries && i > 0 {
                s.push_str(if color { "\x1b[90m|\x1b[0m" } else { "|" });
            }
            if color {
                let style = match (p.special, p.trained) {
                    (true, true) => "1;35",
                    (true, false) => "2;35",
                    (false, true) => "32",
                    (false, false) => "2",
                };
                let _ = write!(s, "\x1b[{style}m{}\x1b[0m", p.text);
            } else {
                if p.trained && !open {
                    s.push('⟦');
                    open = true;
                } else if !p.trained && open {
                    s.push('⟧');
                    open = false;
                }
                s.push_str(&p.text);
            }
        }
        if open {
            s.push('⟧');
        }
        s.push_str("\n\n");
    }
    if !color {
        s.push_str("(⟦…⟧ marks the tokens the loss is computed on)\n");
    }
    s
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A self-contained HTML page of the rows.
/// An HTML page of the rows; `boundaries` starts it with token boundaries shown (a checkbox
/// on the page turns them on and off).
pub fn to_html(rows: &[ShownRow], title: &str, boundaries: bool) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }}
h1 {{ font-size: 1.3em; }}
.legend span {{ margin-right: 1.5em; }}
.row {{ border: 1px solid #ddd; border-radius: 6px; margin: 1.2em 0; }}
.row h2 {{ font-size: .95em; font-weight: 600; margin: 0; padding: .5em .8em; background: #f6f6f6; border-bottom: 1px solid #ddd; }}
.row pre {{ margin: 0; padding: .8em; white-space: pre-wrap; word-break: break-word; font: 13px/1.6 ui-monospace, monospace; }}
.t {{ color: #999; }}
.t.y {{ color: #111; background: #d9f2d9; }}
.t.s {{ color: #8a2be2; font-weight: 600; }}
.t.s.y {{ background: #ead9f7; }}
body.b .t {{ box-shadow: inset -1px 0 0 #bbb; }}
.nl {{ color: #5a9e5a; font-size: .85em; }}
.err {{ color: #b00020; }}
</style></head><body{body_class}>
<h1>{title}</h1>
<p class="legend"><span class="t y">trained</span><span class="t">not trained</span><span class="t s">special token</span>
<label><input type="checkbox"{checked} onchange="document.body.classList.toggle('b', this.checked)"> token boundaries</label></p>
"#,
        title = escape(title),
        body_class = if boundaries { " class=\"b\"" } else { "" },
        checked = if boundaries { " checked" } else { "" },
    );
    for row in rows {
        let _ = write!(s, "<div class=\"row\"><h2>{}</h2>", escape(&header(row)));
        if let Some(e) = &row.error {
            let _ = writeln!(s, "<pre class=\"err\">{}</pre></div>", escape(e));
            continue;
        }
        s.push_str("<pre>");
        for p in &row.pieces {
            let class = match (p.special, p.trained) {
                (true, true) => "t s y",
                (true, false) => "t s",
                (false, true) => "t y",
                (false, false) => "t",
            };
            // A trained newline would be invisible: mark it.
            let text = if p.trained {
                escape(&p.text).replace('\n', "<span class=\"nl\">↵</span>\n")
            } else {
                escape(&p.text)
            };
            let _ = write!(s, "<span class=\"{class}\">{text}</span>");
        }
        s.push_str("</pre></div>\n");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ranges() {
        assert_eq!(parse_rows("0..5").unwrap(), vec![0..5]);
        assert_eq!(parse_rows("3, 10..12").unwrap(), vec![3..4, 10..12]);
        assert!(parse_rows("5..2").is_err());
        assert!(parse_rows("a").is_err());
    }
}
