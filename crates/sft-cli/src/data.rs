//! `sft-data`: check and convert datasets.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sft_dataset::check::{check, CheckOptions};
use sft_dataset::convert::{convert, ConvertJob, ConvertSummary};
use sft_dataset::thousands;
use sft_formats::convert::{ConvertOptions, Source};
use sft_formats::Format;
use sft_io::{discover, ByteCounter, DataFile, ReadOptions, TextSplit};

use crate::progress::Progress;
use crate::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Parser)]
#[command(
    name = "sft-data",
    version,
    about = "Check and convert supervised fine-tuning datasets",
    long_about = "Check and convert supervised fine-tuning datasets.\n\nExit codes: 0 success, 1 the data has problems, 2 the command is wrong."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate datasets: every problem with its location, statistics, a report.
    Check(CheckArgs),
    /// Convert Alpaca, ShareGPT, OpenAI, tables or raw text into one of the four formats.
    Convert(ConvertArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Text,
    Messages,
    PromptCompletion,
    ConversationalPromptCompletion,
}

impl FormatArg {
    fn format(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Text => Some(Format::Text),
            FormatArg::Messages => Some(Format::Messages),
            FormatArg::PromptCompletion => Some(Format::PromptCompletion),
            FormatArg::ConversationalPromptCompletion => {
                Some(Format::ConversationalPromptCompletion)
            }
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ToArg {
    Text,
    Messages,
    PromptCompletion,
    ConversationalPromptCompletion,
}

#[derive(Clone, Copy, ValueEnum)]
enum FromArg {
    Auto,
    Alpaca,
    Sharegpt,
    Openai,
    Columns,
    Text,
    Messages,
    PromptCompletion,
    ConversationalPromptCompletion,
}

#[derive(Args)]
struct InputArgs {
    /// How raw text files (.txt) become documents: whole, line, paragraph, or a separator
    /// string such as '<|endoftext|>'.
    #[arg(long, value_name = "HOW", default_value = "whole")]
    text_split: TextSplit,
    /// No progress bar and no summary; errors still go to stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Data files or folders: .jsonl/.ndjson (.gz, .zst), .json, .parquet, .arrow,
    /// `save_to_disk` folders, folders of shards.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The format every row must have; auto detects it per row.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Write a JSON report with every issue.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    strict: bool,
    /// Evaluation data: report training rows that are also in it.
    #[arg(long, value_name = "PATH")]
    eval: Vec<PathBuf>,
    /// Colour in the summary.
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorArg,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct ConvertArgs {
    /// Input files or folders.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// The format to write.
    #[arg(long, value_enum)]
    to: ToArg,
    /// The shape of the input; auto decides per row from its keys.
    #[arg(long, value_enum, default_value = "auto")]
    from: FromArg,
    /// Output file: .jsonl or .parquet.
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Where rejected rows go (default: OUTPUT's name with .rejects.jsonl).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// A system prompt for conversations that have none.
    #[arg(long)]
    system: Option<String>,
    /// Take a key of the output from a column of the input: --map prompt=question.
    /// Implies --from columns.
    #[arg(long = "map", value_name = "KEY=COLUMN")]
    map: Vec<String>,
    /// Fail (exit 1) when any row is rejected.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    input: InputArgs,
}

fn usage_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-data: error: {message}");
    EXIT_USAGE
}

fn find_files(paths: &[PathBuf]) -> Result<Vec<DataFile>, i32> {
    discover(paths).map_err(|e| {
        usage_error(format_args!(
            "{e}\n  hint: pass data files (.jsonl, .json, .parquet, .arrow, .txt) or folders holding them"
        ))
    })
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Check(args) => run_check(args),
        Command::Convert(args) => run_convert(args),
    }
}

fn run_check(args: CheckArgs) -> i32 {
    let files = match find_files(&args.paths) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let eval = if args.eval.is_empty() {
        Vec::new()
    } else {
        match find_files(&args.eval) {
            Ok(f) => f,
            Err(code) => return code,
        }
    };
    let options = CheckOptions {
        format: args.format.format(),
        eval,
        read: ReadOptions {
            text_split: args.input.text_split.clone(),
        },
        keep_all_issues: args.report.is_some(),
        progress: ByteCounter::default(),
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    let mut report = {
        let _bar = Progress::start(&options.progress, total, args.input.quiet);
        check(&files, &options)
    };
    let color = match args.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    if !args.input.quiet {
        print!("{}", report.summary(args.strict, color));
    }
    if let Some(path) = &args.report {
        if let Err(e) = report.write_json(path, args.strict) {
            eprintln!("sft-data: error: {e}");
            return EXIT_PROBLEMS;
        }
        if !args.input.quiet {
            println!("report: {}", path.display());
        }
    }
    if report.passed(args.strict) {
        0
    } else {
        EXIT_PROBLEMS
    }
}

fn parse_map(entries: &[String]) -> Result<Vec<(String, String)>, String> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, column)) if !key.is_empty() && !column.is_empty() => {
                Ok((key.to_string(), column.to_string()))
            }
            _ => Err(format!(
                "--map {entry}: expected KEY=COLUMN, such as --map prompt=question"
            )),
        })
        .collect()
}

