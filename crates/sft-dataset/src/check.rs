//! `check`: every problem of a dataset, with its location, and what the data looks like.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::{BufWriter, Write};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sft_formats::{validate_row, Format, IssueCode, RowIssue, RowKind, Severity, Shape};
use sft_io::{ByteCounter, DataFile, ReadOptions};
use sft_tokenize::TokenizeErrorCode;

use crate::hash::content_hash;
use crate::keys::KeyTable;
use crate::location::Location;
use crate::pipeline::{self, parse_row, row_location, FileEvent, ParseProblem};
use crate::render::template_issues;
use crate::source::{file_source_name, source_field};
use crate::stats::{LengthCounts, LengthStats, SourceStats, SourceTally, Stats};
use crate::text::{plural, thousands};

/// Below this many examples SFT usually memorises rather than learns.
pub const MIN_EXAMPLES: u64 = 1_000;
/// The size the course recommends for robust SFT.
pub const RECOMMENDED_EXAMPLES: u64 = 10_000;
/// How many example locations the summary keeps per code.
const SAMPLES_PER_CODE: usize = 5;
/// How many of the longest rows are kept with their locations, to report outliers.
const LONGEST_KEPT: usize = 100;
/// Sources counted apart; rows of any further source are counted under [`OTHER_SOURCES`].
pub const SOURCES_TRACKED: usize = 1000;
/// The name the rows of sources past [`SOURCES_TRACKED`] are counted under.
pub const OTHER_SOURCES: &str = "(other sources)";

/// A tokenizer to measure every row with: token statistics as training will see them.
pub struct TokenCheck {
    pub tokenizer: sft_tokenize::SftTokenizer,
    /// The chat template for conversational rows (the tokenizer folder's, or --chat-template).
    pub template: Option<sft_template::ChatTemplate>,
    /// The length training will cut at (and pack to, in the packing preview).
    pub max_length: usize,
    pub options: sft_tokenize::TokenizeOptions,
}

impl TokenCheck {
    /// The tokenizer of `path` (a model folder or a tokenizer.json) and the template to
    /// tokenize conversational rows with: the flags' template when they name one, else the
    /// tokenizer folder's own.
    pub fn load(
        path: &std::path::Path,
        template: &sft_tokenize::TemplateFlags,
        max_length: usize,
    ) -> Result<TokenCheck, String> {
        if max_length == 0 {
            return Err("--max-length must be at least 1".into());
        }
        let tokenizer = sft_tokenize::SftTokenizer::from_path(path).map_err(|e| e.to_string())?;
        let (template, render) = match template.load(Some(&tokenizer))? {
            Some((t, o)) => (Some(t), o),
            None => (None, sft_template::RenderOptions::default()),
        };
        Ok(TokenCheck {
            tokenizer,
            template,
            max_length,
            options: sft_tokenize::TokenizeOptions {
                max_length: None,
                render,
                ..Default::default()
            },
        })
    }
}

/// A chat template to render every conversational row with.
pub struct TemplateCheck {
    pub template: sft_template::ChatTemplate,
    /// Template kwargs and tools that apply to every row (rows may add their own).
    pub options: sft_template::RenderOptions,
}

#[derive(Default)]
pub struct CheckOptions {
    /// The format every row must have; `None` detects it per row.
    pub format: Option<Format>,
    /// Evaluation data, to find rows that are in both.
    pub eval: Vec<DataFile>,
    pub read: ReadOptions,
    /// Keep every issue (in a temporary file) for the JSON report.
    pub keep_all_issues: bool,
    /// With `keep_all_issues`: keep at most this many issues of each code (the counts stay
    /// whole), so millions of one issue (duplicate rows) do not make a huge report.
    /// `None` keeps every issue.
    pub issues_per_code: Option<u64>,
    /// Counts bytes read, for a progress bar.
    pub progress: ByteCounter,
    /// Render conversational rows with this template and report what it rejects.
    pub template: Option<TemplateCheck>,
    /// Tokenize every row: token statistics, truncation, a packing preview.
    pub tokens: Option<TokenCheck>,
    /// Past this many distinct rows, duplicates are found in a key table spilled to disk
    /// (`keys`) instead of a hash map, so memory stays flat; `None`: [`FLAT_MEMORY_ROWS`].
    pub flat_memory_rows: Option<u64>,
}

/// The distinct rows `check` keeps in memory to find duplicates (about 45 bytes each, some
/// 90 MB) before it spills them to a key table and finds the rest with a group-by.
pub const FLAT_MEMORY_ROWS: u64 = 2_000_000;

/// One problem, located.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    #[serde(serialize_with = "code_str")]
    pub code: IssueCode,
    #[serde(serialize_with = "severity_str")]
    pub severity: Severity,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// JSON path of the field in the row, such as `messages[3].role`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub message: String,
    pub hint: String,
    /// For findings that stand for many rows (mixed formats, shapes to convert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

