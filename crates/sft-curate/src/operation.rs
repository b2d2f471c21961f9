//! The one shape of a dataset operation, as a command runs it: the rows it reads, the files
//! it writes (checked against what it reads before it starts), the run, and the summary a
//! person reads. `sft-data mix | split | filter | dedupe | stats` all go through
//! [`Operation`]; the binary has one path for them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sft_dataset::thousands;
use sft_io::paths::Output;
use sft_io::write::OutputFormat;

use crate::dedupe::{dedupe, DedupeJob, DedupeSummary};
use crate::filter::{filter, FilterJob, FilterSummary};
use crate::mix::{mix, MixJob, MixSource, MixSummary};
use crate::pass::{default_rejects_path, Input, OpError};
use crate::split::{split, split_files, SplitJob, SplitSummary};
use crate::stats::{picture_path, stats, StatsJob, StatsSummary};

/// A dataset operation.
pub trait Operation {
    type Summary;
    /// The rows it reads (their sizes drive a progress bar).
    fn input(&self) -> &Input;
    /// Every file it writes, to be refused if it would replace something read.
    fn outputs(&self) -> Vec<Output>;
    fn run(&self) -> Result<Self::Summary, OpError>;
    /// What the command prints of its summary.
    fn text(&self, summary: &Self::Summary) -> String;
    /// Why the operation failed although it ran (exit 1), if it did.
    fn failure(&self, _summary: &Self::Summary) -> Option<String> {
        None
    }
}

/// Refuses an output file (`-o`) whose format is not known from its name.
pub fn check_output_format(path: &Path) -> Result<(), OpError> {
    OutputFormat::from_path(path)
        .map(|_| ())
        .map_err(|e| OpError::Usage(e.to_string()))
}

fn output_file(path: &Path) -> Output {
    Output::new(path, "the output (-o)", "write to another file with -o")
}

fn rejects(rejects: Option<&PathBuf>, output: &Path) -> Output {
    match rejects {
        Some(p) => Output::new(
            p,
            "the rejects file (--rejects)",
            "pass --rejects with another path",
        ),
        None => Output::new(
            default_rejects_path(output),
            "the default rejects file (beside the output, .rejects.jsonl)",
            "pass --rejects FILE to put the dropped rows elsewhere, or choose another -o",
        ),
    }
}

fn report(report: &Path) -> Output {
    Output::new(
        report,
        "the report (--report)",
        "pass --report another path",
    )
}

fn rejects_line(file: &Option<PathBuf>, count: u64) -> String {
    match file {
        Some(f) => format!("  {} rows in {}\n", thousands(count), f.display()),
        None => String::new(),
    }
}

/// A Jaccard similarity threshold: in (0, 1], unless near-duplicates are off.
pub fn jaccard_threshold(flag: &str, value: f64, exact_only: bool) -> Result<Option<f64>, OpError> {
    if exact_only {
        return Ok(None);
    }
    if value > 0.0 && value <= 1.0 {
        return Ok(Some(value));
    }
    Err(OpError::Usage(format!(
        "{flag} {value}: a Jaccard similarity is between 0 and 1 (--exact-only turns near-duplicates off)"
    )))
}

impl MixSource {
    /// A source as written on the command line: `PATH:WEIGHT` or `NAME=PATH:WEIGHT`; the
    /// files are found by the caller. Returns the name (if given), path and weight.
    pub fn parse_spec(text: &str) -> Result<(Option<String>, PathBuf, f64), OpError> {
        let usage = |m: String| Err(OpError::Usage(m));
        let hint = "write each source as PATH:WEIGHT or NAME=PATH:WEIGHT, such as data/a.jsonl:0.7";
        let Some((left, weight)) = text.rsplit_once(':') else {
            return usage(format!("source `{text}` has no weight\n  hint: {hint}"));
        };
        if weight.is_empty() {
            return usage(format!(
                "source `{text}` has no weight after the `:`\n  hint: {hint}"
            ));
        }
        let Ok(w) = weight.parse::<f64>() else {
            return usage(format!(
                "source `{text}`: the weight `{weight}` is not a number\n  hint: {hint}"
            ));
        };
        if !(w.is_finite() && w > 0.0) {
            return usage(format!(
                "source `{text}`: the weight must be a positive number, not {weight}\n  hint: drop a source rather than giving it weight 0"
            ));
        }
        let (name, path) = match left.split_once('=') {
            Some((n, p)) if !n.is_empty() && !Path::new(left).exists() => (Some(n.to_string()), p),
            _ => (None, left),
        };
        if path.is_empty() {
            return usage(format!("source `{text}` has no path\n  hint: {hint}"));
        }
        Ok((name, PathBuf::from(path), w))
    }
}

/// `mix` with the report it may write and the input of all its sources.
pub struct MixOperation {
    pub job: MixJob,
    /// The realised proportions as JSON (`--report`).
    pub report: Option<PathBuf>,
    input: Input,
}

