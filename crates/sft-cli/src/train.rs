//! `sft-train`: fine-tune a llama-family model with TRL's flag names.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Device;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sft_tokenize::{PackingStrategy, TokenizeOptions};

use sft_train::config::{HealthPolicy, Strategy};
use sft_train::data::DataPlan;
use sft_train::job::{
    export_gguf, merge_adapter, HubFlags, JobError, LoraFlags, MemorySettings, TrainJob,
    TrainRequest,
};
use sft_train::schedule::ScheduleKind;
use sft_train::{Event, Outcome, TrainConfig};

use crate::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "sft-train",
    version,
    about = "Supervised fine-tuning of llama-family models (SmolLM2, TinyLlama, Llama 3) on the CPU, with TRL's flag names",
    long_about = "Supervised fine-tuning of llama-family models with TRL's flag names.\n\n\
Data: any of the four SFT formats (prepared on the fly: chat template, tokenization, label \
masks, packing, exactly as `sft-data prepare`), or a Parquet table written by `sft-data prepare`.\n\
Output: OUTPUT_DIR/checkpoint-N folders and the final model (Hugging Face folders that \
transformers loads), trainer_state.json, metrics.jsonl, loss.svg.\n\n\
Flags may also come from --config FILE.yaml (same names); the command line wins. Both \
--flag_name and --flag-name are accepted.\n\n\
Signals: Ctrl-C (SIGINT), SIGTERM and SIGUSR1 finish the step, save a checkpoint (the log \
says how long it took) and exit; --resume_from_checkpoint continues exactly.\n\n\
Exit codes: 0 done, 1 the run failed (bad data, a non-finite loss, a run that cannot learn), \
2 the command is wrong, 130 / 143 / 138 stopped by SIGINT / SIGTERM / SIGUSR1 after saving a \
checkpoint.",
    args_override_self = true,
    allow_negative_numbers = true
)]
struct TrainArgs {
    /// Model folder (config.json, model.safetensors, tokenizer files), or a Hub model id
    /// OWNER/NAME (the local Hugging Face cache first, then the Hub; HF_HUB_OFFLINE=1 for the
    /// cache only).
    #[arg(long = "model_name_or_path", value_name = "DIR|OWNER/NAME")]
    model_name_or_path: Option<String>,
    /// The Hub model's branch, tag or commit (default: main).
    #[arg(long = "model_revision", value_name = "REV")]
    model_revision: Option<String>,
    /// Training data: files or a folder in any of the four formats, a prepared .parquet, or
    /// a Hub dataset OWNER/NAME (where no local path of that name exists) or
    /// hf://datasets/OWNER/NAME[@REV][/PATH].
    #[arg(long = "dataset_name", value_name = "PATH|OWNER/NAME")]
    dataset_name: Option<PathBuf>,
    /// A Hub dataset's config (a `configs:` name of its card; default: the card's default).
    #[arg(long = "dataset_config", value_name = "NAME")]
    dataset_config: Option<String>,
    /// Evaluation data (same kinds as --dataset_name; of a Hub dataset, the
    /// --dataset_test_split split, else `test`).
    #[arg(long = "eval_dataset", value_name = "PATH|OWNER/NAME")]
    eval_dataset: Option<PathBuf>,
    /// With a DatasetDict folder: the training split's subfolder; with a Hub dataset, the split.
    #[arg(
        long = "dataset_train_split",
        default_value = "train",
        value_name = "NAME"
    )]
    dataset_train_split: String,
    /// With a DatasetDict folder or a Hub dataset: the split to evaluate on.
    #[arg(long = "dataset_test_split", value_name = "NAME")]
    dataset_test_split: Option<String>,
    /// Where checkpoints, the final model and the logs go.
    #[arg(long = "output_dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
    #[arg(
        long = "per_device_train_batch_size",
        default_value_t = 8,
        value_name = "N",
        value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    per_device_train_batch_size: usize,
    #[arg(
        long = "per_device_eval_batch_size",
        default_value_t = 8,
        value_name = "N",
        value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    per_device_eval_batch_size: usize,
    #[arg(
        long = "gradient_accumulation_steps",
        default_value_t = 1,
        value_name = "N",
        value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    gradient_accumulation_steps: usize,
    #[arg(long = "learning_rate", default_value_t = 2e-5, value_name = "LR", value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    learning_rate: f64,
    #[arg(long = "num_train_epochs", default_value_t = 3.0, value_name = "N", value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    num_train_epochs: f64,
    /// Optimizer steps; overrides --num_train_epochs when positive.
    #[arg(long = "max_steps", default_value_t = -1, allow_hyphen_values = true, value_name = "N", value_parser = crate::flags::range::max_steps)]
    max_steps: i64,
    /// linear, cosine, constant, constant_with_warmup.
    #[arg(
        long = "lr_scheduler_type",
        default_value = "linear",
        value_name = "NAME"
    )]
    lr_scheduler_type: String,
    /// Warmup steps; a value below 1 is a ratio of the total (transformers 5).
    #[arg(long = "warmup_steps", default_value_t = 0.0, value_name = "N", value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    warmup_steps: f64,
    /// Warmup as a ratio of the total steps (transformers 4's name).
    #[arg(long = "warmup_ratio", value_name = "R", value_parser = crate::flags::range::ratio, allow_hyphen_values = true)]
    warmup_ratio: Option<f64>,
    #[arg(long = "weight_decay", default_value_t = 0.0, value_name = "W", value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    weight_decay: f64,
    #[arg(long = "adam_beta1", default_value_t = 0.9, value_parser = crate::flags::range::below_one, allow_hyphen_values = true)]
    adam_beta1: f64,
    #[arg(long = "adam_beta2", default_value_t = 0.999, value_parser = crate::flags::range::below_one, allow_hyphen_values = true)]
    adam_beta2: f64,
    #[arg(long = "adam_epsilon", default_value_t = 1e-8, value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    adam_epsilon: f64,
    /// Global gradient-norm clipping (0 turns it off).
    #[arg(long = "max_grad_norm", default_value_t = 1.0, value_parser = crate::flags::range::non_negative, allow_hyphen_values = true)]
    max_grad_norm: f64,
    #[arg(long = "logging_steps", default_value_t = 10, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    logging_steps: usize,
    /// steps, epoch or no.
    #[arg(long = "save_strategy", default_value = "steps")]
    save_strategy: String,
    #[arg(long = "save_steps", default_value_t = 500, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    save_steps: usize,
    /// Keep at most N checkpoints (the best one is never deleted).
    #[arg(long = "save_total_limit", value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    save_total_limit: Option<usize>,
    /// no, steps or epoch.
    #[arg(long = "eval_strategy", default_value = "no")]
    eval_strategy: String,
    /// Evaluate every N steps (default: --logging_steps).
    #[arg(long = "eval_steps", value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    eval_steps: Option<usize>,
    #[arg(long = "seed", default_value_t = 42)]
    seed: u64,
    /// none or trackio (metrics.jsonl is always written).
    #[arg(long = "report_to", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    report_to: Vec<String>,
    #[arg(long = "run_name", value_name = "NAME")]
    run_name: Option<String>,
    /// The Trackio project the run is logged to (transformers' `project`).
    #[arg(long = "project", default_value = "huggingface", value_name = "NAME")]
    project: String,
    /// Continue from a checkpoint folder, or from the latest in --output_dir without a path.
    #[arg(long = "resume_from_checkpoint", num_args = 0..=1, default_missing_value = "latest", value_name = "PATH")]
    resume_from_checkpoint: Option<String>,
    /// Tokens per example (or per packed row).
    #[arg(long = "max_length", default_value_t = 1024, value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    max_length: usize,
    /// Pack examples into rows of --max_length: `--packing` (or true) with
    /// --packing_strategy, or the strategy itself (`--packing bfd`).
    #[arg(long = "packing", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL|STRATEGY")]
    packing: Option<String>,
    /// bfd (default), bfd_split or wrapped.
    #[arg(long = "packing_strategy", value_name = "NAME")]
    packing_strategy: Option<String>,
    /// Pack the eval set too (default: as --packing, as TRL). Packed documents do not attend
    /// to each other, so with bfd the eval loss is the same, with less padding computed.
    #[arg(long = "eval_packing", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    eval_packing: Option<bool>,
    #[arg(long = "completion_only_loss", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    completion_only_loss: Option<bool>,
    #[arg(long = "assistant_only_loss", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    assistant_only_loss: Option<bool>,
    #[arg(long = "dataset_text_field", default_value = "text")]
    dataset_text_field: String,
    /// Stop after N evaluations without a better eval_loss.
    #[arg(long = "early_stopping_patience", value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    early_stopping_patience: Option<usize>,
    #[arg(long = "load_best_model_at_end", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    load_best_model_at_end: Option<bool>,
    /// Chat template to render conversations with (default: the model's own).
    #[arg(long = "chat_template_path", value_name = "NAME|PATH")]
    chat_template_path: Option<String>,
    /// Shuffle the training rows each epoch (seeded).
    #[arg(long = "shuffle", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    shuffle: bool,
    /// Push the final model (and checkpoints, per --hub_strategy) with a model card to the
    /// Hub repo --hub_model_id, created if missing. Needs a write token (HF_TOKEN, the token
    /// file, or --hub_token).
    #[arg(long = "push_to_hub", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    push_to_hub: Option<bool>,
    /// The Hub repo to push to.
    #[arg(long = "hub_model_id", value_name = "OWNER/NAME")]
    hub_model_id: Option<String>,
    /// Create the repo private (when this push creates it).
    #[arg(long = "hub_private_repo", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    hub_private_repo: Option<bool>,
    /// every_save (default, as transformers: each checkpoint's model too), end, checkpoint
    /// (also the whole latest checkpoint in last-checkpoint/) or all_checkpoints.
    #[arg(long = "hub_strategy", value_name = "NAME")]
    hub_strategy: Option<String>,
    /// The token to push with (wins over HF_TOKEN and the token file).
    #[arg(long = "hub_token", value_name = "TOKEN")]
    hub_token: Option<String>,
    /// The branch to push to (created from main if missing; default: main).
    #[arg(long = "hub_revision", value_name = "BRANCH")]
    hub_revision: Option<String>,
    /// Do not train: push the finished --output_dir as the end of a run does (to retry a
    /// failed push). Takes --hub_model_id and the other --hub_ flags.
    #[arg(long = "push_only")]
    push_only: bool,
    /// Only `false` is accepted: the CPU trains in float32.
    #[arg(long = "bf16", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    bf16: Option<bool>,
    /// Recompute each decoder layer's forward during the backward instead of keeping its
    /// activations (on by default, as TRL): the same gradients in a fraction of the memory,
    /// for about a third more compute.
    #[arg(long = "gradient_checkpointing", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    gradient_checkpointing: Option<bool>,
    /// Print the memory plan (predicted peak: weights, gradients, AdamW moments,
    /// activations, loss chunks) and exit without loading the weights or the data.
    #[arg(long = "dry_run")]
    dry_run: bool,
    /// Stop before loading the data when the memory plan exceeds the machine's available
    /// memory (MemAvailable); `false` runs anyway.
    #[arg(long = "memory_check", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    memory_check: bool,
    /// Train LoRA adapters (PEFT) on the frozen base instead of every weight.
    #[arg(long = "use_peft", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    use_peft: Option<bool>,
    /// LoRA rank (default 16).
    #[arg(long = "lora_r", value_name = "N", value_parser = crate::flags::range::positive, allow_hyphen_values = true)]
    lora_r: Option<usize>,
    /// LoRA alpha: the adapters' output is scaled by alpha / r (default 32).
    #[arg(long = "lora_alpha", value_name = "A", value_parser = crate::flags::range::above_zero, allow_hyphen_values = true)]
    lora_alpha: Option<f64>,
    /// Dropout on the adapters' input (default 0.05), seeded.
    #[arg(long = "lora_dropout", value_name = "P", value_parser = crate::flags::range::below_one, allow_hyphen_values = true)]
    lora_dropout: Option<f64>,
    /// Projections to adapt: names (q_proj,v_proj,...) or all-linear (default: PEFT's for
    /// the model type, q_proj and v_proj for llama, mistral, qwen2, qwen3).
    #[arg(long = "lora_target_modules", value_name = "NAMES", num_args = 1.., value_delimiter = ',')]
    lora_target_modules: Vec<String>,
    /// Scale the adapters by alpha / sqrt(r) (rank-stabilised LoRA).
    #[arg(long = "use_rslora", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    use_rslora: Option<bool>,
    /// Only CAUSAL_LM (the one task this trainer has).
    #[arg(long = "lora_task_type", value_name = "TYPE")]
    lora_task_type: Option<String>,
    /// Merge a LoRA adapter folder into its base and write the full model to --output_dir
    /// (the base: --model_name_or_path, else the adapter's base_model_name_or_path).
    #[arg(long = "merge_adapter", value_name = "ADAPTER_DIR")]
    merge_adapter: Option<PathBuf>,
    /// Export to GGUF for llama.cpp and Ollama: F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M
    /// (comma-separated). After training, the final model goes to OUTPUT_DIR/NAME-TYPE.gguf
    /// with a Modelfile; without --dataset_name, --model_name_or_path (a model folder, a
    /// checkpoint or a LoRA adapter, merged first) is exported to --output_dir and nothing
    /// is trained.
    #[arg(long = "export_gguf", value_name = "TYPE[,TYPE...]", value_delimiter = ',', value_parser = gguf_type)]
    export_gguf: Vec<sft_gguf::GgufType>,
    /// Use an --output_dir that holds another run: its checkpoints, logs and model are
    /// removed first (without it such a folder is refused unless the run resumes).
    #[arg(long = "overwrite_output_dir", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    overwrite_output_dir: bool,
    /// A run that cannot learn (gradients exactly zero, a model collapsed to the uniform
    /// distribution, a loss far above its start): `stop` (exit 1, keeping the last good
    /// checkpoint) or `warn` (say so and train on).
    #[arg(
        long = "health_checks",
        default_value = "stop",
        value_name = "stop|warn"
    )]
    health_checks: String,
    /// Flags from a YAML file of `name: value` lines (command-line flags win).
    #[arg(long = "config", value_name = "FILE.yaml")]
    config: Option<PathBuf>,
    /// No progress bar or log lines.
    #[arg(long = "quiet", short = 'q')]
    quiet: bool,
}

