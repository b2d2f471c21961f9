//! `filter`: rows kept or dropped by their length in tokens, their turns, `check`'s issue
//! codes and a `--where` expression; every dropped row in the rejects file with each
//! condition it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sft_dataset::check::TokenCheck;
use sft_formats::{validate_row, IssueCode, RowKind};
use sft_io::write::DatasetWriter;

use crate::expr::{field, Expr};
use crate::pass::{each_row, record, Input, OpError, Rejects};

/// Codes `check` finds only over the whole dataset or a file, which a row filter cannot
/// see, with what to use instead.
pub fn not_a_row_code(code: IssueCode) -> Option<&'static str> {
    use IssueCode::*;
    Some(match code {
        DuplicateRow => "duplicates are found across rows: use `sft-data dedupe`",
        EvalOverlap => "overlap with evaluation data is found across datasets: use `sft-data split`, which keeps related rows on one side",
        LongOutlier => "outliers are relative to the whole dataset: use --max-tokens or --where 'chars < N'",
        TooFewExamples | BelowRecommendedSize | MixedFormats | FormatMismatch => "it is a finding about the whole dataset, not a row",
        EmptyFile | LfsPointer | BinaryFile | UnreadableFile => "it is about a file; a file that cannot be read stops the filter",
        InvalidJson | InvalidUtf8 => "rows that do not parse are always dropped (with this code in the rejects file)",
        TemplateError | TemplateDropsToolCalls | RenderAwaitsAssistant | PromptNotPrefix | DoubleBos | NoChatTemplate => "it needs a chat template render: run `sft-data check --chat-template` and filter on its report",
        _ => return None,
    })
}

/// Parses `--drop-codes a,b`: check's row-level codes.
pub fn parse_codes(text: &str) -> Result<Vec<IssueCode>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let code = IssueCode::from_code(name).ok_or_else(|| {
            let known: Vec<&str> = IssueCode::ALL
                .iter()
                .filter(|c| not_a_row_code(**c).is_none())
                .map(|c| c.as_str())
                .collect();
            format!(
                "--drop-codes: unknown code `{name}`\n  hint: the codes of `check` that a row can have: {}",
                known.join(", ")
            )
        })?;
        if let Some(why) = not_a_row_code(code) {
            return Err(format!(
                "--drop-codes: `{name}` cannot be filtered row by row: {why}"
            ));
        }
        out.push(code);
    }
    if out.is_empty() {
        return Err("--drop-codes needs at least one code, such as repetitive_content".into());
    }
    Ok(out)
}

pub struct FilterJob {
    pub input: Input,
    pub output: PathBuf,
    pub rejects: Option<PathBuf>,
    pub tokens: Option<TokenCheck>,
    pub min_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    pub min_turns: Option<u64>,
    pub max_turns: Option<u64>,
    pub drop_codes: Vec<IssueCode>,
    pub condition: Option<(String, Expr)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterSummary {
    pub rows_in: u64,
    pub written: u64,
    pub dropped: u64,
    /// Rows dropped per reason code (a row failing two conditions counts under both).
    pub reasons: BTreeMap<String, u64>,
    pub output: PathBuf,
    pub rejects_file: Option<PathBuf>,
    pub seconds: f64,
}

/// Why a row is dropped: (code, reason) for each condition it fails.
fn judge(job: &FilterJob, row: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let checked = validate_row(row);
    let conversational = matches!(checked.kind, RowKind::Format(f) if f.is_conversational());
    let turns = checked.turns as u64;
    if conversational {
        if let Some(max) = job.max_turns.filter(|&m| turns > m) {
            out.push((
                "max_turns".into(),
                format!("{turns} turns, more than --max-turns {max}"),
            ));
        }
        if let Some(min) = job.min_turns.filter(|&m| turns < m) {
            out.push((
                "min_turns".into(),
                format!("{turns} turns, fewer than --min-turns {min}"),
            ));
        }
    }
    for issue in &checked.issues {
        if job.drop_codes.contains(&issue.code)
            && !out.iter().any(|(c, _)| c == issue.code.as_str())
        {
            let at = if issue.path.is_empty() {
                String::new()
            } else {
                format!(" at {}", issue.path)
            };
            out.push((
                issue.code.as_str().into(),
                format!("{}{at}: {}", issue.code, issue.message),
            ));
        }
    }
    let mut tokens = None;
    if let Some(t) = &job.tokens {
        match sft_tokenize::tokenize_row(&t.tokenizer, t.template.as_ref(), row, &t.options) {
            Ok(example) => tokens = Some(example.full_length as u64),
            Err(e) => out.push((
                "tokenize_error".into(),
                format!("cannot be tokenized: {}", e.reason),
            )),
        }
    }
    if let Some(n) = tokens {
        if let Some(max) = job.max_tokens.filter(|&m| n > m) {
            out.push((
                "max_tokens".into(),
                format!("{n} tokens, more than --max-tokens {max}"),
            ));
        }
        if let Some(min) = job.min_tokens.filter(|&m| n < m) {
            out.push((
                "min_tokens".into(),
                format!("{n} tokens, fewer than --min-tokens {min}"),
            ));
        }
    }
    if let Some((text, expr)) = &job.condition {
        let lookup = |name: &str| -> Option<Value> {
            match name {
                "chars" => Some(Value::from(checked.chars as u64)),
                "turns" => conversational.then(|| Value::from(turns)),
                "tokens" => tokens.map(Value::from),
                "format" => Some(Value::String(checked.kind.as_str().to_string())),
                _ => field(row, name),
            }
        };
        if !expr.eval(&lookup) {
            out.push((
                "where".into(),
                format!("--where `{text}` is false for the row"),
            ));
        }
    }
    out
}

pub fn filter(job: &FilterJob) -> Result<FilterSummary, OpError> {
    let started = Instant::now();
    let rejects_path = job
        .rejects
        .clone()
        .unwrap_or_else(|| crate::pass::default_rejects_path(&job.output));
    let mut writer = DatasetWriter::create(&job.output)?;
    let mut rejects = Rejects::new(&rejects_path, job.rejects.is_some())?;
    let mut written = 0u64;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let rows_in = each_row(
        &job.input,
        |_, value| {
            let why = judge(job, &value);
            (value, why)
        },
        |at, result| {
            let (value, why) = match result {
                Ok(v) => v,
                Err(bad) => {
                    *reasons.entry(bad.code.clone()).or_default() += 1;
                    return rejects.bad_row(&at, *bad);
                }
            };
            if why.is_empty() {
                written += 1;
                return Ok(writer.write(&value)?);
            }
            for (code, _) in &why {
                *reasons.entry(code.clone()).or_default() += 1;
            }
            let codes: Vec<&str> = why.iter().map(|(c, _)| c.as_str()).collect();
            let text: Vec<&str> = why.iter().map(|(_, r)| r.as_str()).collect();
            let mut rec = record(value);
            rec.insert("codes".into(), serde_json::json!(codes));
            rejects.add(&at.location(), codes[0], &text.join("; "), rec)
        },
    )?;
    let written_rows = writer.finish()?;
    debug_assert_eq!(written_rows, written);
    Ok(FilterSummary {
        rows_in,
        written: written_rows,
        dropped: rejects.count,
        reasons,
        output: job.output.clone(),
        rejects_file: rejects.finish()?,
        seconds: started.elapsed().as_secs_f64(),
    })
}
