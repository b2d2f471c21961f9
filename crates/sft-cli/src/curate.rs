//! `sft-data mix | split | filter | dedupe | stats`: flags for the dataset operations of
//! `sft-curate`, in the language of the other `sft-data` commands.

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, ValueEnum};
use sft_curate::pass::{default_rejects_path, Input, OpError};
use sft_dataset::thousands;
use sft_io::paths::Output;
use sft_io::write::OutputFormat;
use sft_io::{ByteCounter, ReadOptions};

use crate::data::{
    find_files, load_token_check, output_flag, refuse_unsafe_outputs, template_inputs, usage_error,
    InputArgs, TemplateArgs,
};
use crate::progress::Progress;
use crate::EXIT_PROBLEMS;

#[derive(Args)]
#[command(group(ArgGroup::new("size").required(true).args(["rows", "epochs_of"])))]
pub struct MixArgs {
    /// Sources as PATH:WEIGHT or NAME=PATH:WEIGHT (a file or a folder of shards); the
    /// name (default: the file's stem) goes in each row's `source` field.
    #[arg(required = true, value_name = "SOURCE:WEIGHT")]
    sources: Vec<String>,
    /// Rows in the mix.
    #[arg(long, value_name = "N", value_parser = crate::flags::range::positive_u64, allow_hyphen_values = true)]
    rows: Option<u64>,
    /// Take the named source once, whole, and the others in proportion to it.
    #[arg(long, value_name = "NAME")]
    epochs_of: Option<String>,
    /// Seed of the sampling and of the interleaving.
    #[arg(long, default_value_t = 42, value_name = "S")]
    seed: u64,
    /// Draw rows with replacement (default: a source is taken whole as many times as fit,
    /// the rest drawn without replacement).
    #[arg(long)]
    replacement: bool,
    /// Output: .jsonl or .parquet.
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Where unparsable rows go (default: OUTPUT's name with .rejects.jsonl).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Write the realised proportions as JSON.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FileFormatArg {
    Parquet,
    Jsonl,
}

#[derive(Args)]
pub struct SplitArgs {
    /// Input files or folders.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// The test side: a fraction (0.05) or a number of rows (500).
    #[arg(long, value_name = "FRACTION|ROWS")]
    test_size: String,
    /// Seed of the draw.
    #[arg(long, default_value_t = 42, value_name = "S")]
    seed: u64,
    /// Output folder: DIR/data/train-00000-of-00001.parquet and test-...
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Draw the test rows within each source (the `source` field, else the file name).
    #[arg(long)]
    stratify_by_source: bool,
    /// Near-duplicates above this Jaccard similarity stay on one side.
    #[arg(long, default_value_t = 0.8, value_name = "F", value_parser = crate::flags::range::ratio, allow_hyphen_values = true)]
    near_threshold: f64,
    /// Only exact duplicates and shared prompts stay together (no MinHash pass).
    #[arg(long)]
    exact_only: bool,
    /// The files' format.
    #[arg(long, value_enum, default_value = "parquet")]
    file_format: FileFormatArg,
    /// Where unparsable rows go (default: DIR.rejects.jsonl beside DIR).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Write the split's numbers (sizes, rows moved) as JSON.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
pub struct FilterArgs {
    /// Input files or folders.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output: .jsonl or .parquet.
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Where dropped rows go, with their reasons (default: OUTPUT's name with .rejects.jsonl).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Tokenizer for --min-tokens/--max-tokens and `tokens` in --where: a model folder or
    /// a tokenizer.json file.
    #[arg(long, value_name = "MODEL_DIR|tokenizer.json")]
    tokenizer: Option<PathBuf>,
    /// Drop rows of fewer tokens (the whole example, before any truncation).
    #[arg(long, value_name = "N")]
    min_tokens: Option<u64>,
    /// Drop rows of more tokens.
    #[arg(long, value_name = "N")]
    max_tokens: Option<u64>,
    /// Drop conversations of fewer turns.
    #[arg(long, value_name = "N")]
    min_turns: Option<u64>,
    /// Drop conversations of more turns.
    #[arg(long, value_name = "N")]
    max_turns: Option<u64>,
    /// Drop rows with any of these `check` issue codes: repetitive_content,literal_special_token,...
    #[arg(long, value_name = "CODE,...")]
    drop_codes: Option<String>,
    /// Keep only rows where this holds: `turns >= 2 and source == 'a'`, `chars < 20000`,
    /// `meta.score > 0.5` (measures: chars, turns, tokens, format; else row fields).
    #[arg(long = "where", value_name = "EXPR")]
    condition: Option<String>,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
pub struct DedupeArgs {
    /// Input files or folders.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output: .jsonl or .parquet.
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Where removed rows go, with the row they duplicate (default: OUTPUT's name with
    /// .rejects.jsonl).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Near-duplicates: the Jaccard similarity of word 5-shingles above which rows are one.
    #[arg(long, default_value_t = 0.8, value_name = "F", value_parser = crate::flags::range::ratio, allow_hyphen_values = true)]
    threshold: f64,
    /// Exact duplicates only (no MinHash).
    #[arg(long)]
    exact_only: bool,
    /// Write the clusters (kept row, removed rows, where) as JSON.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Clusters listed in the report at most (all are counted); 0 lists all.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    report_limit: usize,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Input files or folders.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Count tokens with this tokenizer (model folder or tokenizer.json).
    #[arg(long, value_name = "MODEL_DIR|tokenizer.json")]
    tokenizer: Option<PathBuf>,
    /// Write the statistics as JSON, and histograms beside it as FILE.svg.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    input: InputArgs,
}

fn read_options(input: &InputArgs) -> ReadOptions {
    ReadOptions {
        text_split: input.text_split.clone(),
    }
}

fn rejects_of(rejects: Option<&PathBuf>, output: &Path) -> Output {
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

fn report_of(report: &Path) -> Output {
    Output::new(
        report,
        "the report (--report)",
        "pass --report another path",
    )
}

/// The exit code of an operation that failed.
fn failed(e: OpError) -> i32 {
    match e {
        OpError::Usage(m) => usage_error(m),
        other => {
            eprintln!("sft-data: error: {other}");
            EXIT_PROBLEMS
        }
    }
}

fn run_with_bar<T>(
    input: &Input,
    quiet: bool,
    job: impl FnOnce() -> Result<T, OpError>,
) -> Result<T, i32> {
    let total: u64 = input.files.iter().map(|f| f.size).sum();
    let result = {
        let _bar = Progress::start(&input.progress, total, quiet);
        job()
    };
    result.map_err(failed)
}

fn check_output_format(path: &Path) -> Result<(), i32> {
    OutputFormat::from_path(path)
        .map(|_| ())
        .map_err(usage_error)
}

fn rejects_line(file: &Option<PathBuf>, count: u64) -> String {
    match file {
        Some(f) => format!("  {} rows in {}\n", thousands(count), f.display()),
        None => String::new(),
    }
}

/// A source of `mix`: `PATH:WEIGHT` or `NAME=PATH:WEIGHT`.
fn parse_source(text: &str) -> Result<(Option<String>, PathBuf, f64), String> {
    let hint = "write each source as PATH:WEIGHT or NAME=PATH:WEIGHT, such as data/a.jsonl:0.7";
    let Some((left, weight)) = text.rsplit_once(':') else {
        return Err(format!("source `{text}` has no weight\n  hint: {hint}"));
    };
    if weight.is_empty() {
        return Err(format!(
            "source `{text}` has no weight after the `:`\n  hint: {hint}"
        ));
    }
    let w: f64 = weight.parse().map_err(|_| {
        format!("source `{text}`: the weight `{weight}` is not a number\n  hint: {hint}")
    })?;
    if !(w.is_finite() && w > 0.0) {
        return Err(format!(
            "source `{text}`: the weight must be a positive number, not {weight}\n  hint: drop a source rather than giving it weight 0"
        ));
    }
    let (name, path) = match left.split_once('=') {
        Some((n, p)) if !n.is_empty() && !Path::new(left).exists() => (Some(n.to_string()), p),
        _ => (None, left),
    };
    if path.is_empty() {
        return Err(format!("source `{text}` has no path\n  hint: {hint}"));
    }
    Ok((name, PathBuf::from(path), w))
}

pub fn run_mix(args: MixArgs) -> i32 {
    if let Err(code) = check_output_format(&args.output) {
        return code;
    }
    if args.rows == Some(0) {
        return usage_error("--rows 0: a mix needs at least one row");
    }
    let mut sources = Vec::new();
    let mut all_files = Vec::new();
    for text in &args.sources {
        let (name, path, weight) = match parse_source(text) {
            Ok(s) => s,
            Err(e) => return usage_error(e),
        };
        let files = match find_files(std::slice::from_ref(&path)) {
            Ok(f) => f,
            Err(code) => return code,
        };
        let name = name.unwrap_or_else(|| sft_dataset::source::file_source_name(&path));
        if sources
            .iter()
            .any(|s: &sft_curate::mix::MixSource| s.name == name)
        {
            return usage_error(format!(
                "two sources are named `{name}`\n  hint: name them: NAME=PATH:WEIGHT"
            ));
        }
        all_files.extend(files.iter().cloned());
        sources.push(sft_curate::mix::MixSource {
            name,
            files,
            weight,
        });
    }
    let mut outputs = vec![
        output_flag(&args.output),
        rejects_of(args.rejects.as_ref(), &args.output),
    ];
    outputs.extend(args.report.as_deref().map(report_of));
    if let Err(code) = refuse_unsafe_outputs(&all_files, &outputs, &[]) {
        return code;
    }
    let size = match (&args.rows, &args.epochs_of) {
        (Some(n), _) => sft_curate::mix::MixSize::Rows(*n),
        (None, Some(name)) => sft_curate::mix::MixSize::EpochsOf(name.clone()),
        (None, None) => return usage_error("mix needs --rows N or --epochs-of NAME"),
    };
    let job = sft_curate::mix::MixJob {
        sources,
        size,
        seed: args.seed,
        replacement: args.replacement,
        read: read_options(&args.input),
        progress: ByteCounter::default(),
        output: args.output.clone(),
        rejects: args.rejects.clone(),
    };
    let input = Input {
        files: all_files,
        read: job.read.clone(),
        progress: job.progress.clone(),
    };
    let s = match run_with_bar(&input, args.input.quiet, || sft_curate::mix::mix(&job)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        if let Err(e) = sft_io::write::write_atomic(path, text.as_bytes()) {
            eprintln!("sft-data: error: {e}");
            return EXIT_PROBLEMS;
        }
    }
    if !args.input.quiet {
        println!(
            "mixed {} rows into {} (seed {}, {}) in {:.1} s",
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
            println!(
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
            println!("unparsable rows dropped: {}", thousands(s.bad_rows));
        }
        print!("{}", rejects_line(&s.rejects_file, s.bad_rows));
    }
    0
}

pub fn run_split(args: SplitArgs) -> i32 {
    let test_size = match sft_curate::split::TestSize::parse(&args.test_size) {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let near = if args.exact_only {
        None
    } else if args.near_threshold > 0.0 && args.near_threshold <= 1.0 {
        Some(args.near_threshold)
    } else {
        return usage_error(format!(
            "--near-threshold {}: a Jaccard similarity is between 0 and 1 (--exact-only turns near-duplicates off)",
            args.near_threshold
        ));
    };
    let format = match args.file_format {
        FileFormatArg::Parquet => OutputFormat::Parquet,
        FileFormatArg::Jsonl => OutputFormat::JsonLines,
    };
    if args.output.exists() && !args.output.is_dir() {
        return usage_error(format!(
            "the output {} is a file; split writes a folder\n  hint: pass -o a folder (it is created)",
            args.output.display()
        ));
    }
    let inputs = match find_files(&args.inputs) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let parent = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return usage_error(format!(
            "the output {}: the folder {} does not exist\n  hint: create it first (mkdir -p {})",
            args.output.display(),
            parent.display(),
            parent.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(args.output.join("data")) {
        return usage_error(format!(
            "cannot create {}: {e}",
            args.output.join("data").display()
        ));
    }
    let (train, test) = sft_curate::split::split_files(&args.output, format);
    let mut outputs = vec![
        Output::new(&train, "the train split", "choose another -o"),
        Output::new(&test, "the test split", "choose another -o"),
        rejects_of(args.rejects.as_ref(), &args.output),
    ];
    outputs.extend(args.report.as_deref().map(report_of));
    if let Err(code) = refuse_unsafe_outputs(&inputs, &outputs, &[]) {
        return code;
    }
    let job = sft_curate::split::SplitJob {
        input: Input {
            files: inputs,
            read: read_options(&args.input),
            progress: ByteCounter::default(),
        },
        output: args.output.clone(),
        test_size,
        seed: args.seed,
        stratify: args.stratify_by_source,
        near_threshold: near,
        format,
        rejects: args.rejects.clone(),
        report: args.report.clone(),
    };
    let s = match run_with_bar(&job.input, args.input.quiet, || {
        sft_curate::split::split(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.input.quiet {
        println!(
            "split {} rows (seed {}) in {:.1} s: train {}, test {} ({:.2}%)",
            thousands(s.rows_in),
            s.seed,
            s.seconds,
            thousands(s.train),
            thousands(s.test),
            s.test as f64 * 100.0 / (s.train + s.test).max(1) as f64
        );
        println!(
            "  leak-free: {} rows belong to groups of related rows ({} exact duplicates, {} shared-prompt links{}); {} rows moved to train and {} to test to keep each group on one side",
            thousands(s.grouped_rows),
            thousands(s.exact_duplicates),
            thousands(s.shared_prompt_links),
            if near.is_some() { ", near-duplicates by MinHash" } else { "" },
            thousands(s.moved_to_train),
            thousands(s.moved_to_test)
        );
        for (source, n) in &s.test_by_source {
            println!("  test rows from {source}: {}", thousands(*n));
        }
        println!("  {}\n  {}", s.train_file.display(), s.test_file.display());
        print!("{}", rejects_line(&s.rejects_file, s.bad_rows));
    }
    0
}

pub fn run_filter(args: FilterArgs) -> i32 {
    if let Err(code) = check_output_format(&args.output) {
        return code;
    }
    let drop_codes = match &args.drop_codes {
        None => Vec::new(),
        Some(text) => match sft_curate::filter::parse_codes(text) {
            Ok(c) => c,
            Err(e) => return usage_error(e),
        },
    };
    let condition = match &args.condition {
        None => None,
        Some(text) => match sft_curate::expr::Expr::parse(text) {
            Ok(e) => Some((text.clone(), e)),
            Err(e) => {
                return usage_error(format!(
                    "--where {text}: {e}\n  hint: compare fields or measures (chars, turns, tokens, format) with ==, !=, <, <=, >, >=, contains; join with and, or, not"
                ))
            }
        },
    };
    let wants_tokens = args.min_tokens.is_some()
        || args.max_tokens.is_some()
        || condition
            .as_ref()
            .is_some_and(|(_, e)| e.names().contains(&"tokens"));
    if wants_tokens && args.tokenizer.is_none() {
        return usage_error("--min-tokens, --max-tokens and `tokens` in --where need --tokenizer MODEL_DIR|tokenizer.json");
    }
    for (what, lo, hi) in [
        ("tokens", args.min_tokens, args.max_tokens),
        ("turns", args.min_turns, args.max_turns),
    ] {
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo > hi {
                return usage_error(format!(
                    "--min-{what} {lo} is above --max-{what} {hi}: every row would be dropped"
                ));
            }
        }
    }
    let no_condition = !wants_tokens
        && args.min_turns.is_none()
        && args.max_turns.is_none()
        && drop_codes.is_empty()
        && condition.is_none();
    if no_condition {
        return usage_error("filter needs a condition: --min-tokens/--max-tokens (with --tokenizer), --min-turns/--max-turns, --drop-codes or --where");
    }
    let tokens = match &args.tokenizer {
        None => None,
        Some(path) => match load_token_check(path, &args.template, 1024) {
            Ok(mut t) => {
                t.options.max_length = None;
                Some(t)
            }
            Err(e) => return usage_error(e),
        },
    };
    let mut extra = template_inputs(&args.template);
    extra.extend(args.tokenizer.iter().cloned());
    let inputs = match find_files(&args.inputs) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let outputs = [
        output_flag(&args.output),
        rejects_of(args.rejects.as_ref(), &args.output),
    ];
    if let Err(code) = refuse_unsafe_outputs(&inputs, &outputs, &extra) {
        return code;
    }
    let job = sft_curate::filter::FilterJob {
        input: Input {
            files: inputs,
            read: read_options(&args.input),
            progress: ByteCounter::default(),
        },
        output: args.output.clone(),
        rejects: args.rejects.clone(),
        tokens,
        min_tokens: args.min_tokens,
        max_tokens: args.max_tokens,
        min_turns: args.min_turns,
        max_turns: args.max_turns,
        drop_codes,
        condition,
    };
    let s = match run_with_bar(&job.input, args.input.quiet, || {
        sft_curate::filter::filter(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.input.quiet {
        println!(
            "filtered {} rows in {:.1} s: {} written to {}, {} dropped",
            thousands(s.rows_in),
            s.seconds,
            thousands(s.written),
            s.output.display(),
            thousands(s.dropped)
        );
        for (code, n) in &s.reasons {
            println!("  {code}  {}", thousands(*n));
        }
        print!("{}", rejects_line(&s.rejects_file, s.dropped));
    }
    0
}

pub fn run_dedupe(args: DedupeArgs) -> i32 {
    if let Err(code) = check_output_format(&args.output) {
        return code;
    }
    let valid = args.threshold > 0.0 && args.threshold <= 1.0;
    if !args.exact_only && !valid {
        return usage_error(format!(
            "--threshold {}: a Jaccard similarity is between 0 and 1 (--exact-only turns near-duplicates off)",
            args.threshold
        ));
    }
    let inputs = match find_files(&args.inputs) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let mut outputs = vec![
        output_flag(&args.output),
        rejects_of(args.rejects.as_ref(), &args.output),
    ];
    outputs.extend(args.report.as_deref().map(report_of));
    if let Err(code) = refuse_unsafe_outputs(&inputs, &outputs, &[]) {
        return code;
    }
    let job = sft_curate::dedupe::DedupeJob {
        input: Input {
            files: inputs,
            read: read_options(&args.input),
            progress: ByteCounter::default(),
        },
        output: args.output.clone(),
        rejects: args.rejects.clone(),
        threshold: (!args.exact_only).then_some(args.threshold),
        report: args.report.clone(),
        clusters_listed: if args.report_limit == 0 {
            usize::MAX
        } else {
            args.report_limit
        },
    };
    let s = match run_with_bar(&job.input, args.input.quiet, || {
        sft_curate::dedupe::dedupe(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.input.quiet {
        println!(
            "deduplicated {} rows in {:.1} s: {} written to {}",
            thousands(s.rows_in),
            s.seconds,
            thousands(s.written),
            s.output.display()
        );
        println!(
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
            println!(
                "  kept {} candidates whose signatures estimate a similarity under the threshold",
                thousands(s.candidates_not_confirmed)
            );
        }
        print!(
            "{}",
            rejects_line(
                &s.rejects_file,
                s.exact_duplicates + s.near_duplicates + s.bad_rows
            )
        );
        if let Some(r) = &args.report {
            println!("report: {}", r.display());
        }
    }
    0
}

pub fn run_stats(args: StatsArgs) -> i32 {
    let tokens = match &args.tokenizer {
        None => None,
        Some(path) => match load_token_check(path, &args.template, 1024) {
            Ok(mut t) => {
                t.options.max_length = None;
                Some(t)
            }
            Err(e) => return usage_error(e),
        },
    };
    let inputs = match find_files(&args.inputs) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if let Some(report) = &args.report {
        if report.extension().and_then(|e| e.to_str()) != Some("json") {
            return usage_error(format!(
                "--report {}: the report is a .json file (the histograms go beside it as .svg)",
                report.display()
            ));
        }
        let mut extra = template_inputs(&args.template);
        extra.extend(args.tokenizer.iter().cloned());
        let outputs = [
            report_of(report),
            Output::new(
                sft_curate::stats::picture_path(report),
                "the histograms (the report's name with .svg)",
                "pass --report another path",
            ),
        ];
        if let Err(code) = refuse_unsafe_outputs(&inputs, &outputs, &extra) {
            return code;
        }
    }
    let job = sft_curate::stats::StatsJob {
        input: Input {
            files: inputs,
            read: read_options(&args.input),
            progress: ByteCounter::default(),
        },
        tokens,
        report: args.report.clone(),
    };
    let s = match run_with_bar(&job.input, args.input.quiet, || {
        sft_curate::stats::stats(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.input.quiet {
        print!("{}", s.text());
    }
    if s.rows == 0 {
        eprintln!("sft-data: error: no rows in the input");
        return EXIT_PROBLEMS;
    }
    0
}