fn code_str<S: serde::Serializer>(code: &IssueCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

fn severity_str<S: serde::Serializer>(sev: &Severity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(sev.as_str())
}

impl Issue {
    fn from_row(issue: RowIssue, location: Location) -> Issue {
        let hint = issue.hint().to_string();
        Issue {
            code: issue.code,
            severity: issue.code.severity(),
            location: Some(location),
            path: issue.path,
            message: issue.message,
            hint,
            count: None,
        }
    }

    fn new(code: IssueCode, location: Option<Location>, message: String) -> Issue {
        Issue {
            code,
            severity: code.severity(),
            location,
            path: String::new(),
            message,
            hint: code.default_hint().to_string(),
            count: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: String,
    /// What the file holds, as sniffed: jsonl, json, parquet, arrow, text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub bytes: u64,
    pub rows: u64,
    /// Set when the file, or its end, could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows of the file that were not read, when the file says how many it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_not_read: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub files: Vec<String>,
    pub rows: u64,
    /// Training rows whose content is also in the evaluation data.
    pub overlapping_rows: u64,
}

/// Token statistics of a check run with a tokenizer.
#[derive(Debug, Clone, Serialize)]
pub struct TokenStats {
    pub tokenizer: String,
    pub max_length: usize,
    /// Rows tokenized (rows with errors are not).
    pub rows: u64,
    /// Tokens before truncation.
    pub tokens: u64,
    /// Tokens the loss is computed on, after truncation.
    pub trained_tokens: u64,
    /// Rows longer than max_length.
    pub truncated_rows: u64,
    pub lengths: Option<LengthStats>,
    /// Packing preview (best-fit decreasing into rows of max_length).
    pub packed_rows: u64,
    pub packed_lower_bound: u64,
    pub packing_efficiency: f64,
}

/// The result of a check.
#[derive(Debug)]
pub struct CheckReport {
    pub files: Vec<FileSummary>,
    pub rows: u64,
    /// Rows per detected kind: the four formats, the convertible shapes, `unrecognized`,
    /// and `unparsable` for rows that are not JSON.
    pub kinds: BTreeMap<String, u64>,
    pub counts: BTreeMap<IssueCode, u64>,
    /// The first few issues of each code.
    pub samples: BTreeMap<IssueCode, Vec<Issue>>,
    pub errors: u64,
    pub warnings: u64,
    pub stats: Stats,
    /// Per source (the rows' `source` field, or their file's name), most rows first.
    pub sources: Vec<SourceStats>,
    pub eval: Option<EvalSummary>,
    /// Bytes of the files on disk (compressed, for compressed files and Parquet).
    pub bytes: u64,
    /// Bytes of the rows as data (their JSON text, one line each): what throughput is of.
    pub data_bytes: u64,
    pub seconds: f64,
    /// The chat template rows were rendered with, if any.
    pub template: Option<String>,
    /// With a tokenizer: token statistics.
    pub tokens: Option<TokenStats>,
    /// Every issue as JSON lines, when asked for.
    /// An unnamed temporary file: nothing is left behind, however the process ends.
    all_issues: Option<BufWriter<std::fs::File>>,
    /// The cap on issues kept per code ([`CheckOptions::issues_per_code`]).
    pub issues_per_code: Option<u64>,
    /// Issues counted but left out of the report's list by that cap, per code.
    pub issues_left_out: BTreeMap<IssueCode, u64>,
}

impl CheckReport {
    /// Whether a batch job should go on: no errors, and no warnings either when `strict`.
    pub fn passed(&self, strict: bool) -> bool {
        self.errors == 0 && (!strict || self.warnings == 0)
    }

    /// The dataset's format when all usable rows share one.
    pub fn format(&self) -> Option<Format> {
        let present: Vec<Format> = Format::ALL
            .into_iter()
            .filter(|f| self.kinds.get(f.as_str()).copied().unwrap_or(0) > 0)
            .collect();
        match present.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    pub(crate) fn take_all_issues(&mut self) -> Option<BufWriter<std::fs::File>> {
        self.all_issues.take()
    }
}

/// The verdict of the parallel stage on one row.
struct RowOutcome {
    parsed: Result<Parsed, ParseProblem>,
    /// The row's size as data (its JSON text), whatever the file's compression.
    bytes: u64,
}

struct Parsed {
    kind: RowKind,
    issues: Vec<RowIssue>,
    chars: usize,
    turns: usize,
    hash: u64,
    /// (tokens before truncation, trained tokens after it), with a tokenizer.
    tokens: Option<(u32, u32)>,
    /// The row is conversational but there is no chat template to tokenize it with.
    needs_template: bool,
    /// For a row in a shape `convert` takes: whether the suggested conversion converts it,
    /// or why not.
    converts: Option<Result<(), String>>,
    /// The row's `source` field, if it has one.
    source: Option<String>,
}

fn examine(
    value: &Value,
    template: Option<(&TemplateCheck, Option<&str>)>,
    tokens: Option<&TokenCheck>,
) -> Parsed {
    let mut checked = validate_row(value);
    let clean = !checked
        .issues
        .iter()
        .any(|i| i.severity() == Severity::Error);
    let (mut counted, mut needs_template) = (None, false);
    // Without --chat-template, the tokenizer's template is what training renders with.
    let tool_loss = match (tokens, clean, template.is_none()) {
        (Some(t), true, true) => t
            .template
            .as_ref()
            .and_then(|tt| crate::render::tool_call_loss(tt, &t.options.render, value)),
        _ => None,
    };
    let clean = clean && tool_loss.is_none();
    checked.issues.extend(tool_loss);
    if let (Some(t), true) = (tokens, clean) {
        match sft_tokenize::tokenize_row(&t.tokenizer, t.template.as_ref(), value, &t.options) {
            Ok(example) => {
                if let Some(bos) = &t.tokenizer.bos {
                    if example.input_ids.len() >= 2
                        && example.input_ids[0] == bos.id
                        && example.input_ids[1] == bos.id
                    {
                        checked.issues.push(RowIssue::new(
                            IssueCode::DoubleBos,
                            "",
                            format!("the example starts with {} twice", bos.text),
                        ));
                    }
                }
                let trained = example
                    .mask
                    .iter()
                    .take(t.max_length)
                    .filter(|&&m| m == 1)
                    .count();
                counted = Some((
                    example.full_length.min(u32::MAX as usize) as u32,
                    trained as u32,
                ));
            }
            Err(e) if e.code == TokenizeErrorCode::NoChatTemplate => needs_template = true,
            // Without --chat-template the tokenizer's template rejects rows here.
            Err(e) if e.code == TokenizeErrorCode::TemplateError && template.is_none() => {
                checked.issues.push(RowIssue::new(
                    IssueCode::TemplateError,
                    "",
                    format!(
                        "the tokenizer's chat template rejects the row: {}",
                        e.reason
                    ),
                ))
            }
            Err(_) => {}
        }
    }
    if let Some((t, generation_prompt)) = template {
        // A row the template cannot render is reported once its own errors are fixed.
        if !checked
            .issues
            .iter()
            .any(|i| i.severity() == Severity::Error)
        {
            checked.issues.extend(template_issues(
                &t.template,
                &t.options,
                generation_prompt,
                value,
            ));
        }
    }
    // A conversion is suggested only when it converts the rows: try it on each of them.
    let converts = match checked.kind {
        RowKind::Convertible(shape) => {
            let options = sft_formats::convert::ConvertOptions {
                from: shape_source(shape),
                to: Format::Messages,
                system: None,
                column_map: Vec::new(),
            };
            Some(
                sft_formats::convert::convert_row(value.clone(), &options)
                    .map(|_| ())
                    .map_err(|r| format!("{}: {}", r.code, r.reason)),
            )
        }
        _ => None,
    };
    Parsed {
        converts,
        kind: checked.kind,
        hash: content_hash(value, checked.kind),
        issues: checked.issues,
        chars: checked.chars,
        turns: checked.turns,
        tokens: counted,
        needs_template,
        source: source_field(value).map(str::to_string),
    }
}

/// The `--from` of `convert` for a shape.
fn shape_source(shape: Shape) -> sft_formats::convert::Source {
    use sft_formats::convert::Source;
    match shape {
        Shape::Alpaca => Source::Alpaca,
        Shape::ShareGpt => Source::ShareGpt,
        Shape::OpenAiLegacy => Source::OpenAi,
        Shape::Preference => Source::Preference,
        Shape::Kto => Source::Kto,
    }
}

/// The shapes `convert` takes, in the order the summary lists them.
const SHAPES: [Shape; 5] = [
    Shape::Alpaca,
    Shape::ShareGpt,
    Shape::OpenAiLegacy,
    Shape::Preference,
    Shape::Kto,
];

/// How the rows of a shape fare in the conversion `check` would suggest.
#[derive(Default)]
struct Convertibility {
    converts: u64,
    fails: u64,
    /// The first row that does not convert, and why.
    first_failure: Option<(Location, String)>,
}

/// Where a row's content was first seen, packed into 8 bytes because one is kept per
/// distinct row: the file index (20 bits), whether the number is a line (1 bit), and the
/// line or row number (43 bits).
#[derive(Clone, Copy)]
struct SeenAt(u64);

impl SeenAt {
    const NUMBER_BITS: u32 = 43;

    fn of(file: usize, location: &Location) -> SeenAt {
        let number = location.line.or(location.row).unwrap_or(0);
        let is_line = location.line.is_some() as u64;
        let file = (file as u64).min((1 << 20) - 1);
        SeenAt(
            file << (Self::NUMBER_BITS + 1)
                | is_line << Self::NUMBER_BITS
                | number.min((1 << Self::NUMBER_BITS) - 1),
        )
    }

    fn location(&self, files: &[DataFile]) -> Location {
        let file = (self.0 >> (Self::NUMBER_BITS + 1)) as usize;
        let is_line = (self.0 >> Self::NUMBER_BITS) & 1 == 1;
        let number = self.0 & ((1 << Self::NUMBER_BITS) - 1);
        Location {
            file: files[file.min(files.len() - 1)].display.clone(),
            line: is_line.then_some(number),
            row: (!is_line).then_some(number),
        }
    }
}

struct LongRow {
    chars: u64,
    seq: u64,
    location: Location,
}

impl PartialEq for LongRow {
    fn eq(&self, other: &Self) -> bool {
        (self.chars, self.seq) == (other.chars, other.seq)
    }
}
impl Eq for LongRow {}
impl PartialOrd for LongRow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LongRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Longer first; among equals, the earlier row.
        (self.chars, Reverse(self.seq)).cmp(&(other.chars, Reverse(other.seq)))
    }
}

struct Checker<'a> {
    options: &'a CheckOptions,
    files: &'a [DataFile],
    report: CheckReport,
    first_of_kind: HashMap<RowKind, Location>,
    /// Which files hold rows of each kind, to name them in hints.
    files_of_kind: HashMap<RowKind, std::collections::BTreeSet<usize>>,
    seen: HashMap<u64, SeenAt>,
    /// Past `flat_memory_rows` distinct rows: every row's hash and location, on disk.
    spill: Option<KeyTable>,
    eval_seen: HashMap<u64, Location>,
    /// Characters and turns per row of the whole dataset: its sources' merged at the end.
    lengths: LengthCounts,
    turns: LengthCounts,
    longest: BinaryHeap<Reverse<LongRow>>,
    duplicates: u64,
    token_lengths: Vec<u32>,
    trained_tokens: u64,
    needs_template: u64,
    convertibility: HashMap<Shape, Convertibility>,
    /// Each file's name as a source, for rows without a `source` field.
    file_sources: Vec<String>,
    sources: HashMap<String, SourceTally>,
}

impl<'a> Checker<'a> {
    fn issue(&mut self, issue: Issue) {
        let count = self.report.counts.entry(issue.code).or_default();
        *count += 1;
        let over_cap = self.report.issues_per_code.is_some_and(|cap| *count > cap);
        match issue.severity {
            Severity::Error => self.report.errors += 1,
            Severity::Warning => self.report.warnings += 1,
        }
        if over_cap && self.report.all_issues.is_some() {
            *self.report.issues_left_out.entry(issue.code).or_default() += 1;
        } else if let Some(out) = self.report.all_issues.as_mut() {
            // A failed write to the temporary file only loses the report's list; the
            // summary and counts stay right, and the report says the list is incomplete.
            if serde_json::to_writer(&mut *out, &issue).is_ok() {
                let _ = out.write_all(b"\n");
            }
        }
        let samples = self.report.samples.entry(issue.code).or_default();
        if samples.len() < SAMPLES_PER_CODE {
            samples.push(issue);
        }
    }

    fn file_failed(&mut self, file: usize, error: sft_io::FileError) {
        let code = pipeline::file_error_code(error.kind);
        let summary = &mut self.report.files[file];
        let message = if pipeline::loses_rows(&error) {
            summary.rows_not_read = error.rows_not_read;
            format!(
                "{} ({})",
                error.message,
                pipeline::not_read_note(summary.rows, &error)
            )
        } else {
            error.message.clone()
        };
        summary.error = Some(message.clone());
        let location = Location {
            file: summary.path.clone(),
            line: error.line,
            row: None,
        };
        self.issue(Issue::new(code, Some(location), message));
    }

    fn row(&mut self, file: usize, raw: &sft_io::RawRow, outcome: RowOutcome) {
        self.report.rows += 1;
        self.report.data_bytes += outcome.bytes;
        self.report.files[file].rows += 1;
        let location = row_location(&self.files[file], raw);
        let parsed = match outcome.parsed {
            Ok(p) => p,
            Err(problem) => {
                let tally = self.source_tally(file, None);
                tally.rows += 1;
                tally.rows_with_errors += 1;
                *self.report.kinds.entry("unparsable".into()).or_default() += 1;
                let code = if problem.invalid_utf8 {
                    IssueCode::InvalidUtf8
                } else {
                    IssueCode::InvalidJson
                };
                let mut at = location;
                at.line = problem.line.or(at.line);
                let mut issue = Issue::new(code, Some(at), problem.message);
                if let Some(hint) = problem.hint {
                    issue.hint = hint.to_string();
                }
                self.issue(issue);
                return;
            }
        };
        *self
            .report
            .kinds
            .entry(parsed.kind.as_str().into())
            .or_default() += 1;
        self.first_of_kind
            .entry(parsed.kind)
            .or_insert_with(|| location.clone());
        self.files_of_kind
            .entry(parsed.kind)
            .or_default()
            .insert(file);
        if let (Some(expected), RowKind::Format(_) | RowKind::Convertible(_)) =
            (self.options.format, parsed.kind)
        {
            if parsed.kind != RowKind::Format(expected) {
                let mut issue = Issue::new(
                    IssueCode::FormatMismatch,
                    Some(location.clone()),
                    format!("the row is {}, not {expected}", parsed.kind),
                );
                issue.hint = format!(
                    "--format {expected} expects the keys {}",
                    expected.keys().join(" + ")
                );
                self.issue(issue);
            }
        }
        let has_error = parsed
            .issues
            .iter()
            .any(|i| i.severity() == Severity::Error);
        let is_conversation = matches!(parsed.kind, RowKind::Format(f) if f.is_conversational())
            || parsed.kind == RowKind::Convertible(Shape::ShareGpt);
        let tally = self.source_tally(file, parsed.source.as_deref());
        tally.rows += 1;
        tally.rows_with_errors += has_error as u64;
        tally.chars.add(parsed.chars as u64);
        if is_conversation {
            tally.turns.add(parsed.turns as u64);
        }
        if let Some((length, trained)) = parsed.tokens {
            tally.tokens.add(length as u64);
            tally.trained_tokens += trained as u64;
        }
        for row_issue in parsed.issues {
            self.issue(Issue::from_row(row_issue, location.clone()));
        }
        if let Some((length, trained)) = parsed.tokens {
            self.token_lengths.push(length);
            self.trained_tokens += trained as u64;
        }
        if parsed.needs_template {
            self.needs_template += 1;
        }
        if let (RowKind::Convertible(shape), Some(converts)) = (parsed.kind, &parsed.converts) {
            let c = self.convertibility.entry(shape).or_default();
            match converts {
                Ok(()) => c.converts += 1,
                Err(reason) => {
                    c.fails += 1;
                    if c.first_failure.is_none() {
                        c.first_failure = Some((location.clone(), reason.clone()));
                    }
                }
            }
        }
        let chars = parsed.chars as u64;
        let seq = self.report.rows;
        if self.longest.len() < LONGEST_KEPT
            || self
                .longest
                .peek()
                .is_some_and(|Reverse(min)| chars > min.chars)
        {
            self.longest.push(Reverse(LongRow {
                chars,
                seq,
                location: location.clone(),
            }));
            if self.longest.len() > LONGEST_KEPT {
                self.longest.pop();
            }
        }
        if parsed.kind == RowKind::Unrecognized {
            return;
        }
        if let Some(first) = self.eval_seen.get(&parsed.hash) {
            let message = format!("the same example is in the evaluation data at {first}");
            self.issue(Issue::new(
                IssueCode::EvalOverlap,
                Some(location.clone()),
                message,
            ));
            if let Some(eval) = self.report.eval.as_mut() {
                eval.overlapping_rows += 1;
            }
        }
        if let Some(spill) = self.spill.as_mut() {
            // Rows are numbered from 1 here: 0 stands for the rows spilled from the map.
            let at = SeenAt::of(file, &location).0;
            if let Err(e) = spill.push(self.report.rows, &[Some(parsed.hash)], at) {
                self.spill_failed(e);
            }
            return;
        }
        match self.seen.get(&parsed.hash) {
            Some(first) => {
                self.duplicates += 1;
                let first = first.location(self.files);
                let message = format!("the same example as {first}");
                self.issue(Issue::new(IssueCode::DuplicateRow, Some(location), message));
            }
            None => {
                self.seen.insert(parsed.hash, SeenAt::of(file, &location));
                let limit = self.options.flat_memory_rows.unwrap_or(FLAT_MEMORY_ROWS);
                if self.seen.len() as u64 >= limit {
                    self.start_spill();
                }
            }
        }
    }

    /// The tally of a row's source: its `source` field, else its file's name; past
    /// [`SOURCES_TRACKED`] sources, the shared [`OTHER_SOURCES`] one.
    fn source_tally(&mut self, file: usize, field: Option<&str>) -> &mut SourceTally {
        let name = field.unwrap_or(self.file_sources[file].as_str());
        let name = if self.sources.contains_key(name) || self.sources.len() < SOURCES_TRACKED {
            name
        } else {
            OTHER_SOURCES
        };
        // A name is copied once, when its source is first seen, not for every row.
        if !self.sources.contains_key(name) {
            self.sources
                .insert(name.to_string(), SourceTally::default());
        }
        self.sources.get_mut(name).expect("inserted above")
    }

    /// Moves the distinct rows seen so far to a key table on disk; from now on every row
    /// goes there, and duplicates are found by a group-by at the end.
    fn start_spill(&mut self) {
        let mut table = match KeyTable::create(&["hash"], None) {
            Ok(t) => t,
            // No room for a temporary file: go on in memory.
            Err(_) => return,
        };
        for (hash, at) in self.seen.drain() {
            if table.push(0, &[Some(hash)], at.0).is_err() {
                return;
            }
        }
        self.seen = HashMap::new();
        self.spill = Some(table);
    }

    fn spill_failed(&mut self, error: String) {
        self.spill = None;
        self.issue(Issue::new(
            IssueCode::UnreadableFile,
            None,
            format!("duplicate detection stopped: {error}"),
        ));
    }

    /// The duplicates among the rows that went to the key table, in row order.
    fn spilled_duplicates(&mut self) {
        let Some(table) = self.spill.take() else {
            return;
        };
        let repeats = table.finish().and_then(|t| t.repeats("hash"));
        match repeats {
            Ok(repeats) => {
                for r in repeats {
                    self.duplicates += 1;
                    let location = SeenAt(r.payload).location(self.files);
                    let first = SeenAt(r.first_payload).location(self.files);
                    let message = format!("the same example as {first}");
                    self.issue(Issue::new(IssueCode::DuplicateRow, Some(location), message));
                }
            }
            Err(e) => self.spill_failed(e),
        }
    }

    fn finish(mut self) -> CheckReport {
        // The dataset's lengths are its sources' together.
        for tally in self.sources.values() {
            self.lengths.merge(&tally.chars);
            self.turns.merge(&tally.turns);
        }
        self.spilled_duplicates();
        self.dataset_findings();
        self.token_findings();
        let mut stats = Stats {
            chars: self.lengths.stats(),
            turns: self.turns.stats(),
            duplicate_rows: self.duplicates,
            long_outliers: 0,
            outlier_threshold_chars: None,
        };
        self.outliers(&mut stats);
        self.report.stats = stats;
        let mut sources: Vec<SourceStats> = self
            .sources
            .iter()
            .map(|(name, tally)| tally.stats(name.clone()))
            .collect();
        sources.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.source.cmp(&b.source)));
        self.report.sources = sources;
        if let Some(out) = self.report.all_issues.as_mut() {
            let _ = out.flush();
        }
        self.report
    }

    fn token_findings(&mut self) {
        let Some(t) = self.options.tokens.as_ref() else {
            return;
        };
        if self.needs_template > 0 {
            self.issue(Issue::new(
                IssueCode::NoChatTemplate,
                None,
                format!(
                    "{} conversational rows, but the tokenizer {} has no chat template and none was given",
                    thousands(self.needs_template),
                    t.tokenizer.path.display()
                ),
            ));
        }
        let capacity = t.max_length;
        let truncated = self
            .token_lengths
            .iter()
            .filter(|&&l| l as usize > capacity)
            .count() as u64;
        let total: u64 = self.token_lengths.iter().map(|&l| l as u64).sum();
        let kept: Vec<usize> = self
            .token_lengths
            .iter()
            .map(|&l| (l as usize).min(capacity))
            .collect();
        let bins = sft_tokenize::pack(&kept, capacity, sft_tokenize::PackingStrategy::Bfd);
        let packing = sft_tokenize::packing_stats(&bins, capacity);
        self.report.tokens = Some(TokenStats {
            tokenizer: t.tokenizer.path.display().to_string(),
            max_length: capacity,
            rows: self.token_lengths.len() as u64,
            tokens: total,
            trained_tokens: self.trained_tokens,
            truncated_rows: truncated,
            lengths: LengthStats::of(&mut self.token_lengths),
            packed_rows: packing.rows,
            packed_lower_bound: packing.lower_bound_rows,
            packing_efficiency: packing.efficiency,
        });
    }

    fn dataset_findings(&mut self) {
        // Rows in a shape that converts count as examples: the size advice is about the data.
        let usable: u64 = Format::ALL
            .iter()
            .map(|f| f.as_str())
            .chain(SHAPES.map(Shape::as_str))
            .map(|k| self.report.kinds.get(k).copied().unwrap_or(0))
            .sum();
        if self.options.format.is_none() {
            let mut formats: Vec<(Format, u64)> = Format::ALL
                .into_iter()
                .map(|f| (f, self.report.kinds.get(f.as_str()).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect();
            if formats.len() > 1 {
                formats.sort_by_key(|(_, n)| Reverse(*n));
                let (major, major_rows) = formats[0];
                for &(format, n) in &formats[1..] {
                    let first = self.first_of_kind.get(&RowKind::Format(format)).cloned();
                    let mut issue = Issue::new(
                        IssueCode::MixedFormats,
                        first,
                        format!(
                            "{} {} {format} while most ({}) are {major}; this is the first of them",
                            thousands(n),
                            plural(n, "row is", "rows are"),
                            thousands(major_rows)
                        ),
                    );
                    issue.count = Some(n);
                    self.issue(issue);
                }
            }
        }
        for shape in SHAPES {
            let n = self.report.kinds.get(shape.as_str()).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let first = self
                .first_of_kind
                .get(&RowKind::Convertible(shape))
                .cloned();
            let inputs: Vec<&str> = self.files_of_kind[&RowKind::Convertible(shape)]
                .iter()
                .map(|&i| self.files[i].display.as_str())
                .collect();
            let mut issue = Issue::new(
                IssueCode::NeedsConversion,
                first,
                format!(
                    "{} {} in the {} shape, which is not one of the four SFT formats; this is the first of them",
                    thousands(n),
                    plural(n, "row is", "rows are"),
                    shape_name(shape)
                ),
            );
            issue.count = Some(n);
            let tried = self.convertibility.get(&shape);
            let (converts, fails) = tried.map_or((n, 0), |c| (c.converts, c.fails));
            let failure = tried
                .and_then(|c| c.first_failure.as_ref())
                .map(|(at, why)| format!("{at}: {why}"))
                .unwrap_or_default();
            let what = match shape {
                Shape::Preference => {
                    "; the chosen reply becomes the SFT target, the rejected one is dropped"
                }
                Shape::Kto => "; rows labelled desirable are kept, the others rejected",
                _ => "",
            };
            issue.hint = if converts == 0 {
                // A command that would reject every row is no advice: say what is missing.
                format!(
                    "`sft-data convert --from {}` would reject all of them ({failure}); they look {} only by some of their keys: map their columns with --from columns --map, or fix the rows",
                    shape.as_str(),
                    shape_name(shape)
                )
            } else if fails > 0 {
                format!(
                    "convert them: sft-data convert {} --from {} --to messages -o converted.jsonl ({} of them would be rejected, the first {failure}){what}",
                    inputs.join(" "),
                    shape.as_str(),
                    thousands(fails)
                )
            } else {
                format!(
                    "convert them: sft-data convert {} --from {} --to messages -o converted.jsonl{what}",
                    inputs.join(" "),
                    shape.as_str()
                )
            };
            self.issue(issue);
        }
        if usable > 0 {
            if usable < MIN_EXAMPLES {
                self.issue(Issue::new(
                    IssueCode::TooFewExamples,
                    None,
                    format!(
                        "only {}",
                        crate::text::counted(usable, "example", "examples")
                    ),
                ));
            } else if usable < RECOMMENDED_EXAMPLES {
                self.issue(Issue::new(
                    IssueCode::BelowRecommendedSize,
                    None,
                    format!(
                        "{} examples, fewer than the recommended {}",
                        thousands(usable),
                        thousands(RECOMMENDED_EXAMPLES)
                    ),
                ));
            }
        }
    }

    /// Rows far longer than the rest: beyond Q3 + 3 IQR of the character counts (Tukey's
    /// far-out fence) and at least 4 times the median.
    fn outliers(&mut self, stats: &mut Stats) {
        let Some(chars) = stats.chars.as_ref() else {
            return;
        };
        if chars.count < 20 {
            return;
        }
        let iqr = chars.p75.saturating_sub(chars.p25);
        let threshold = (chars.p75 + 3 * iqr).max(4 * chars.p50).max(1);
        stats.outlier_threshold_chars = Some(threshold);
        let total_above = self.lengths_above(threshold);
        stats.long_outliers = total_above;
        let mut longest: Vec<LongRow> = std::mem::take(&mut self.longest)
            .into_iter()
            .map(|Reverse(r)| r)
            .filter(|r| r.chars > threshold)
            .collect();
        longest.sort_by_key(|r| r.seq);
        let shown = longest.len() as u64;
        for row in longest {
            let message = format!(
                "{} characters, against a median of {} (outliers are above {})",
                thousands(row.chars),
                thousands(chars.p50),
                thousands(threshold)
            );
            self.issue(Issue::new(
                IssueCode::LongOutlier,
                Some(row.location),
                message,
            ));
        }
        if total_above > shown {
            let mut issue = Issue::new(
                IssueCode::LongOutlier,
                None,
                format!(
                    "{} more rows are longer than {threshold} characters (only the {shown} longest are listed)",
                    total_above - shown
                ),
            );
            issue.count = Some(total_above - shown);
            self.issue(issue);
        }
    }

    fn lengths_above(&self, threshold: u64) -> u64 {
        self.lengths.above(threshold)
    }
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Alpaca => "Alpaca (instruction/input/output)",
        Shape::ShareGpt => "ShareGPT (conversations of from/value)",
        Shape::OpenAiLegacy => "OpenAI legacy function-calling (functions/function_call)",
        Shape::Preference => "preference (chosen/rejected replies, for DPO)",
        Shape::Kto => "KTO (completions labelled desirable or not)",
    }
}

