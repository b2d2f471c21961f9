//! `stats`: what a dataset holds, per source and format: rows, lengths in characters (and
//! tokens, with a tokenizer), turns, roles, scripts, tool use, with percentiles, as JSON
//! and as an SVG of length histograms per source.
//!
//! Lengths are kept as counts of each distinct value (`sft_dataset::stats::LengthCounts`,
//! as `check` keeps them), not one entry per row: percentiles are exact (nearest rank) and
//! memory is bounded by the number of distinct lengths, whatever the number of rows. No
//! table engine is needed for that: the groups (source x format) are few.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use sft_dataset::check::TokenCheck;
use sft_dataset::stats::LengthCounts as Counts;
use sft_formats::{validate_row, RowKind};

use crate::pass::{each_row, Input, OpError};
use crate::row::row_text;
use crate::script::dominant_script;
use sft_dataset::source::{file_source_name, row_source};

/// What is counted for one source and format.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub rows: u64,
    pub chars: Counts,
    pub tokens: Counts,
    pub turns: Counts,
    pub roles: BTreeMap<String, u64>,
    pub scripts: BTreeMap<String, u64>,
    pub rows_with_tools: u64,
    pub rows_with_tool_calls: u64,
    pub tokenize_errors: u64,
}

impl Group {
    fn merge(&mut self, o: &Group) {
        self.rows += o.rows;
        self.chars.merge(&o.chars);
        self.tokens.merge(&o.tokens);
        self.turns.merge(&o.turns);
        for (k, v) in &o.roles {
            *self.roles.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.scripts {
            *self.scripts.entry(k.clone()).or_default() += v;
        }
        self.rows_with_tools += o.rows_with_tools;
        self.rows_with_tool_calls += o.rows_with_tool_calls;
        self.tokenize_errors += o.tokenize_errors;
    }

    fn to_json(&self, source: &str, format: &str) -> Value {
        serde_json::json!({
            "source": source,
            "format": format,
            "rows": self.rows,
            "chars": self.chars.stats(),
            "tokens": self.tokens.stats(),
            "turns": self.turns.stats(),
            "roles": self.roles,
            "scripts": self.scripts,
            "rows_with_tools": self.rows_with_tools,
            "rows_with_tool_calls": self.rows_with_tool_calls,
            "tokenize_errors": self.tokenize_errors,
            "chars_histogram_log2": self.chars.log2_bins(),
        })
    }
}

struct RowFacts {
    source: String,
    format: &'static str,
    chars: u64,
    turns: Option<u64>,
    tokens: Option<Result<u64, ()>>,
    roles: Vec<String>,
    script: &'static str,
    tools: bool,
    tool_calls: bool,
}

fn facts(row: &Value, file_source: &str, tokens: Option<&TokenCheck>) -> RowFacts {
    let checked = validate_row(row);
    let conversational = matches!(checked.kind, RowKind::Format(f) if f.is_conversational());
    let mut roles = Vec::new();
    let mut tool_calls = false;
    for key in ["messages", "prompt", "completion"] {
        if let Some(Value::Array(msgs)) = row.get(key) {
            for m in msgs {
                if let Some(r) = m.get("role").and_then(Value::as_str) {
                    roles.push(r.to_string());
                }
                if m.get("tool_calls")
                    .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                {
                    tool_calls = true;
                }
            }
        }
    }
    let tools = match row.get("tools") {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.trim().is_empty() && s.trim() != "[]",
        _ => false,
    };
    let tokens = tokens.map(|t| {
        sft_tokenize::tokenize_row(&t.tokenizer, t.template.as_ref(), row, &t.options)
            .map(|e| e.full_length as u64)
            .map_err(|_| ())
    });
    RowFacts {
        source: row_source(row, file_source),
        format: checked.kind.as_str(),
        chars: checked.chars as u64,
        turns: conversational.then_some(checked.turns as u64),
        tokens,
        roles,
        script: dominant_script(&row_text(row, checked.kind)),
        tools,
        tool_calls,
    }
}

pub struct StatsJob {
    pub input: Input,
    pub tokens: Option<TokenCheck>,
    /// The JSON report; an SVG of the histograms is written beside it (same name, .svg).
    pub report: Option<PathBuf>,
}

pub struct StatsSummary {
    pub rows: u64,
    pub bad_rows: u64,
    /// (source, format) -> counts.
    pub groups: BTreeMap<(String, String), Group>,
    pub seconds: f64,
    pub report: Option<PathBuf>,
    pub picture: Option<PathBuf>,
}

impl StatsSummary {
    pub fn by_source(&self) -> BTreeMap<String, Group> {
        let mut out: BTreeMap<String, Group> = BTreeMap::new();
        for ((source, _), g) in &self.groups {
            out.entry(source.clone()).or_default().merge(g);
        }
        out
    }

