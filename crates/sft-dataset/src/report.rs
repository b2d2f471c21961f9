//! The two faces of a check: a JSON report for machines, a summary for people.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{json, Map, Value};
use sft_formats::{IssueCode, Severity};
use sft_io::write::{AtomicFile, WriteError};

use crate::check::CheckReport;
use crate::text::{counted, plural, thousands};

/// Version of the report's layout; bumped when a field changes meaning.
pub const REPORT_VERSION: u64 = 1;

impl CheckReport {
    /// Everything but the list of issues, as JSON.
    pub fn header_json(&self, strict: bool) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("version".into(), json!(REPORT_VERSION));
        m.insert("passed".into(), json!(self.passed(strict)));
        m.insert("strict".into(), json!(strict));
        m.insert("files".into(), json!(self.files));
        m.insert("rows".into(), json!(self.rows));
        m.insert("format".into(), json!(self.format().map(|f| f.as_str())));
        m.insert("formats".into(), json!(self.kinds));
        m.insert("errors".into(), json!(self.errors));
        m.insert("warnings".into(), json!(self.warnings));
        let codes: Map<String, Value> = self
            .counts
            .iter()
            .map(|(code, n)| {
                (
                    code.as_str().to_string(),
                    json!({"severity": code.severity().as_str(), "count": n}),
                )
            })
            .collect();
        m.insert("codes".into(), Value::Object(codes));
        m.insert("stats".into(), json!(self.stats));
        m.insert("sources".into(), json!(self.sources));
        if let Some(eval) = &self.eval {
            m.insert("eval".into(), json!(eval));
        }
        if let Some(template) = &self.template {
            m.insert("chat_template".into(), json!(template));
        }
        if let Some(tokens) = &self.tokens {
            m.insert("tokens".into(), json!(tokens));
        }
        m.insert("bytes".into(), json!(self.bytes));
        m.insert("data_bytes".into(), json!(self.data_bytes));
        m.insert(
            "seconds".into(),
            json!((self.seconds * 1000.0).round() / 1000.0),
        );
        m
    }

    /// Writes the JSON report: the header fields, then `issues`, one per line, in the order
    /// found (file by file, row by row, then dataset-level findings). Needs the check to
    /// have run with `keep_all_issues`; otherwise the issues are the per-code samples and
    /// `issues_complete` is false. With `issues_per_code`, the first that many of each code
    /// are listed, `issues_left_out` counts the others per code, and `issues_complete` is
    /// false when any was left out.
    pub fn write_json(&mut self, path: &Path, strict: bool) -> Result<(), WriteError> {
        let fail = |e: std::io::Error| WriteError {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut header = self.header_json(strict);
        let spill = self.take_all_issues();
        header.insert(
            "issues_complete".into(),
            json!(spill.is_some() && self.issues_left_out.is_empty()),
        );
        header.insert("issues_per_code_limit".into(), json!(self.issues_per_code));
        let left_out: Map<String, Value> = self
            .issues_left_out
            .iter()
            .map(|(code, n)| (code.as_str().to_string(), json!(n)))
            .collect();
        header.insert("issues_left_out".into(), Value::Object(left_out));
        let header_text = serde_json::to_string_pretty(&Value::Object(header))
            .expect("a JSON map always serialises");
        let mut out = AtomicFile::create(path)?;
        // The header without its closing brace, then the issues array.
        out.write_all(&header_text.as_bytes()[..header_text.len() - 2])
            .map_err(fail)?;
        out.write_all(b",\n  \"issues\": [").map_err(fail)?;
        let mut first = true;
        let mut write_issue = |out: &mut AtomicFile, line: &[u8]| -> std::io::Result<()> {
            out.write_all(if first { b"\n    " } else { b",\n    " })?;
            first = false;
            out.write_all(line)
        };
        match spill {
            Some(spill) => {
                let mut file = spill.into_inner().map_err(|e| fail(e.into_error()))?;
                file.seek(SeekFrom::Start(0)).map_err(fail)?;
                let mut reader = BufReader::with_capacity(1 << 16, &file);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).map_err(fail)? == 0 {
                        break;
                    }
                    while line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    write_issue(&mut out, &line).map_err(fail)?;
                }
            }
            None => {
                for issue in self.samples.values().flatten() {
                    let text = serde_json::to_vec(issue).expect("issues serialise");
                    write_issue(&mut out, &text).map_err(fail)?;
                }
            }
        }
        out.write_all(b"\n  ]\n}\n").map_err(fail)?;
        out.finish()
    }

    /// A summary a person reads: what was checked, what the data looks like, every code
    /// with its count and first locations, and the verdict.
    pub fn summary(&self, strict: bool, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let mut s = String::new();
        // Throughput is of the data read (rows as JSON text), not of compressed files.
        let mb = self.data_bytes as f64 / 1e6;
        let file_mb = self.bytes as f64 / 1e6;
        let on_disk = if (mb - file_mb).abs() > 0.1 * mb.max(file_mb) && mb.max(file_mb) >= 0.1 {
            format!(" ({file_mb:.1} MB of files)")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "checked {} {}, {}, {:.1} MB of data{on_disk} in {:.2} s ({:.0} MB/s)",
            self.files.len(),
            plural(self.files.len() as u64, "file", "files"),
            counted(self.rows, "row", "rows"),
            mb,
            self.seconds,
            if self.seconds > 0.0 {
                mb / self.seconds
            } else {
                0.0
            }
        );
        if self.files.len() > 1 {
            for f in &self.files {
                let _ = writeln!(
                    s,
                    "  {}  {}  {}{}",
                    f.path,
                    f.kind.unwrap_or("?"),
                    counted(f.rows, "row", "rows"),
                    if f.error.is_some() {
                        "  (unreadable)"
                    } else {
                        ""
                    }
                );
            }
        }
        if !self.kinds.is_empty() {
            let mut kinds: Vec<(&String, &u64)> = self.kinds.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let listed: Vec<String> = kinds
                .iter()
                .map(|(k, n)| format!("{k} {}", thousands(**n)))
                .collect();
            let _ = writeln!(s, "formats: {}", listed.join(", "));
        }
        if let Some(c) = &self.stats.chars {
            let _ = write!(
                s,
                "characters per row: median {}, p90 {}, p99 {}, max {}",
                thousands(c.p50),
                thousands(c.p90),
                thousands(c.p99),
                thousands(c.max)
            );
            if let Some(t) = &self.stats.turns {
                let _ = write!(
                    s,
                    "; turns per conversation: median {}, max {}",
                    t.p50, t.max
                );
            }
            s.push('\n');
        }
        // One source is the file's name: nothing to add. With several, what each holds.
        if self.sources.len() > 1 {
            const SHOWN: usize = 12;
            let _ = writeln!(
                s,
                "sources: {}{}",
                self.sources.len(),
                if self.sources.len() > SHOWN {
                    " (the largest)"
                } else {
                    ""
                }
            );
            for src in self.sources.iter().take(SHOWN) {
                let _ = write!(s, "  {}  {}", src.source, counted(src.rows, "row", "rows"));
                if src.rows_with_errors > 0 {
                    let _ = write!(s, " ({} with errors)", thousands(src.rows_with_errors));
                }
                if let Some(c) = &src.chars {
                    let _ = write!(
                        s,
                        "; characters median {}, p90 {}",
                        thousands(c.p50),
                        thousands(c.p90)
                    );
                }
                if let Some(t) = &src.tokens {
                    let _ = write!(
                        s,
                        "; tokens median {}, p90 {}, {} trained",
                        thousands(t.p50),
                        thousands(t.p90),
                        thousands(src.trained_tokens)
                    );
                }
                if let Some(t) = &src.turns {
                    let _ = write!(s, "; turns median {}", t.p50);
                }
                s.push('\n');
            }
            if self.sources.len() > SHOWN {
                let _ = writeln!(
                    s,
                    "  ... and {} more (in --report)",
                    self.sources.len() - SHOWN
                );
            }
        }
        if let Some(template) = &self.template {
            let _ = writeln!(
                s,
                "chat template: {template} (every conversational row rendered)"
            );
        }
        if let Some(t) = &self.tokens {
            if let Some(l) = &t.lengths {
                let _ = writeln!(
                    s,
                    "tokens per row: median {}, p90 {}, p99 {}, max {}; {} tokens, {} trained ({:.1}%)",
                    thousands(l.p50),
                    thousands(l.p90),
                    thousands(l.p99),
                    thousands(l.max),
                    thousands(t.tokens),
                    thousands(t.trained_tokens),
                    if t.tokens > 0 { 100.0 * t.trained_tokens as f64 / t.tokens as f64 } else { 0.0 }
                );
            }
            let _ = writeln!(
                s,
                "max length {}: {} rows would be truncated; packed (bfd) into {} rows (lower bound {}), efficiency {:.1}%",
                t.max_length,
                thousands(t.truncated_rows),
                thousands(t.packed_rows),
                thousands(t.packed_lower_bound),
                t.packing_efficiency * 100.0
            );
        }
        if let Some(eval) = &self.eval {
            let _ = writeln!(
                s,
                "evaluation data: {}, {} also in it",
                counted(eval.rows, "row", "rows"),
                counted(eval.overlapping_rows, "training row", "training rows")
            );
        }
        for severity in [Severity::Error, Severity::Warning] {
            let codes: Vec<(&IssueCode, &u64)> = self
                .counts
                .iter()
                .filter(|(c, _)| c.severity() == severity)
                .collect();
            if codes.is_empty() {
                continue;
            }
            let total: u64 = codes.iter().map(|(_, n)| **n).sum();
            let (label, ansi) = match severity {
                Severity::Error => ("errors", "1;31"),
                Severity::Warning => ("warnings", "1;33"),
            };
            let _ = writeln!(
                s,
                "\n{} ({} {}, {} {})",
                paint(ansi, label),
                codes.len(),
                plural(codes.len() as u64, "kind", "kinds"),
                thousands(total),
                plural(total, "issue", "issues")
            );
            for (code, n) in codes {
                let _ = writeln!(s, "  {}  {}", paint("1", code.as_str()), thousands(*n));
                let samples = self.samples.get(code).map(Vec::as_slice).unwrap_or(&[]);
                let mut last_hint: Option<&str> = None;
                for issue in samples {
                    let at = issue
                        .location
                        .as_ref()
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "dataset".to_string());
                    let path = if issue.path.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", issue.path)
                    };
                    let _ = writeln!(s, "    {at}{path}: {}", issue.message);
                    if last_hint != Some(issue.hint.as_str()) {
                        let _ = writeln!(s, "      {} {}", paint("2", "hint:"), issue.hint);
                        last_hint = Some(issue.hint.as_str());
                    }
                }
                if *n > samples.len() as u64 {
                    let _ = writeln!(
                        s,
                        "    ... and {} more",
                        thousands(*n - samples.len() as u64)
                    );
                }
            }
        }
        let verdict = if self.passed(strict) {
            if self.warnings > 0 {
                paint(
                    "1;32",
                    &format!(
                        "passed with {} {}",
                        thousands(self.warnings),
                        plural(self.warnings, "warning", "warnings")
                    ),
                )
            } else {
                paint("1;32", "passed")
            }
        } else if self.errors > 0 {
            paint(
                "1;31",
                &format!(
                    "failed: {} {}",
                    thousands(self.errors),
                    plural(self.errors, "error", "errors")
                ),
            )
        } else {
            paint(
                "1;31",
                &format!("failed: {} warnings (--strict)", thousands(self.warnings)),
            )
        };
        let _ = writeln!(s, "\n{verdict}");
        s
    }
}