/// Reads the evaluation files and remembers where each example is.
fn index_eval(options: &CheckOptions) -> (HashMap<u64, Location>, EvalSummary) {
    let mut seen = HashMap::new();
    let mut summary = EvalSummary {
        files: options.eval.iter().map(|f| f.display.clone()).collect(),
        rows: 0,
        overlapping_rows: 0,
    };
    pipeline::run(
        &options.eval,
        &options.read,
        &ByteCounter::default(),
        |batch, raw| {
            parse_row(batch, raw).ok().map(|v| {
                let kind = sft_formats::detect_row(&v);
                content_hash(&v, kind)
            })
        },
        |file, event| {
            if let FileEvent::Row(raw, hash) = event {
                summary.rows += 1;
                if let Some(hash) = hash {
                    seen.entry(hash)
                        .or_insert_with(|| row_location(&options.eval[file], raw));
                }
            }
        },
    );
    (seen, summary)
}

/// Checks every row of `files`.
pub fn check(files: &[DataFile], options: &CheckOptions) -> CheckReport {
    let started = Instant::now();
    let (eval_seen, eval) = if options.eval.is_empty() {
        (HashMap::new(), None)
    } else {
        let (seen, summary) = index_eval(options);
        (seen, Some(summary))
    };
    let all_issues = if options.keep_all_issues {
        tempfile::tempfile()
            .ok()
            .map(|f| BufWriter::with_capacity(1 << 16, f))
    } else {
        None
    };
    let mut checker = Checker {
        options,
        files,
        report: CheckReport {
            files: files
                .iter()
                .map(|f| FileSummary {
                    path: f.display.clone(),
                    kind: None,
                    bytes: f.size,
                    rows: 0,
                    error: None,
                    rows_not_read: None,
                })
                .collect(),
            rows: 0,
            kinds: BTreeMap::new(),
            counts: BTreeMap::new(),
            samples: BTreeMap::new(),
            errors: 0,
            warnings: 0,
            stats: Stats::default(),
            sources: Vec::new(),
            eval,
            bytes: files.iter().map(|f| f.size).sum(),
            data_bytes: 0,
            seconds: 0.0,
            tokens: None,
            template: options
                .template
                .as_ref()
                .map(|t| t.template.name().to_string()),
            all_issues,
            issues_per_code: options.issues_per_code,
            issues_left_out: BTreeMap::new(),
        },
        first_of_kind: HashMap::new(),
        files_of_kind: HashMap::new(),
        seen: HashMap::new(),
        spill: None,
        eval_seen,
        lengths: LengthCounts::default(),
        turns: LengthCounts::default(),
        longest: BinaryHeap::new(),
        duplicates: 0,
        token_lengths: Vec::new(),
        trained_tokens: 0,
        needs_template: 0,
        convertibility: HashMap::new(),
        file_sources: files.iter().map(|f| file_source_name(&f.path)).collect(),
        sources: HashMap::new(),
    };
    let generation_prompt = options
        .template
        .as_ref()
        .and_then(|t| t.template.generation_prompt(&t.options));
    let template = options
        .template
        .as_ref()
        .map(|t| (t, generation_prompt.as_deref()));
    let work = |batch: &sft_io::RowBatch, raw: &sft_io::RawRow| RowOutcome {
        parsed: parse_row(batch, raw).map(|v| examine(&v, template, options.tokens.as_ref())),
        bytes: match &raw.content {
            sft_io::RowContent::Json(r) => r.len() as u64 + 1,
            sft_io::RowContent::Value(v) => v.to_string().len() as u64 + 1,
        },
    };
    pipeline::run(
        files,
        &options.read,
        &options.progress,
        work,
        |file, event| match event {
            FileEvent::Opened(kind) => checker.report.files[file].kind = Some(kind.as_str()),
            FileEvent::Row(raw, outcome) => checker.row(file, raw, outcome),
            FileEvent::Failed(error) => checker.file_failed(file, error),
        },
    );
    let mut report = checker.finish();
    report.seconds = started.elapsed().as_secs_f64();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate_issues(report: &mut CheckReport, dir: &std::path::Path) -> Vec<(Value, Value)> {
        let path = dir.join(format!("report-{}.json", report.stats.duplicate_rows));
        report.write_json(&path, false).unwrap();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut out: Vec<(Value, Value)> = json["issues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["code"] == "duplicate_row")
            .map(|i| (i["line"].clone(), i["message"].clone()))
            .collect();
        out.sort_by_key(|(line, _)| line.as_u64());
        out
    }

    #[test]
    fn duplicates_past_the_flat_memory_limit_are_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let rows: String = (0..300)
            .map(|i| format!("{{\"text\": \"row {}\"}}\n", (i * 37) % 101))
            .collect();
        std::fs::write(&path, rows).unwrap();
        let files = sft_io::discover(&[path]).unwrap();
        let run = |limit: Option<u64>| {
            let options = CheckOptions {
                keep_all_issues: true,
                flat_memory_rows: limit,
                ..CheckOptions::default()
            };
            check(&files, &options)
        };
        let mut in_memory = run(None);
        let mut spilled = run(Some(10));
        assert_eq!(in_memory.stats.duplicate_rows, 199);
        assert_eq!(spilled.stats.duplicate_rows, 199);
        assert_eq!(in_memory.stats.chars, spilled.stats.chars);
        let a = duplicate_issues(&mut in_memory, dir.path());
        let b = duplicate_issues(&mut spilled, dir.path());
        assert_eq!(a.len(), 199);
        assert_eq!(a, b);
    }
}