impl MixOperation {
    pub fn new(job: MixJob, report: Option<PathBuf>) -> Result<Self, OpError> {
        if let crate::mix::MixSize::Rows(0) = job.size {
            return Err(OpError::Usage(
                "--rows 0: a mix needs at least one row".into(),
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for s in &job.sources {
            if names.contains(&s.name.as_str()) {
                return Err(OpError::Usage(format!(
                    "two sources are named `{}`\n  hint: name them: NAME=PATH:WEIGHT",
                    s.name
                )));
            }
            names.push(&s.name);
        }
        let input = Input {
            files: job.sources.iter().flat_map(|s| s.files.clone()).collect(),
            read: job.read.clone(),
            progress: job.progress.clone(),
        };
        Ok(MixOperation { job, report, input })
    }
}

impl Operation for MixOperation {
    type Summary = MixSummary;
    fn input(&self) -> &Input {
        &self.input
    }
    fn outputs(&self) -> Vec<Output> {
        let mut out = vec![
            output_file(&self.job.output),
            rejects(self.job.rejects.as_ref(), &self.job.output),
        ];
        out.extend(self.report.as_deref().map(report));
        out
    }
    fn run(&self) -> Result<MixSummary, OpError> {
        let s = mix(&self.job)?;
        if let Some(path) = &self.report {
            let text = serde_json::to_string_pretty(&s).unwrap_or_default();
            sft_io::write::write_atomic(path, text.as_bytes())?;
        }
        Ok(s)
    }
    fn text(&self, s: &MixSummary) -> String {
        let mut out = format!(
            "mixed {} rows into {} (seed {}, {}) in {:.1} s\n",
            thousands(s.rows),
            s.output.display(),
            s.seed,
            if s.replacement {
                "with replacement"
            } else {
                "without replacement"
            },
            s.seconds
        );
        for src in &s.sources {
            let _ = writeln!(
                out,
                "  {:<20} weight {:<6} asked {:>6.2}%  realised {:>6.2}%  {} of {} rows ({:.2} epochs)",
                src.name,
                src.weight,
                src.asked * 100.0,
                src.realised * 100.0,
                thousands(src.taken),
                thousands(src.available),
                src.epochs
            );
        }
        if s.bad_rows > 0 {
            let _ = writeln!(out, "unparsable rows dropped: {}", thousands(s.bad_rows));
        }
        out + &rejects_line(&s.rejects_file, s.bad_rows)
    }
}

impl SplitJob {
    /// Refuses an output that is a file, or whose parent folder is missing, and makes the
    /// output's `data/` folder.
    pub fn make_output_folder(output: &Path) -> Result<(), OpError> {
        let usage = |m: String| Err(OpError::Usage(m));
        if output.exists() && !output.is_dir() {
            return usage(format!(
                "the output {} is a file; split writes a folder\n  hint: pass -o a folder (it is created)",
                output.display()
            ));
        }
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return usage(format!(
                "the output {}: the folder {} does not exist\n  hint: create it first (mkdir -p {})",
                output.display(),
                parent.display(),
                parent.display()
            ));
        }
        let data = output.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| OpError::Usage(format!("cannot create {}: {e}", data.display())))
    }
}

impl Operation for SplitJob {
    type Summary = SplitSummary;
    fn input(&self) -> &Input {
        &self.input
    }
    fn outputs(&self) -> Vec<Output> {
        let (train, test) = split_files(&self.output, self.format);
        let mut out = vec![
            Output::new(&train, "the train split", "choose another -o"),
            Output::new(&test, "the test split", "choose another -o"),
            rejects(self.rejects.as_ref(), &self.output),
        ];
        out.extend(self.report.as_deref().map(report));
        out
    }
    fn run(&self) -> Result<SplitSummary, OpError> {
        split(self)
    }
    fn text(&self, s: &SplitSummary) -> String {
        let mut out = format!(
            "split {} rows (seed {}) in {:.1} s: train {}, test {} ({:.2}%)\n",
            thousands(s.rows_in),
            s.seed,
            s.seconds,
            thousands(s.train),
            thousands(s.test),
            s.test as f64 * 100.0 / (s.train + s.test).max(1) as f64
        );
        let _ = writeln!(
            out,
            "  leak-free: {} rows belong to groups of related rows ({} exact duplicates, {} shared-prompt links{}); {} rows moved to train and {} to test to keep each group on one side",
            thousands(s.grouped_rows),
            thousands(s.exact_duplicates),
            thousands(s.shared_prompt_links),
            if self.near_threshold.is_some() { ", near-duplicates by MinHash" } else { "" },
            thousands(s.moved_to_train),
            thousands(s.moved_to_test)
        );
        for (source, n) in &s.test_by_source {
            let _ = writeln!(out, "  test rows from {source}: {}", thousands(*n));
        }
        let _ = writeln!(
            out,
            "  {}\n  {}",
            s.train_file.display(),
            s.test_file.display()
        );
        out + &rejects_line(&s.rejects_file, s.bad_rows)
    }
}

impl FilterJob {
    /// Refuses a filter without a condition, token bounds without a tokenizer, and bounds
    /// that would drop every row.
    pub fn check(&self, has_tokenizer: bool) -> Result<(), OpError> {
        let usage = |m: String| Err(OpError::Usage(m));
        let wants_tokens = self.min_tokens.is_some()
            || self.max_tokens.is_some()
            || self
                .condition
                .as_ref()
                .is_some_and(|(_, e)| e.names().contains(&"tokens"));
        if wants_tokens && !has_tokenizer {
            return usage("--min-tokens, --max-tokens and `tokens` in --where need --tokenizer MODEL_DIR|tokenizer.json".into());
        }
        for (what, lo, hi) in [
            ("tokens", self.min_tokens, self.max_tokens),
            ("turns", self.min_turns, self.max_turns),
        ] {
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if lo > hi {
                    return usage(format!(
                        "--min-{what} {lo} is above --max-{what} {hi}: every row would be dropped"
                    ));
                }
            }
        }
        let no_condition = !wants_tokens
            && self.min_turns.is_none()
            && self.max_turns.is_none()
            && self.drop_codes.is_empty()
            && self.condition.is_none();
        if no_condition {
            return usage("filter needs a condition: --min-tokens/--max-tokens (with --tokenizer), --min-turns/--max-turns, --drop-codes or --where".into());
        }
        Ok(())
    }
}

