//! `sft-data mix | split | filter | dedupe | stats`: flags for the dataset operations of
//! `sft-curate`, in the language of the other `sft-data` commands.

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};
use sft_curate::operation::{check_output_format, jaccard_threshold, MixOperation, Operation};
use sft_curate::pass::{Input, OpError};
use sft_io::write::OutputFormat;
use sft_io::{ByteCounter, ReadOptions};

use crate::inputs::{
    find_files, load_token_check, refuse_unsafe_outputs, template_inputs, usage_error, InputArgs,
    TemplateArgs,
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

fn input(inputs: &[PathBuf], args: &InputArgs) -> Result<Input, i32> {
    Ok(Input {
        files: find_files(inputs, args)?,
        read: ReadOptions {
            text_split: args.text_split.clone(),
        },
        progress: ByteCounter::default(),
    })
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

/// The one path of every dataset operation: no output may replace what it reads (nor
/// `extra_reads`: a tokenizer, a template); it runs with a progress bar over its input;
/// its summary is printed unless `quiet`.
fn run_curate<O: Operation>(op: Result<O, i32>, extra_reads: &[PathBuf], quiet: bool) -> i32 {
    let op = match op {
        Ok(op) => op,
        Err(code) => return code,
    };
    let input = op.input();
    if let Err(code) = refuse_unsafe_outputs(&input.files, &op.outputs(), extra_reads) {
        return code;
    }
    let total: u64 = input.files.iter().map(|f| f.size).sum();
    let result = {
        let _bar = Progress::start(&input.progress, total, quiet);
        op.run()
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    if !quiet {
        print!("{}", op.text(&summary));
    }
    match op.failure(&summary) {
        Some(why) => {
            eprintln!("sft-data: error: {why}");
            EXIT_PROBLEMS
        }
        None => 0,
    }
}

pub fn run_mix(args: MixArgs) -> i32 {
    let quiet = args.input.quiet;
    run_curate(mix(args), &[], quiet)
}

fn mix(args: MixArgs) -> Result<MixOperation, i32> {
    check_output_format(&args.output).map_err(failed)?;
    let mut sources = Vec::new();
    for text in &args.sources {
        let (name, path, weight) = sft_curate::mix::MixSource::parse_spec(text).map_err(failed)?;
        sources.push(sft_curate::mix::MixSource {
            name: name.unwrap_or_else(|| sft_dataset::source::file_source_name(&path)),
            files: find_files(std::slice::from_ref(&path), &args.input)?,
            weight,
        });
    }
    let size = match (args.rows, args.epochs_of) {
        (Some(n), _) => sft_curate::mix::MixSize::Rows(n),
        (None, Some(name)) => sft_curate::mix::MixSize::EpochsOf(name),
        (None, None) => return Err(usage_error("mix needs --rows N or --epochs-of NAME")),
    };
    let job = sft_curate::mix::MixJob {
        sources,
        size,
        seed: args.seed,
        replacement: args.replacement,
        read: ReadOptions {
            text_split: args.input.text_split.clone(),
        },
        progress: ByteCounter::default(),
        output: args.output,
        rejects: args.rejects,
    };
    MixOperation::new(job, args.report).map_err(failed)
}

pub fn run_split(args: SplitArgs) -> i32 {
    let quiet = args.input.quiet;
    run_curate(split(args), &[], quiet)
}

fn split(args: SplitArgs) -> Result<sft_curate::split::SplitJob, i32> {
    let test_size = sft_curate::split::TestSize::parse(&args.test_size).map_err(usage_error)?;
    let near = jaccard_threshold("--near-threshold", args.near_threshold, args.exact_only)
        .map_err(failed)?;
    let format = match args.file_format {
        FileFormatArg::Parquet => OutputFormat::Parquet,
        FileFormatArg::Jsonl => OutputFormat::JsonLines,
    };
    if args.output.exists() && !args.output.is_dir() {
        sft_curate::split::SplitJob::make_output_folder(&args.output).map_err(failed)?;
    }
    let input = input(&args.inputs, &args.input)?;
    sft_curate::split::SplitJob::make_output_folder(&args.output).map_err(failed)?;
    Ok(sft_curate::split::SplitJob {
        input,
        output: args.output,
        test_size,
        seed: args.seed,
        stratify: args.stratify_by_source,
        near_threshold: near,
        format,
        rejects: args.rejects,
        report: args.report,
    })
}

pub fn run_filter(args: FilterArgs) -> i32 {
    let quiet = args.input.quiet;
    let mut extra = template_inputs(&args.template);
    extra.extend(args.tokenizer.iter().cloned());
    run_curate(filter(args), &extra, quiet)
}

fn filter(args: FilterArgs) -> Result<sft_curate::filter::FilterJob, i32> {
    check_output_format(&args.output).map_err(failed)?;
    let drop_codes = match &args.drop_codes {
        None => Vec::new(),
        Some(text) => sft_curate::filter::parse_codes(text).map_err(usage_error)?,
    };
    let condition = match &args.condition {
        None => None,
        Some(text) => Some(sft_curate::operation::condition(text).map_err(failed)?),
    };
    let mut job = sft_curate::filter::FilterJob {
        input: Input::default(),
        output: args.output,
        rejects: args.rejects,
        tokens: None,
        min_tokens: args.min_tokens,
        max_tokens: args.max_tokens,
        min_turns: args.min_turns,
        max_turns: args.max_turns,
        drop_codes,
        condition,
    };
    job.check(args.tokenizer.is_some()).map_err(failed)?;
    if let Some(path) = &args.tokenizer {
        let mut t = load_token_check(path, &args.template, 1024).map_err(usage_error)?;
        t.options.max_length = None;
        job.tokens = Some(t);
    }
    job.input = input(&args.inputs, &args.input)?;
    Ok(job)
}

pub fn run_dedupe(args: DedupeArgs) -> i32 {
    let quiet = args.input.quiet;
    run_curate(dedupe(args), &[], quiet)
}

fn dedupe(args: DedupeArgs) -> Result<sft_curate::dedupe::DedupeJob, i32> {
    check_output_format(&args.output).map_err(failed)?;
    let threshold =
        jaccard_threshold("--threshold", args.threshold, args.exact_only).map_err(failed)?;
    Ok(sft_curate::dedupe::DedupeJob {
        input: input(&args.inputs, &args.input)?,
        output: args.output,
        rejects: args.rejects,
        threshold,
        report: args.report,
        clusters_listed: if args.report_limit == 0 {
            usize::MAX
        } else {
            args.report_limit
        },
    })
}

pub fn run_stats(args: StatsArgs) -> i32 {
    let quiet = args.input.quiet;
    let mut extra = template_inputs(&args.template);
    extra.extend(args.tokenizer.iter().cloned());
    run_curate(stats(args), &extra, quiet)
}

fn stats(args: StatsArgs) -> Result<sft_curate::stats::StatsJob, i32> {
    let tokens = match &args.tokenizer {
        None => None,
        Some(path) => {
            let mut t = load_token_check(path, &args.template, 1024).map_err(usage_error)?;
            t.options.max_length = None;
            Some(t)
        }
    };
    Ok(sft_curate::stats::StatsJob {
        input: input(&args.inputs, &args.input)?,
        tokens,
        report: args.report,
    })
}
