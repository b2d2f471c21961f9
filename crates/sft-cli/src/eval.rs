//! `sft-eval`: score checkpoints in batch jobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use serde_json::Value;
use sft_eval::evaluate::{evaluate, EvalEvent, EvalOptions, Expectations, Gates, Sampling};
use sft_eval::outputs::{resolve_checkpoint, EvalOutputs, EvalReads};
use sft_eval::report::{markdown, CheckpointReport};
use sft_tokenize::TokenizeOptions;

use crate::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "sft-eval",
    version,
    allow_negative_numbers = true,
    about = "Score checkpoints: held-out loss, generated samples checked for format compliance and repetition, a diagnosis of the loss curves",
    long_about = "Score checkpoints: held-out loss and perplexity (rendered and masked as in training), \
generated samples (prompts rendered with add_generation_prompt=True) checked for format compliance \
and repetition against the references, and a diagnosis of a run's loss curves.\n\n\
Gates (--max-loss, --min-compliance, --max-repetition) apply to the best checkpoint (lowest held-out loss).\n\n\
Exit codes: 0 every gate passed, 1 a gate failed or the evaluation could not run, 2 the command is wrong."
)]
struct EvalArgs {
    /// Checkpoint folders (Hugging Face model folders, or LoRA adapter folders) to score,
    /// or Hub model ids OWNER/NAME (where no local folder of that name exists: the shared
    /// cache first, then the Hub; HF_HUB_OFFLINE=1 for the cache only).
    #[arg(long, num_args = 1.., value_name = "DIR|OWNER/NAME", alias = "model-name-or-path")]
    checkpoint: Vec<PathBuf>,
    /// The branch, tag or commit of --checkpoint Hub ids (default: main).
    #[arg(long = "model-revision", value_name = "REV")]
    model_revision: Option<String>,
    /// The base model of LoRA adapter checkpoints (default: the adapter's
    /// base_model_name_or_path, a folder or a model in the local Hugging Face cache).
    #[arg(long = "base-model", value_name = "DIR|OWNER/NAME")]
    base_model: Option<String>,
    /// A training output folder: every checkpoint-N in it and the final model; its
    /// trainer_state.json or metrics.jsonl is diagnosed.
    #[arg(long, value_name = "OUTPUT_DIR")]
    run: Option<PathBuf>,
    /// Held-out data in any of the four formats (or a prepared .parquet for loss only), or
    /// a Hub dataset OWNER/NAME (where no local path of that name exists; its
    /// --dataset-split, from the shared cache or downloaded into it).
    #[arg(long, value_name = "PATH|OWNER/NAME")]
    dataset: PathBuf,
    /// Of a Hub dataset: the split scored.
    #[arg(long, value_name = "NAME", default_value = "test")]
    dataset_split: String,
    /// Of a Hub dataset: the config (a `configs:` name of its card).
    #[arg(long, value_name = "NAME")]
    dataset_config: Option<String>,
    /// Write the JSON report here.
    #[arg(long, value_name = "OUT.json")]
    report: Option<PathBuf>,
    /// Write a Markdown summary here.
    #[arg(long, value_name = "OUT.md")]
    markdown: Option<PathBuf>,
    /// Write SVG plots (loss curves, metrics per checkpoint) into this folder.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Generate for the first N rows that have a prompt (0: no generation).
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_samples: usize,
    #[arg(long, default_value_t = 128, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    max_new_tokens: usize,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0, value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    temperature: f64,
    #[arg(long, default_value_t = 1.0, value_parser = crate::flags::range::top_p, allow_hyphen_values = true)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rows per batch, for scoring and generation.
    #[arg(
        long,
        default_value_t = 8,
        value_name = "N",
        alias = "per-device-eval-batch-size",
        value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    batch_size: usize,
    /// Tokens per held-out example (as in training).
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    max_length: usize,
    #[arg(long, value_name = "true|false")]
    completion_only_loss: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    assistant_only_loss: Option<bool>,
    #[arg(long, default_value = "text", value_name = "NAME")]
    dataset_text_field: String,
    /// Chat template for rendering (default: the checkpoint's own).
    #[arg(long, value_name = "NAME|PATH", alias = "chat-template-path")]
    chat_template: Option<String>,
    /// Every reply must be JSON (`json`); also on when the reference is JSON.
    #[arg(long, value_name = "json")]
    expect: Option<String>,
    /// Every reply must be JSON following this schema.
    #[arg(long, value_name = "FILE.json")]
    json_schema: Option<PathBuf>,
    /// Every reply must match this pattern somewhere.
    #[arg(long, value_name = "PATTERN")]
    expect_regex: Option<String>,
    #[arg(long, value_name = "N")]
    min_chars: Option<usize>,
    #[arg(long, value_name = "N")]
    max_chars: Option<usize>,
    /// Fail (exit 1) when the best held-out loss is above this.
    #[arg(long, value_name = "LOSS", value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    max_loss: Option<f64>,
    /// Fail when the best checkpoint's share of samples passing every check is below this.
    #[arg(long, value_name = "RATE", value_parser = crate::flags::range::ratio, allow_hyphen_values = true)]
    min_compliance: Option<f64>,
    /// Fail when the best checkpoint's share of repetitive samples is above this.
    #[arg(long, value_name = "SHARE", value_parser = crate::flags::range::ratio, allow_hyphen_values = true)]
    max_repetition: Option<f64>,
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn usage_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-eval: error: {message}");
    EXIT_USAGE
}