    pub fn all(&self) -> Group {
        let mut all = Group::default();
        for g in self.groups.values() {
            all.merge(g);
        }
        all
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "version": 1,
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "all": self.all().to_json("*", "*"),
            "by_source": self.by_source().iter().map(|(s, g)| g.to_json(s, "*")).collect::<Vec<_>>(),
            "by_source_and_format": self.groups.iter().map(|((s, f), g)| g.to_json(s, f)).collect::<Vec<_>>(),
            "seconds": self.seconds,
        })
    }

    /// A table for the terminal.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} rows ({} unparsable) in {:.1} s",
            sft_dataset::thousands(self.rows),
            self.bad_rows,
            self.seconds
        );
        let _ = writeln!(
            out,
            "{:<24} {:<34} {:>10} {:>28} {:>22} {:>16}",
            "source", "format", "rows", "chars p50/p90/max", "tokens p50/p90/max", "turns p50/max"
        );
        let line = |name: &str, format: &str, g: &Group| {
            let p = |c: &Counts| match c.stats() {
                Some(p) => format!("{}/{}/{}", p.p50, p.p90, p.max),
                None => "-".into(),
            };
            let turns = match g.turns.stats() {
                Some(t) => format!("{}/{}", t.p50, t.max),
                None => "-".into(),
            };
            format!(
                "{name:<24} {format:<34} {:>10} {:>28} {:>22} {:>16}\n",
                sft_dataset::thousands(g.rows),
                p(&g.chars),
                p(&g.tokens),
                turns
            )
        };
        for ((s, f), g) in &self.groups {
            out.push_str(&line(s, f, g));
        }
        let all = self.all();
        out.push_str(&line("all", "*", &all));
        let scripts: Vec<String> = all
            .scripts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let roles: Vec<String> = all.roles.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "scripts: {}", scripts.join(", "));
        let _ = writeln!(
            out,
            "roles (messages): {}",
            if roles.is_empty() {
                "-".into()
            } else {
                roles.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "tool use: {} rows with tools, {} rows with tool calls",
            all.rows_with_tools, all.rows_with_tool_calls
        );
        if let Some(r) = &self.report {
            let _ = writeln!(out, "report: {}", r.display());
        }
        if let Some(p) = &self.picture {
            let _ = writeln!(out, "histograms: {}", p.display());
        }
        out
    }
}

/// The SVG beside a report: `stats.json` -> `stats.svg`.
pub fn picture_path(report: &Path) -> PathBuf {
    report.with_extension("svg")
}

