//! What a finished `convert`, `render` or `prepare` job did, as the lines a person reads
//! (the binary prints them; the figures themselves are in the summaries' fields).

use std::fmt::Write as _;
use std::path::Path;

use sft_formats::Format;

use crate::convert::ConvertSummary;
use crate::prepare::PrepareSummary;
use crate::render::RenderSummary;
use crate::text::{counted, thousands};

/// `, 23,616 rows not read`, when some are known not to have been read.
fn not_read_count(rows: u64) -> String {
    if rows > 0 {
        format!(", {} rows not read", thousands(rows))
    } else {
        String::new()
    }
}

impl ConvertSummary {
    /// The summary of a conversion into `to`.
    pub fn text(&self, to: Format) -> String {
        let s = self;
        let mut out = String::new();
        if s.output_written {
            let _ = writeln!(
                out,
                "converted {} in {:.2} s: {} written as {to} to {}, {} rejected",
                counted(s.rows_in, "row", "rows"),
                s.seconds,
                thousands(s.written),
                s.output.display(),
                thousands(s.rejected)
            );
        } else {
            let _ = writeln!(
                out,
                "converted {} in {:.2} s: nothing written to {}: an input could not be read to its end ({} converted and held back, {} rejected{})",
                counted(s.rows_in, "row", "rows"),
                s.seconds,
                s.output.display(),
                thousands(s.withheld),
                thousands(s.rejected),
                not_read_count(s.rows_not_read)
            );
        }
        for (code, n) in &s.reasons {
            let _ = writeln!(out, "  rejected {code}: {}", thousands(*n));
        }
        for r in &s.first_rejects {
            let _ = writeln!(out, "    {}: {}", r.location, r.reason);
        }
        for f in &s.unreadable_files {
            let _ = writeln!(
                out,
                "  unreadable {}: {} ({})",
                f.location, f.reason, f.code
            );
        }
        if !s.json_text_fields.is_empty() {
            let _ = writeln!(
                out,
                "note: {} hold different JSON types in different rows; stored as JSON text of \
                 the arrow.json type, which Python datasets reads back as the values",
                s.json_text_fields.join(", ")
            );
        }
        if let Some(path) = &s.rejects_file {
            let _ = writeln!(out, "rejects: {}", path.display());
        }
        out
    }
}

impl RenderSummary {
    /// The summary of a render with the template named `template` into `output`.
    pub fn text(&self, template: &str, output: &Path) -> String {
        let mut out = String::new();
        if !self.output_written {
            let _ = writeln!(
                out,
                "read {} rows in {:.2} s: nothing written to {}: an input could not be read to its end{}",
                thousands(self.rows),
                self.seconds,
                output.display(),
                not_read_count(self.rows_not_read)
            );
            return out;
        }
        let _ = writeln!(
            out,
            "rendered {} of {} rows with {template} in {:.2} s to {}; {} rows are errors",
            thousands(self.rendered),
            thousands(self.rows),
            self.seconds,
            output.display(),
            thousands(self.errors)
        );
        for (location, error) in &self.first_errors {
            let _ = writeln!(out, "    {location}: {error}");
        }
        out
    }
}

impl PrepareSummary {
    /// The summary of a preparation into `output` at `max_length` tokens.
    pub fn text(&self, output: &Path, max_length: usize) -> String {
        let s = self;
        let mut out = String::new();
        if !s.output_written {
            let _ = writeln!(
                out,
                "read {} rows in {:.2} s: nothing written to {} (nor its manifest): {} input {} could not be read to the end ({} examples held back, {} rejected{})",
                thousands(s.rows_in),
                s.seconds,
                output.display(),
                s.files_not_read,
                if s.files_not_read == 1 { "file" } else { "files" },
                thousands(s.examples),
                thousands(s.rejected),
                not_read_count(s.rows_not_read)
            );
            if let Some(path) = &s.rejects_file {
                let _ = writeln!(out, "rejects: {}", path.display());
            }
            return out;
        }
        let _ = writeln!(
            out,
            "prepared {} in {:.2} s: {}, {} rejected ({} with no trained token), {} rows written to {}",
            counted(s.rows_in, "row", "rows"),
            s.seconds,
            counted(s.examples, "example", "examples"),
            thousands(s.rejected),
            thousands(s.no_trained_tokens),
            thousands(s.rows_out),
            output.display()
        );
        let _ = writeln!(
            out,
            "tokens: {} ({} trained, {:.1}%, encoded by {}); {} truncated at {max_length}",
            thousands(s.tokens),
            thousands(s.trained_tokens),
            if s.tokens > 0 {
                100.0 * s.trained_tokens as f64 / s.tokens as f64
            } else {
                0.0
            },
            s.encoder,
            counted(s.truncated, "example", "examples"),
        );
        if let Some(l) = &s.lengths {
            let _ = writeln!(
                out,
                "tokens per example: median {}, p90 {}, p99 {}, max {}",
                thousands(l.p50),
                thousands(l.p90),
                thousands(l.p99),
                thousands(l.max)
            );
        }
        if let Some(p) = &s.packing {
            let _ = writeln!(
                out,
                "packing {}: {} rows (lower bound {}), efficiency {:.2}%",
                p.strategy,
                thousands(p.rows),
                thousands(p.lower_bound_rows),
                p.efficiency * 100.0
            );
        }
        // One source is the file's name: nothing to add. With several, what each gave.
        if s.sources.len() > 1 {
            const SHOWN: usize = 12;
            let _ = writeln!(
                out,
                "sources: {} ({}examples, tokens, trained tokens each)",
                thousands(s.sources.len() as u64 + s.sources_left_out),
                if s.sources.len() > SHOWN {
                    "the largest; "
                } else {
                    ""
                }
            );
            for c in s.sources.iter().take(SHOWN) {
                let _ = writeln!(
                    out,
                    "  {}  {}  {}  {} ({:.1}% of trained)",
                    c.source,
                    thousands(c.examples),
                    thousands(c.tokens),
                    thousands(c.trained_tokens),
                    if s.trained_tokens > 0 {
                        100.0 * c.trained_tokens as f64 / s.trained_tokens as f64
                    } else {
                        0.0
                    }
                );
            }
            let more = (s.sources.len().saturating_sub(SHOWN)) as u64 + s.sources_left_out;
            if more > 0 {
                let _ = writeln!(out, "  ... and {} more", thousands(more));
            }
        }
        for (location, code, reason) in &s.first_rejects {
            let _ = writeln!(out, "  rejected {location}: {code}: {reason}");
        }
        for w in &s.warnings {
            let _ = writeln!(out, "warning {}: {}", w.code, w.message);
        }
        if let Some(path) = &s.rejects_file {
            let _ = writeln!(out, "rejects: {}", path.display());
        }
        let _ = writeln!(
            out,
            "manifest: {}",
            crate::prepared::manifest_path(output).display()
        );
        out
    }
}
