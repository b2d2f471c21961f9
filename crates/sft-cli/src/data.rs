//! `sft-data`: check and convert datasets.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sft_dataset::check::{check, CheckOptions, TemplateCheck};
use sft_dataset::convert::{convert, ConvertJob};
use sft_dataset::counted;
use sft_dataset::prepare::{prepare, PrepareJob};
use sft_dataset::prepared::manifest_path;
use sft_dataset::render::{render, RenderJob};
use sft_dataset::show::{parse_rows, show_rows, to_html, to_terminal};
use sft_formats::convert::{ConvertOptions, Source};
use sft_formats::Format;
use sft_io::paths::Output;
use sft_io::{ByteCounter, DataFile, ReadOptions};
use sft_template::RenderOptions;
use sft_tokenize::{PackingStrategy, SftTokenizer, TokenizeOptions};

use crate::inputs::{
    find_files, find_inputs_for, load_token_check, refuse_unsafe_outputs, template_inputs,
    tokenizer_at, usage_error, InputArgs, TemplateArgs,
};
use crate::progress::Progress;
use crate::EXIT_PROBLEMS;

#[derive(Parser)]
#[command(
    name = "sft-data",
    version,
    about = "Check, convert, render and prepare supervised fine-tuning datasets",
    long_about = "Check, convert, render and prepare supervised fine-tuning datasets.\n\nExit codes: 0 success, 1 the data has problems, 2 the command is wrong."
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
    /// Render conversations through a chat template: one {"text"} or {"error"} line per row.
    Render(RenderArgs),
    /// Tokenize, mask labels, truncate and pack into a training-ready Parquet table.
    Prepare(PrepareArgs),
    /// Show examples as the model sees them, trained tokens marked (terminal or HTML).
    Show(ShowArgs),
    /// Mix sources by weight into one dataset, each row tagged with its source.
    Mix(crate::curate::MixArgs),
    /// A leak-free train/test split in the Hugging Face Hub layout.
    Split(crate::curate::SplitArgs),
    /// Drop rows by tokens, turns, check's issue codes or an expression (rejects kept).
    Filter(crate::curate::FilterArgs),
    /// Remove exact duplicates and near-duplicates (MinHash), keeping the first.
    Dedupe(crate::curate::DedupeArgs),
    /// Rows, tokens, turns, roles, scripts, tool use, lengths per source and format.
    Stats(crate::curate::StatsArgs),
}

#[derive(Args)]
struct ShowArgs {
    /// A data file.
    #[arg(value_name = "INPUT")]
    input: PathBuf,
    /// Tokenizer: a model folder or a tokenizer.json file.
    #[arg(
        long,
        value_name = "MODEL_DIR|tokenizer.json",
        alias = "model-name-or-path"
    )]
    tokenizer: PathBuf,
    /// Rows to show, 0-based, ends exclusive: 0..5, 7, 0..3,10 (default 0..5, or 0..200 with --html).
    #[arg(long, value_name = "RANGES")]
    rows: Option<String>,
    /// Write an HTML page instead of printing.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Mark token boundaries with |.
    #[arg(long)]
    boundaries: bool,
    /// Cut examples at N tokens, as prepare does.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    max_length: usize,
    /// Train only on completions (default: true for prompt-completion data).
    #[arg(long, value_name = "true|false")]
    completion_only_loss: Option<bool>,
    /// Train only on assistant turns.
    #[arg(long)]
    assistant_only_loss: bool,
    /// Colour on a terminal.
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorArg,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    input_args: InputArgs,
}