/// A `--where` condition, parsed.
pub fn condition(text: &str) -> Result<(String, crate::expr::Expr), OpError> {
    crate::expr::Expr::parse(text)
        .map(|e| (text.to_string(), e))
        .map_err(|e| OpError::Usage(format!(
            "--where {text}: {e}\n  hint: compare fields or measures (chars, turns, tokens, format) with ==, !=, <, <=, >, >=, contains; join with and, or, not"
        )))
}

impl Operation for FilterJob {
    type Summary = FilterSummary;
    fn input(&self) -> &Input {
        &self.input
    }
    fn outputs(&self) -> Vec<Output> {
        vec![
            output_file(&self.output),
            rejects(self.rejects.as_ref(), &self.output),
        ]
    }
    fn run(&self) -> Result<FilterSummary, OpError> {
        filter(self)
    }
    fn text(&self, s: &FilterSummary) -> String {
        let mut out = format!(
            "filtered {} rows in {:.1} s: {} written to {}, {} dropped\n",
            thousands(s.rows_in),
            s.seconds,
            thousands(s.written),
            s.output.display(),
            thousands(s.dropped)
        );
        for (code, n) in &s.reasons {
            let _ = writeln!(out, "  {code}  {}", thousands(*n));
        }
        out + &rejects_line(&s.rejects_file, s.dropped)
    }
}

impl Operation for DedupeJob {
    type Summary = DedupeSummary;
    fn input(&self) -> &Input {
        &self.input
    }
    fn outputs(&self) -> Vec<Output> {
        let mut out = vec![
            output_file(&self.output),
            rejects(self.rejects.as_ref(), &self.output),
        ];
        out.extend(self.report.as_deref().map(report));
        out
    }
    fn run(&self) -> Result<DedupeSummary, OpError> {
        dedupe(self)
    }
    fn text(&self, s: &DedupeSummary) -> String {
        let mut out = format!(
            "deduplicated {} rows in {:.1} s: {} written to {}\n",
            thousands(s.rows_in),
            s.seconds,
            thousands(s.written),
            s.output.display()
        );
        let _ = writeln!(
            out,
            "  removed {} exact duplicates and {} near-duplicates{} in {} clusters; unparsable rows: {}",
            thousands(s.exact_duplicates),
            thousands(s.near_duplicates),
            match (s.threshold, s.bands, s.rows_per_band) {
                (Some(t), Some(b), Some(r)) => format!(" (Jaccard above {t}: MinHash, {b} bands of {r})"),
                _ => String::new(),
            },
            thousands(s.clusters),
            thousands(s.bad_rows)
        );
        if s.candidates_not_confirmed > 0 {
            let _ = writeln!(
                out,
                "  kept {} candidates whose signatures estimate a similarity under the threshold",
                thousands(s.candidates_not_confirmed)
            );
        }
        out += &rejects_line(
            &s.rejects_file,
            s.exact_duplicates + s.near_duplicates + s.bad_rows,
        );
        if let Some(r) = &self.report {
            let _ = writeln!(out, "report: {}", r.display());
        }
        out
    }
}

impl Operation for StatsJob {
    type Summary = StatsSummary;
    fn input(&self) -> &Input {
        &self.input
    }
    fn outputs(&self) -> Vec<Output> {
        match &self.report {
            Some(r) => vec![
                report(r),
                Output::new(
                    picture_path(r),
                    "the histograms (the report's name with .svg)",
                    "pass --report another path",
                ),
            ],
            None => Vec::new(),
        }
    }
    fn run(&self) -> Result<StatsSummary, OpError> {
        if let Some(r) = &self.report {
            if r.extension().and_then(|e| e.to_str()) != Some("json") {
                return Err(OpError::Usage(format!(
                    "--report {}: the report is a .json file (the histograms go beside it as .svg)",
                    r.display()
                )));
            }
        }
        stats(self)
    }
    fn text(&self, s: &StatsSummary) -> String {
        s.text()
    }
    fn failure(&self, s: &StatsSummary) -> Option<String> {
        (s.rows == 0).then(|| "no rows in the input".to_string())
    }
}