fn run_convert(args: ConvertArgs) -> i32 {
    let to = match args.to {
        ToArg::Text => Format::Text,
        ToArg::Messages => Format::Messages,
        ToArg::PromptCompletion => Format::PromptCompletion,
        ToArg::ConversationalPromptCompletion => Format::ConversationalPromptCompletion,
    };
    let column_map = match parse_map(&args.map) {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let from = match args.from {
        FromArg::Auto if !column_map.is_empty() => Source::Columns,
        FromArg::Auto => Source::Auto,
        FromArg::Alpaca => Source::Alpaca,
        FromArg::Sharegpt => Source::ShareGpt,
        FromArg::Openai => Source::OpenAi,
        FromArg::Columns => Source::Columns,
        FromArg::Text => Source::Format(Format::Text),
        FromArg::Messages => Source::Format(Format::Messages),
        FromArg::PromptCompletion => Source::Format(Format::PromptCompletion),
        FromArg::ConversationalPromptCompletion => {
            Source::Format(Format::ConversationalPromptCompletion)
        }
    };
    if from == Source::Columns && column_map.is_empty() {
        return usage_error("--from columns needs at least one --map KEY=COLUMN, such as --map prompt=question --map completion=answer");
    }
    if args.system.is_some() && to == Format::Text {
        return usage_error("--system has no place in --to text rows; convert to messages or a prompt-completion format instead");
    }
    if let Err(e) = sft_io::write::OutputFormat::from_path(&args.output) {
        return usage_error(e);
    }
    let inputs = match find_files(&args.inputs) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if let Some(clash) = inputs.iter().find(|f| same_file(&f.path, &args.output)) {
        return usage_error(format_args!(
            "the output {} is also an input; write to another file",
            clash.display
        ));
    }
    let job = ConvertJob {
        inputs,
        read: ReadOptions {
            text_split: args.input.text_split.clone(),
        },
        options: ConvertOptions {
            from,
            to,
            system: args.system.clone(),
            column_map,
        },
        output: args.output.clone(),
        rejects: args.rejects.clone(),
        progress: ByteCounter::default(),
    };
    let total: u64 = job.inputs.iter().map(|f| f.size).sum();
    let result = {
        let _bar = Progress::start(&job.progress, total, args.input.quiet);
        convert(&job)
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sft-data: error: {e}");
            return EXIT_PROBLEMS;
        }
    };
    if !args.input.quiet {
        print_convert_summary(&summary, to);
    } else if !summary.unreadable_files.is_empty() {
        for f in &summary.unreadable_files {
            eprintln!("sft-data: error: {}: {}", f.location, f.reason);
        }
    }
    let failed = !summary.unreadable_files.is_empty()
        || (summary.rows_in > 0 && summary.written == 0)
        || (args.strict && summary.rejected > 0);
    if failed {
        EXIT_PROBLEMS
    } else {
        0
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn print_convert_summary(s: &ConvertSummary, to: Format) {
    println!(
        "converted {} rows in {:.2} s: {} written as {to} to {}, {} rejected",
        thousands(s.rows_in),
        s.seconds,
        thousands(s.written),
        s.output.display(),
        thousands(s.rejected)
    );
    for (code, n) in &s.reasons {
        println!("  rejected {code}: {}", thousands(*n));
    }
    for r in &s.first_rejects {
        println!("    {}: {}", r.location, r.reason);
    }
    for f in &s.unreadable_files {
        println!("  unreadable {}: {} ({})", f.location, f.reason, f.code);
    }
    if let Some(path) = &s.rejects_file {
        println!("rejects: {}", path.display());
    }
}