#[derive(Args)]
struct PrepareArgs {
    /// Input files or folders, in any of the four formats.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Tokenizer: a model folder (tokenizer.json, tokenizer_config.json, chat template) or
    /// a tokenizer.json file.
    #[arg(
        long,
        value_name = "MODEL_DIR|tokenizer.json",
        alias = "model-name-or-path"
    )]
    tokenizer: PathBuf,
    /// Output Parquet: input_ids, labels (-100 where not trained), completion_mask, and
    /// seq_lengths when packed.
    #[arg(short, long, value_name = "OUT.parquet")]
    output: PathBuf,
    /// Keep the first N tokens of each example (TRL's default 1024); with packing, the
    /// length of a packed row.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    max_length: usize,
    /// Pack examples into rows of --max-length: bfd (best fit over the whole dataset, longer
    /// examples cut), bfd_split (split instead of cut), wrapped (concatenate and cut); or
    /// TRL's way, `--packing` (true) with --packing-strategy. Default: none.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "STRATEGY|BOOL")]
    packing: Option<String>,
    /// With `--packing true`: bfd (default), bfd_split or wrapped.
    #[arg(long, value_name = "NAME")]
    packing_strategy: Option<String>,
    /// Train only on completions (default: true for prompt-completion data).
    #[arg(long, value_name = "true|false")]
    completion_only_loss: Option<bool>,
    /// Train only on assistant turns, for any chat template.
    #[arg(long)]
    assistant_only_loss: bool,
    /// The text column of text rows.
    #[arg(long, default_value = "text", value_name = "NAME")]
    dataset_text_field: String,
    /// Where unusable rows go (default: OUTPUT's name with .rejects.jsonl).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Fail (exit 1) on any rejected row or training warning.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