fn gguf_type(text: &str) -> Result<sft_gguf::GgufType, String> {
    text.trim()
        .parse()
        .map_err(|e: sft_gguf::GgufError| e.to_string())
}

fn usage_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-train: error: {message}");
    EXIT_USAGE
}

fn run_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("sft-train: error: {message}");
    EXIT_PROBLEMS
}

/// The command line with a --config file's flags in front (so the command line wins), in
/// the one flag language.
fn expand_args(mut args: Vec<String>) -> Result<Vec<String>, String> {
    let mut config = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--config=") {
            config = Some(PathBuf::from(v));
        } else if a == "--config" {
            config = args.get(i + 1).map(PathBuf::from);
        }
    }
    if let Some(path) = config {
        let flags = sft_train::config_file::yaml_flags(&path).map_err(|e| e.to_string())?;
        args.splice(1..1, flags);
    }
    crate::flags::normalise(args, '_')
}

pub fn main() -> i32 {
    let args = match expand_args(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let args: TrainArgs = match crate::parse_flags(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    run(args)
}

/// The flags as a training request: values parsed into their types, nothing resolved.
fn request(args: TrainArgs) -> Result<TrainRequest, String> {
    let Some(schedule) = ScheduleKind::parse(&args.lr_scheduler_type) else {
        return Err(format!(
            "--lr_scheduler_type {}: expected one of {}",
            args.lr_scheduler_type,
            ScheduleKind::NAMES.join(", ")
        ));
    };
    let (Some(save_strategy), Some(eval_strategy)) = (
        Strategy::parse(&args.save_strategy),
        Strategy::parse(&args.eval_strategy),
    ) else {
        return Err("--save_strategy and --eval_strategy take no, steps or epoch".into());
    };
    let (train_packs, strategy) =
        PackingStrategy::from_flags(args.packing.as_deref(), args.packing_strategy.as_deref())
            .map_err(|e| e.to_string())?;
    let mut trackio = false;
    for r in &args.report_to {
        match r.as_str() {
            "none" => {}
            "trackio" | "all" => trackio = true,
            other => return Err(format!("--report_to {other}: supported are trackio and none (metrics.jsonl is always written)")),
        }
    }
    if args.bf16 == Some(true) {
        return Err("--bf16 is not supported: the CPU trains in float32 (bf16 and f16 weight files are converted when loaded); drop the flag or pass --bf16 false".into());
    }
    let Some(health) = HealthPolicy::parse(&args.health_checks) else {
        return Err(format!(
            "--health_checks {}: expected stop or warn",
            args.health_checks
        ));
    };
    let output_dir = args.output_dir.clone().unwrap_or_default();
    let mut config = TrainConfig::new(PathBuf::new(), output_dir);
    config.per_device_train_batch_size = args.per_device_train_batch_size;
    config.per_device_eval_batch_size = args.per_device_eval_batch_size;
    config.gradient_accumulation_steps = args.gradient_accumulation_steps;
    config.learning_rate = args.learning_rate;
    config.num_train_epochs = args.num_train_epochs;
    config.max_steps = (args.max_steps > 0).then_some(args.max_steps as usize);
    config.lr_scheduler_type = schedule;
    config.warmup_steps = args.warmup_ratio.unwrap_or(args.warmup_steps);
    config.adam = sft_train::optim::AdamWConfig {
        beta1: args.adam_beta1,
        beta2: args.adam_beta2,
        eps: args.adam_epsilon,
        weight_decay: args.weight_decay,
    };
    config.max_grad_norm = args.max_grad_norm;
    config.logging_steps = args.logging_steps;
    config.save_strategy = save_strategy;
    config.save_steps = args.save_steps;
    config.save_total_limit = args.save_total_limit;
    config.eval_strategy = eval_strategy;
    config.eval_steps = args.eval_steps.unwrap_or(args.logging_steps);
    config.seed = args.seed;
    config.shuffle = args.shuffle;
    config.early_stopping_patience = args.early_stopping_patience;
    config.load_best_model_at_end = args.load_best_model_at_end.unwrap_or(false);
    config.report_to_trackio = trackio;
    config.health_checks = health;
    config.trackio_project = args.project;
    if let Some(name) = args.run_name {
        config.run_name = name;
    }
    Ok(TrainRequest {
        model: args.model_name_or_path,
        model_revision: args.model_revision,
        dataset: args.dataset_name,
        dataset_config: args.dataset_config,
        eval_dataset: args.eval_dataset,
        train_split: args.dataset_train_split,
        test_split: args.dataset_test_split,
        output_dir: args.output_dir,
        resume_from_checkpoint: args.resume_from_checkpoint,
        overwrite_output_dir: args.overwrite_output_dir,
        config,
        data: DataPlan {
            packing: train_packs.then_some(strategy),
            options: TokenizeOptions {
                max_length: Some(args.max_length),
                completion_only_loss: args.completion_only_loss,
                assistant_only_loss: args.assistant_only_loss.unwrap_or(false),
                text_field: args.dataset_text_field,
                render: Default::default(),
            },
            chat_template: args.chat_template_path,
        },
        eval_packing: args.eval_packing.unwrap_or(train_packs).then_some(strategy),
        lora: LoraFlags {
            use_peft: args.use_peft.unwrap_or(false),
            r: args.lora_r,
            alpha: args.lora_alpha,
            dropout: args.lora_dropout,
            target_modules: args.lora_target_modules,
            use_rslora: args.use_rslora,
            task_type: args.lora_task_type,
        },
        memory: MemorySettings {
            gradient_checkpointing: args.gradient_checkpointing.unwrap_or(true),
            check: args.memory_check,
        },
        export_gguf: args.export_gguf,
        hub: HubFlags {
            push_to_hub: args.push_to_hub == Some(true) || args.push_only,
            model_id: args.hub_model_id,
            private_repo: args.hub_private_repo,
            strategy: args.hub_strategy,
            token: args.hub_token,
            revision: args.hub_revision,
        },
    })
}

/// The exit code of a job that could not run.
fn job_error(e: JobError) -> i32 {
    if e.is_usage() {
        usage_error(e)
    } else {
        run_error(e)
    }
}

fn run(args: TrainArgs) -> i32 {
    let quiet = args.quiet;
    let (push_only, dry_run, merge) = (args.push_only, args.dry_run, args.merge_adapter.clone());
    let request = match request(args) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    let mut say = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    if push_only {
        return match request.push_finished_run() {
            Ok(c) => {
                say(&format!(
                    "pushed {} to {} (commit {}, {} files, {} through LFS)",
                    request
                        .output_dir
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display(),
                    c.url,
                    c.commit,
                    c.files,
                    c.lfs_files
                ));
                0
            }
            Err(e) => job_error(e),
        };
    }
    if let Some(adapter) = &merge {
        let started = Instant::now();
        let out = request.output_dir.as_deref();
        return match merge_adapter(adapter, request.model.as_deref(), out) {
            Ok(base) => {
                say(&format!(
                    "merged {} into {} in {:.1} s: full model in {}",
                    adapter.display(),
                    base.display(),
                    started.elapsed().as_secs_f64(),
                    out.unwrap_or(Path::new("")).display()
                ));
                0
            }
            Err(e) => job_error(e),
        };
    }
    if !request.export_gguf.is_empty() && request.dataset.is_none() && !dry_run {
        let (Some(model), Some(out)) = (&request.model, &request.output_dir) else {
            return usage_error("--export_gguf without --dataset_name exports --model_name_or_path: give it and --output_dir (the folder for the GGUF files)");
        };
        let source = match sft_model::locate::model_dir_at(model, request.model_revision.as_deref())
        {
            Ok(d) => d,
            Err(e) => return usage_error(format_args!("--model_name_or_path {model}: {e}")),
        };
        let hub_id = (!Path::new(model).exists()).then_some(model.as_str());
        return match export_gguf(
            &source,
            None,
            out,
            &request.export_gguf,
            false,
            hub_id,
            &mut say,
        ) {
            Ok(_) => 0,
            Err(e) => job_error(e),
        };
    }
    if dry_run {
        return match request.dry_run(&mut |line| eprintln!("{line}")) {
            Ok(()) => 0,
            Err(e) => job_error(e),
        };
    }
    let job = match TrainJob::assemble(request, &mut say) {
        Ok(j) => j,
        Err(e) => return job_error(e),
    };
    let push = match job.start_push() {
        Ok(p) => p,
        Err(e) => return job_error(e),
    };
    if let (Some(p), Some(target)) = (&push, &job.hub) {
        say(&format!(
            "push: to {} ({}) at the end{}",
            target.model_id,
            p.url,
            match target.strategy {
                sft_train::hub::HubStrategy::End => "",
                _ => " and at each save",
            }
        ));
    }
    let (request, output_dir, hub) = (job.request.clone(), job.output_dir.clone(), job.hub.clone());
    let resume = job.resume.clone();
    let loaded = match job.load(&Device::Cpu, &mut say) {
        Ok(l) => l,
        Err(e) => return job_error(e),
    };
    // Ctrl-C, SIGTERM (a scheduler's stop, SIGKILL follows after its grace period) and
    // SIGUSR1 (Slurm's early warning) finish the step and save a checkpoint. A second
    // Ctrl-C quits at once; a SIGTERM after SIGUSR1 lets the save finish.
    static STOP: AtomicBool = AtomicBool::new(false);
    crate::signals::on_stop(|signal, first| {
        let name = crate::signals::name(signal);
        if first {
            STOP.store(true, Ordering::SeqCst);
            eprintln!("\nsft-train: {name}: finishing this step and saving a checkpoint (Ctrl-C again to quit without one)");
        } else if signal == signal_hook::consts::SIGINT {
            eprintln!("\nsft-train: second Ctrl-C, exiting without a checkpoint");
            std::process::exit(crate::signals::exit_code(signal));
        } else {
            eprintln!("\nsft-train: {name}: still saving the checkpoint");
        }
    });
    let cfg = &loaded.config;
    let (_, total) = sft_train::trainer::plan(cfg, loaded.train.len());
    say(&format!(
        "training: {} rows, {} eval rows, {total} steps of {} x {} rows, lr {} ({}), output {}",
        loaded.train.len(),
        loaded.eval.len(),
        cfg.per_device_train_batch_size,
        cfg.gradient_accumulation_steps,
        cfg.learning_rate,
        cfg.lr_scheduler_type.name(),
        output_dir.display()
    ));
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut on = |event: Event| match event {
        Event::Step {
            step,
            loss,
            lr,
            tokens_per_s,
            ..
        } => {
            if let Some(b) = &bar {
                b.set_position(step as u64);
                b.set_message(format!(
                    "loss {loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"
                ));
            }
        }
        Event::Log(entry) => {
            if !quiet {
                let line = sft_train::metrics::log_line(entry);
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
        }
        Event::Saved { path, seconds } => {
            let mut lines = Vec::new();
            if !quiet {
                lines.push(format!("saved {} in {seconds:.1} s", path.display()));
            }
            // A failed push mid-run does not stop training: the end pushes everything again.
            if let Some(p) = &push {
                match p.after_save(path) {
                    Ok(commits) => {
                        if !quiet {
                            for c in commits {
                                lines.push(format!(
                                    "pushed {} to {} (commit {})",
                                    path.display(),
                                    c.url,
                                    c.commit
                                ));
                            }
                        }
                    }
                    Err(e) => lines.push(format!("sft-train: warning: {e}")),
                }
            }
            for line in lines {
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
        }
        Event::Message(m) => match &bar {
            Some(b) => b.println(m),
            None => eprintln!("{m}"),
        },
    };
    let summary = match loaded.trainer(&STOP).run(resume.as_deref(), &mut on) {
        Ok(s) => s,
        Err(e) => {
            if let Some(b) = &bar {
                b.abandon();
            }
            return run_error(e);
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match summary.outcome {
        Outcome::Finished | Outcome::EarlyStopped { .. } => {
            say(&format!(
                "done: {} steps in {:.1} s, train loss {:.4}; model in {}, logs in {}, chart {}",
                summary.global_step,
                summary.seconds,
                summary.train_loss,
                output_dir.display(),
                output_dir.join("metrics.jsonl").display(),
                output_dir.join("loss.svg").display()
            ));
            if !request.export_gguf.is_empty() {
                let model = request.model.as_deref().filter(|m| !Path::new(m).exists());
                if let Err(e) = export_gguf(
                    &output_dir,
                    request.model.as_deref(),
                    &output_dir,
                    &request.export_gguf,
                    true,
                    model,
                    &mut say,
                ) {
                    return job_error(e);
                }
            }
            if let (Some(p), Some(target)) = (&push, &hub) {
                match p.at_end(&request.model_card(target, Some(&summary))) {
                    Ok(c) => say(&format!(
                        "pushed {} to {} (commit {}, {} files, {} through LFS)",
                        output_dir.display(),
                        c.url,
                        c.commit,
                        c.files,
                        c.lfs_files
                    )),
                    Err(e) => return run_error(e),
                }
            }
            0
        }
        Outcome::Interrupted {
            checkpoint,
            save_seconds,
        } => {
            let signal = crate::signals::received().unwrap_or(signal_hook::consts::SIGINT);
            eprintln!(
                "sft-train: stopped by {} at step {}; the checkpoint took {save_seconds:.1} s to write (a scheduler's grace period must allow that); resume with --resume_from_checkpoint {}",
                crate::signals::name(signal),
                summary.global_step,
                checkpoint.display()
            );
            crate::signals::exit_code(signal)
        }
        Outcome::Unhealthy {
            verdict,
            last_good_checkpoint,
        } => {
            eprintln!(
                "sft-train: error: step {}: the run {}: {}\n  likely cause: {}\n  {}\n  (--health_checks warn trains on regardless)",
                verdict.step,
                verdict.sickness.name(),
                verdict.message,
                verdict.cause,
                match last_good_checkpoint {
                    Some(p) => format!("The last good checkpoint is {}; no model was saved after the run fell ill", p.display()),
                    None => "No checkpoint was saved before the run fell ill, and no model after".into(),
                }
            );
            EXIT_PROBLEMS
        }
        Outcome::NonFinite {
            step,
            what,
            last_checkpoint,
        } => {
            eprintln!(
                "sft-train: error: step {step}: {what}; training stopped. {}\n  hint: lower --learning_rate, keep --max_grad_norm on, or look for broken rows with `sft-data check`",
                match last_checkpoint {
                    Some(p) => format!("The last good checkpoint is {}", p.display()),
                    None => "No checkpoint was saved before it".into(),
                }
            );
            EXIT_PROBLEMS
        }
    }
}