fn run_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-eval: error: {message}");
    EXIT_PROBLEMS
}

pub fn main() -> i32 {
    let args = match crate::flags::normalise(std::env::args().collect(), '-') {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let args: EvalArgs = match crate::parse_flags(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(args) {
        Ok(code) => code,
        Err(code) => code,
    }
}

fn run(mut args: EvalArgs) -> Result<i32, i32> {
    // Hub ids become the snapshot folders they resolve to.
    for checkpoint in &mut args.checkpoint {
        *checkpoint =
            resolve_checkpoint(checkpoint, args.model_revision.as_deref()).map_err(usage_error)?;
    }
    let name = args.dataset.to_string_lossy().into_owned();
    let dataset_files =
        sft_hub::dataset_split_files(&name, args.dataset_config.as_deref(), &args.dataset_split)
            .map_err(|e| usage_error(format_args!("--dataset {name}: {e}")))?;
    if args.expect.as_deref().is_some_and(|e| e != "json") {
        return Err(usage_error("--expect takes `json`"));
    }
    let json_schema = match &args.json_schema {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| usage_error(format_args!("{}: {e}", path.display())))
                .and_then(|t| {
                    serde_json::from_str::<Value>(&t)
                        .map_err(|e| usage_error(format_args!("{}: not JSON: {e}", path.display())))
                })?,
        ),
        None => None,
    };
    let outputs = EvalOutputs {
        report: args.report.clone(),
        markdown: args.markdown.clone(),
        plots: args.plots.clone(),
    };
    let temp = tempfile::tempdir().map_err(|e| run_error(format_args!("temporary folder: {e}")))?;
    let work_dir = outputs.work_dir(temp.path());
    let reads = EvalReads {
        checkpoints: &args.checkpoint,
        run: args.run.as_deref(),
        dataset: &args.dataset,
        base_model: args.base_model.as_deref().map(Path::new),
    };
    outputs.check(reads, &work_dir).map_err(usage_error)?;
    let options = EvalOptions {
        checkpoints: args.checkpoint.clone(),
        base_model: args.base_model.clone(),
        run: args.run.clone(),
        dataset: args.dataset.clone(),
        dataset_files,
        work_dir,
        batch_size: args.batch_size,
        tokenize: TokenizeOptions {
            max_length: Some(args.max_length),
            completion_only_loss: args.completion_only_loss,
            assistant_only_loss: args.assistant_only_loss.unwrap_or(false),
            text_field: args.dataset_text_field.clone(),
            render: Default::default(),
        },
        chat_template: args.chat_template.clone(),
        sampling: Sampling {
            max_samples: args.max_samples,
            max_new_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            seed: args.seed,
        },
        expect: Expectations {
            json: args.expect.is_some(),
            json_schema,
            pattern: args.expect_regex.clone(),
            min_chars: args.min_chars,
            max_chars: args.max_chars,
        },
        device: sft_model::device::default_device(),
    };
    // A stop signal (Ctrl-C, SIGTERM, SIGUSR1) keeps what was scored: the report (and the
    // summary) of the checkpoints done so far is written, then the job exits with 128 + the
    // signal. The checkpoint in progress is abandoned.
    let scored: Arc<Mutex<Vec<CheckpointReport>>> = Arc::default();
    // Set once the whole report is being written: a signal then no longer replaces it.
    static FINISHING: AtomicBool = AtomicBool::new(false);
    {
        let scored = Arc::clone(&scored);
        let (report, markdown_path) = (args.report.clone(), args.markdown.clone());
        let dataset = args.dataset.display().to_string();
        crate::signals::on_stop(move |signal, first| {
            if !first || FINISHING.load(Ordering::SeqCst) {
                return;
            }
            sft_io::write::remove_temporaries();
            let done = scored.lock().map(|s| s.clone()).unwrap_or_default();
            let why = format!("stopped by {}", crate::signals::name(signal));
            let partial = sft_eval::report::Report::interrupted(&dataset, done, why);
            let mut kept = Vec::new();
            if let Some(path) = &report {
                if partial.write_json(path).is_ok() {
                    kept.push(path.display().to_string());
                }
            }
            if let Some(path) = &markdown_path {
                if sft_io::write::write_atomic(path, markdown(&partial).as_bytes()).is_ok() {
                    kept.push(path.display().to_string());
                }
            }
            eprintln!(
                "\nsft-eval: stopped by {} after {} checkpoint(s){}",
                crate::signals::name(signal),
                partial.checkpoints.len(),
                if kept.is_empty() {
                    String::new()
                } else {
                    format!("; their report is in {}", kept.join(" and "))
                }
            );
            std::process::exit(crate::signals::exit_code(signal));
        });
    }
    let quiet = args.quiet;
    let batch_size = args.batch_size;
    let mut on = |event: EvalEvent| match event {
        EvalEvent::Rows(loaded) => {
            if !quiet {
                for line in loaded.describe("heldout") {
                    eprintln!("{line}");
                }
            }
        }
        EvalEvent::Note(note) => eprintln!("sft-eval: note: {note}"),
        EvalEvent::Checkpoint { report, seconds } => {
            if let Ok(mut done) = scored.lock() {
                done.push(report.clone());
            }
            if let Some(h) = report
                .heldout
                .as_ref()
                .filter(|h| h.batch_size < batch_size)
            {
                eprintln!(
                    "sft-eval: note: {}: scored {} rows a batch instead of {batch_size}: larger batches would not fit in the memory available",
                    report.path, h.batch_size
                );
            }
            if !quiet {
                eprintln!("{} ({seconds:.1} s)", report.progress_line());
            }
        }
    };
    let mut report = evaluate(&options, &mut on).map_err(|e| {
        if e.is_usage() {
            usage_error(e)
        } else {
            run_error(e)
        }
    })?;
    report.apply_gates(&Gates {
        max_loss: args.max_loss,
        min_compliance: args.min_compliance,
        max_repetition: args.max_repetition,
    });
    FINISHING.store(true, Ordering::SeqCst);
    let md = markdown(&report);
    if let Some(path) = &args.report {
        report.write_json(path).map_err(run_error)?;
    }
    if let Some(path) = &args.markdown {
        sft_io::write::write_atomic(path, md.as_bytes()).map_err(run_error)?;
    }
    if let Some(dir) = &args.plots {
        sft_eval::evaluate::write_plots(&report, args.run.as_deref(), dir).map_err(run_error)?;
    }
    if !args.quiet {
        println!("{md}");
    }
    Ok(if report.passed { 0 } else { EXIT_PROBLEMS })
}