struct RenderArgs {
    /// Input files or folders of conversational rows (messages, or conversational
    /// prompt-completion).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output: JSON lines, one line per input row.
    #[arg(short, long, value_name = "OUT.jsonl")]
    output: PathBuf,
    /// End with the header of a new assistant turn (for generation; never for training).
    #[arg(long)]
    add_generation_prompt: bool,
    /// End inside the final message, so generation continues it.
    #[arg(long, conflicts_with = "add_generation_prompt")]
    continue_final_message: bool,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    input: InputArgs,
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
    /// Preference rows (chosen/rejected): the chosen reply becomes the target.
    Preference,
    /// KTO rows (label/kto_tag): desirable rows kept, undesirable ones rejected.
    Kto,
    Text,
    Messages,
    PromptCompletion,
    ConversationalPromptCompletion,
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
    /// Write a JSON report with every issue (the first --report-limit of each code).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Issues of one code listed in the report at most (the counts stay whole); 0 lists all.
    #[arg(long = "report-limit", value_name = "N", default_value_t = 10_000)]
    report_limit: u64,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    strict: bool,
    /// Evaluation data: report training rows that are also in it.
    #[arg(long, value_name = "PATH")]
    eval: Vec<PathBuf>,
    /// Colour in the summary.
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorArg,
    /// Tokenize every row with this tokenizer (model folder or tokenizer.json): token
    /// statistics, rows that would be truncated, a packing preview.
    #[arg(long, value_name = "MODEL_DIR|tokenizer.json")]
    tokenizer: Option<PathBuf>,
    /// With --tokenizer: the length training cuts at and packs to.
    #[arg(long, default_value_t = 1024, value_name = "N", requires = "tokenizer", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    max_length: usize,
    #[command(flatten)]
    template: TemplateArgs,
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

pub(crate) fn output_flag(path: &std::path::Path) -> Output {
    Output::new(path, "the output (-o)", "write to another file with -o")
}

/// The rejects file of a job writing `output`: --rejects, or the default beside the output.
fn rejects_output(rejects: Option<&PathBuf>, output: &std::path::Path) -> Output {
    match rejects {
        Some(path) => Output::new(
            path,
            "the rejects file (--rejects)",
            "pass --rejects with another path",
        ),
        None => Output::new(
            sft_dataset::convert::default_rejects_path(output),
            "the default rejects file (the output's name with .rejects.jsonl)",
            "pass --rejects FILE to put the rejected rows elsewhere, or choose another -o",
        ),
    }
}

pub fn main() -> i32 {
    let args = match crate::flags::normalise(std::env::args().collect(), '-') {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let cli: Cli = match crate::parse_flags(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // Ctrl-C, SIGTERM or SIGUSR1 remove the temporary files of unfinished outputs and
    // exit with 128 + the signal; finished outputs are complete, as they are renamed into
    // place only when whole.
    crate::signals::on_stop(|signal, _| {
        let removed = sft_io::write::remove_temporaries();
        eprintln!(
            "\nsft-data: interrupted by {}; no output was left half-written ({})",
            crate::signals::name(signal),
            counted(
                removed as u64,
                "temporary file removed",
                "temporary files removed"
            )
        );
        std::process::exit(crate::signals::exit_code(signal));
    });
    match cli.command {
        Command::Check(args) => run_check(args),
        Command::Convert(args) => run_convert(args),
        Command::Render(args) => run_render(args),
        Command::Prepare(args) => run_prepare(args),
        Command::Show(args) => run_show(args),
        Command::Mix(args) => crate::curate::run_mix(args),
        Command::Split(args) => crate::curate::run_split(args),
        Command::Filter(args) => crate::curate::run_filter(args),
        Command::Dedupe(args) => crate::curate::run_dedupe(args),
        Command::Stats(args) => crate::curate::run_stats(args),
    }
}

fn run_check(args: CheckArgs) -> i32 {
    let files = match find_files(&args.paths, &args.input) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let eval = if args.eval.is_empty() {
        Vec::new()
    } else {
        match find_files(&args.eval, &args.input) {
            Ok(f) => f,
            Err(code) => return code,
        }
    };
    if let Some(report) = &args.report {
        let mut inputs = files.clone();
        inputs.extend(eval.iter().cloned());
        let mut extra_inputs = template_inputs(&args.template);
        extra_inputs.extend(args.tokenizer.iter().cloned());
        let report = Output::new(
            report,
            "the report (--report)",
            "pass --report another path",
        );
        if let Err(code) = refuse_unsafe_outputs(&inputs, &[report], &extra_inputs) {
            return code;
        }
    }
    let template = match args.template.load(None) {
        Ok(t) => t.map(|(template, options)| TemplateCheck { template, options }),
        Err(e) => return usage_error(e),
    };
    let tokens = match &args.tokenizer {
        None => None,
        Some(path) => match load_token_check(path, &args.template, args.max_length) {
            Ok(t) => Some(t),
            Err(e) => return usage_error(e),
        },
    };
    let options = CheckOptions {
        template,
        tokens,
        format: args.format.format(),
        eval,
        read: ReadOptions {
            text_split: args.input.text_split.clone(),
        },
        keep_all_issues: args.report.is_some(),
        issues_per_code: (args.report_limit > 0).then_some(args.report_limit),
        progress: ByteCounter::default(),
        flat_memory_rows: None,
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
            let left_out: u64 = report.issues_left_out.values().sum();
            if left_out > 0 {
                println!(
                    "  it lists the first {} issues of each code; {} more are counted but not listed (--report-limit 0 lists every issue)",
                    sft_dataset::text::thousands(args.report_limit),
                    sft_dataset::text::thousands(left_out)
                );
            }
        }
    }
    if report.passed(args.strict) {
        0
    } else {
        EXIT_PROBLEMS
    }
}

fn run_convert(args: ConvertArgs) -> i32 {
    let to = match args.to {
        ToArg::Text => Format::Text,
        ToArg::Messages => Format::Messages,
        ToArg::PromptCompletion => Format::PromptCompletion,
        ToArg::ConversationalPromptCompletion => Format::ConversationalPromptCompletion,
    };
    let column_map = match sft_formats::convert::parse_column_map(&args.map) {
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
        FromArg::Preference => Source::Preference,
        FromArg::Kto => Source::Kto,
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
    let outputs = [
        output_flag(&args.output),
        rejects_output(args.rejects.as_ref(), &args.output),
    ];
    let inputs = match find_inputs_for(&args.inputs, &args.input, &outputs, &[]) {
        Ok(f) => f,
        Err(code) => return code,
    };
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
    let summary = match with_progress(&job.progress, &job.inputs, args.input.quiet, || {
        convert(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.input.quiet {
        print!("{}", summary.text(to));
    } else if !summary.unreadable_files.is_empty() {
        for f in &summary.unreadable_files {
            eprintln!("sft-data: error: {}: {}", f.location, f.reason);
        }
    }
    if !summary.output_written {
        eprintln!(
            "sft-data: error: nothing written to {}: an input could not be read to its end",
            summary.output.display()
        );
    }
    let failed = !summary.unreadable_files.is_empty()
        || !summary.output_written
        || (summary.rows_in > 0 && summary.written == 0)
        || (args.strict && summary.rejected > 0);
    if failed {
        EXIT_PROBLEMS
    } else {
        0
    }
}

/// Runs a job with a progress bar over its inputs; a job error (an output that cannot be
/// written) is printed and becomes exit 1.
fn with_progress<T, E: std::fmt::Display>(
    counter: &ByteCounter,
    inputs: &[DataFile],
    quiet: bool,
    job: impl FnOnce() -> Result<T, E>,
) -> Result<T, i32> {
    let total: u64 = inputs.iter().map(|f| f.size).sum();
    let result = {
        let _bar = Progress::start(counter, total, quiet);
        job()
    };
    result.map_err(|e| {
        eprintln!("sft-data: error: {e}");
        EXIT_PROBLEMS
    })
}

fn run_render(args: RenderArgs) -> i32 {
    let (template, mut options) = match args.template.load(None) {
        Ok(Some(t)) => t,
        Ok(None) => return usage_error("render needs --chat-template NAME|PATH|MODEL_DIR"),
        Err(e) => return usage_error(e),
    };
    options.add_generation_prompt = args.add_generation_prompt;
    options.continue_final_message = args.continue_final_message;
    let inputs = match find_inputs_for(
        &args.inputs,
        &args.input,
        &[output_flag(&args.output)],
        &template_inputs(&args.template),
    ) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let job = RenderJob {
        inputs,
        read: ReadOptions {
            text_split: args.input.text_split.clone(),
        },
        template,
        options,
        output: args.output.clone(),
        progress: ByteCounter::default(),
    };
    let summary = match with_progress(&job.progress, &job.inputs, args.input.quiet, || {
        render(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.input.quiet {
        print!("{}", summary.text(job.template.name(), &args.output));
    }
    for (file, error) in &summary.unreadable_files {
        eprintln!("sft-data: error: {file}: {error}");
    }
    if summary.errors > 0 || !summary.unreadable_files.is_empty() {
        EXIT_PROBLEMS
    } else {
        0
    }
}

fn run_prepare(args: PrepareArgs) -> i32 {
    if args.output.extension().and_then(|e| e.to_str()) != Some("parquet") {
        return usage_error(format_args!(
            "{}: the output of prepare is a .parquet file",
            args.output.display()
        ));
    }
    if args.max_length == 0 {
        return usage_error("--max-length must be at least 1");
    }
    let packing = match PackingStrategy::from_flags(
        args.packing.as_deref(),
        args.packing_strategy.as_deref(),
    ) {
        Ok((true, strategy)) => Some(strategy),
        Ok((false, _)) => None,
        Err(e) => return usage_error(e.message('-')),
    };
    let tokenizer = match tokenizer_at(&args.tokenizer)
        .and_then(|p| SftTokenizer::from_path(&p).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let (template, render) = match args.template.load(Some(&tokenizer)) {
        Ok(Some((t, o))) => (Some(t), o),
        Ok(None) => (None, RenderOptions::default()),
        Err(e) => return usage_error(e),
    };
    let outputs = [
        output_flag(&args.output),
        rejects_output(args.rejects.as_ref(), &args.output),
        Output::new(
            manifest_path(&args.output),
            "the manifest (the output's name with .manifest.json)",
            "choose another -o",
        ),
    ];
    let mut extra_inputs = template_inputs(&args.template);
    extra_inputs.push(args.tokenizer.clone());
    let inputs = match find_inputs_for(&args.inputs, &args.input, &outputs, &extra_inputs) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let job = PrepareJob {
        inputs,
        read: ReadOptions {
            text_split: args.input.text_split.clone(),
        },
        tokenizer,
        template,
        options: TokenizeOptions {
            max_length: Some(args.max_length),
            completion_only_loss: args.completion_only_loss,
            assistant_only_loss: args.assistant_only_loss,
            text_field: args.dataset_text_field.clone(),
            render,
        },
        packing,
        output: args.output.clone(),
        rejects: args.rejects.clone(),
        progress: ByteCounter::default(),
    };
    let s = match with_progress(&job.progress, &job.inputs, args.input.quiet, || {
        prepare(&job)
    }) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !s.output_written || !args.input.quiet {
        print!("{}", s.text(&args.output, args.max_length));
    }
    for (file, error) in &s.unreadable_files {
        eprintln!("sft-data: error: {file}: {error}");
    }
    let failed = !s.unreadable_files.is_empty()
        || !s.output_written
        || s.examples == 0
        || (args.strict && (s.rejected > 0 || !s.warnings.is_empty()));
    if failed {
        EXIT_PROBLEMS
    } else {
        0
    }
}

fn run_show(args: ShowArgs) -> i32 {
    let rows = match parse_rows(args.rows.as_deref().unwrap_or(if args.html.is_some() {
        "0..200"
    } else {
        "0..5"
    })) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    let mut check = match load_token_check(&args.tokenizer, &args.template, args.max_length) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    check.options.max_length = Some(args.max_length);
    check.options.completion_only_loss = args.completion_only_loss;
    check.options.assistant_only_loss = args.assistant_only_loss;
    let file = match find_files(std::slice::from_ref(&args.input), &args.input_args) {
        Ok(mut f) if f.len() == 1 => f.remove(0),
        Ok(_) => return usage_error("show takes one data file"),
        Err(code) => return code,
    };
    if let Some(html) = &args.html {
        let mut extra_inputs = template_inputs(&args.template);
        extra_inputs.push(args.tokenizer.clone());
        let html = Output::new(html, "the HTML page (--html)", "pass --html another path");
        if let Err(code) =
            refuse_unsafe_outputs(std::slice::from_ref(&file), &[html], &extra_inputs)
        {
            return code;
        }
    }
    let read = ReadOptions {
        text_split: args.input_args.text_split.clone(),
    };
    let shown = match show_rows(
        &file,
        &read,
        &check.tokenizer,
        check.template.as_ref(),
        &check.options,
        &rows,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sft-data: error: {e}");
            return EXIT_PROBLEMS;
        }
    };
    if shown.is_empty() {
        eprintln!(
            "sft-data: error: {}: no rows in {}",
            file.display,
            args.rows.as_deref().unwrap_or("0..5")
        );
        return EXIT_PROBLEMS;
    }
    match &args.html {
        Some(path) => {
            let title = format!("{} as {} sees it", file.display, args.tokenizer.display());
            if let Err(e) = sft_io::write::write_atomic(
                path,
                to_html(&shown, &title, args.boundaries).as_bytes(),
            ) {
                eprintln!("sft-data: error: {e}");
                return EXIT_PROBLEMS;
            }
            println!("{} rows: {}", shown.len(), path.display());
        }
        None => {
            let color = match args.color {
                ColorArg::Always => true,
                ColorArg::Never => false,
                ColorArg::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            print!("{}", to_terminal(&shown, color, args.boundaries));
        }
    }
    if shown.iter().any(|r| r.error.is_some()) {
        EXIT_PROBLEMS
    } else {
        0
    }
}