pub fn stats(job: &StatsJob) -> Result<StatsSummary, OpError> {
    let started = Instant::now();
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut bad_rows = 0;
    let rows = each_row(
        &job.input,
        |file, value| facts(&value, &file_source_name(&file.path), job.tokens.as_ref()),
        |_, result| {
            let f = match result {
                Ok(f) => f,
                Err(_) => {
                    bad_rows += 1;
                    return Ok(());
                }
            };
            let g = groups.entry((f.source, f.format.to_string())).or_default();
            g.rows += 1;
            g.chars.add(f.chars);
            if let Some(t) = f.turns {
                g.turns.add(t);
            }
            match f.tokens {
                Some(Ok(t)) => g.tokens.add(t),
                Some(Err(())) => g.tokenize_errors += 1,
                None => {}
            }
            for r in f.roles {
                *g.roles.entry(r).or_default() += 1;
            }
            *g.scripts.entry(f.script.to_string()).or_default() += 1;
            g.rows_with_tools += f.tools as u64;
            g.rows_with_tool_calls += f.tool_calls as u64;
            Ok(())
        },
    )?;
    let mut summary = StatsSummary {
        rows,
        bad_rows,
        groups,
        seconds: started.elapsed().as_secs_f64(),
        report: None,
        picture: None,
    };
    if let Some(path) = &job.report {
        let text = serde_json::to_string_pretty(&summary.to_json()).unwrap_or_default();
        sft_io::write::write_atomic(path, text.as_bytes())?;
        let picture = picture_path(path);
        sft_io::write::write_atomic(&picture, histograms_svg(&summary.by_source()).as_bytes())?;
        summary.report = Some(path.clone());
        summary.picture = Some(picture);
    }
    Ok(summary)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel per source: rows per power-of-two bin of characters (and of tokens, when
/// counted), bars scaled to the panel's largest bin.
pub fn histograms_svg(sources: &BTreeMap<String, Group>) -> String {
    use std::fmt::Write;
    let (panel_w, panel_h, pad) = (460.0, 150.0, 40.0);
    let columns = 2;
    let panels: Vec<(String, &Counts)> = sources
        .iter()
        .flat_map(|(s, g)| {
            let mut v = vec![(format!("{s}: characters per row"), &g.chars)];
            if g.tokens.stats().is_some() {
                v.push((format!("{s}: tokens per row"), &g.tokens));
            }
            v
        })
        .collect();
    let rows = panels.len().div_ceil(columns).max(1);
    let width = columns as f64 * (panel_w + pad) + pad;
    let height = rows as f64 * (panel_h + pad * 1.5) + pad;
    let mut svg = String::new();
    let _ = write!(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    for (i, (title, counts)) in panels.iter().enumerate() {
        let x0 = pad + (i % columns) as f64 * (panel_w + pad);
        let y0 = pad + (i / columns) as f64 * (panel_h + pad * 1.5);
        let bins = counts.log2_bins();
        let most = bins.values().copied().max().unwrap_or(1).max(1) as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{x0}\" y=\"{}\" font-weight=\"bold\">{}</text>",
            y0 - 8.0,
            escape(title)
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>",
            y0 + panel_h,
            x0 + panel_w,
            y0 + panel_h
        );
        let first = bins.keys().next().copied().unwrap_or(0);
        let last = bins.keys().next_back().copied().unwrap_or(0);
        let index = |b: u64| {
            if b == 0 {
                0
            } else {
                64 - b.leading_zeros() as usize
            }
        };
        let span = (index(last) - index(first) + 1).max(1);
        let bar_w = panel_w / span as f64;
        for (b, c) in &bins {
            let k = index(*b) - index(first);
            let h = *c as f64 / most * (panel_h - 14.0);
            let x = x0 + k as f64 * bar_w;
            let _ = writeln!(svg, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4878d0\"><title>{}-{}: {c} rows</title></rect>", y0 + panel_h - h, (bar_w - 1.0).max(1.0), b, if *b == 0 { 0 } else { b * 2 - 1 });
            if span <= 16 || k % 2 == 0 {
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                    x + bar_w / 2.0,
                    y0 + panel_h + 12.0,
                    b
                );
            }
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">max bin {} rows</text>",
            x0 + panel_w,
            y0 + 4.0,
            most as u64
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_a_panel_per_source() {
        let mut sources = BTreeMap::new();
        let mut g = Group::default();
        for v in [1, 5, 9, 300, 4000] {
            g.chars.add(v);
        }
        sources.insert("a<b".to_string(), g);
        let svg = histograms_svg(&sources);
        assert!(svg.contains("a&lt;b: characters per row"));
        assert_eq!(svg.matches("<rect x=").count(), 5);
    }
}
