//! `sft-train`: fine-tune a llama-family model with TRL's flag names.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Device;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sft_io::paths::Read;
use sft_tokenize::{PackingStrategy, TokenizeOptions};

use sft_train::config::Strategy;
use sft_train::data::{load_rows, DataPlan, Dataset};
use sft_train::schedule::ScheduleKind;
use sft_train::{Event, Outcome, TrainConfig, Trainer};

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

/// The push flags checked together: `None` without --push_to_hub (and then no --hub_ flag).
fn hub_target(args: &TrainArgs) -> Result<Option<sft_train::hub::HubTarget>, String> {
    let pushes = args.push_to_hub == Some(true) || args.push_only;
    if !pushes {
        let given = [
            ("hub_model_id", args.hub_model_id.is_some()),
            ("hub_private_repo", args.hub_private_repo.is_some()),
            ("hub_strategy", args.hub_strategy.is_some()),
            ("hub_token", args.hub_token.is_some()),
            ("hub_revision", args.hub_revision.is_some()),
        ];
        return match given.iter().find(|(_, g)| *g) {
            Some((name, _)) => Err(format!("--{name} is a push setting: add --push_to_hub")),
            None => Ok(None),
        };
    }
    let Some(model_id) = args.hub_model_id.clone() else {
        return Err("--push_to_hub needs --hub_model_id OWNER/NAME (the Hub repo to push to, created if missing)".into());
    };
    if let Err(e) = sft_hub::RepoId::model(&model_id) {
        return Err(format!("--hub_model_id {e}"));
    }
    let strategy = args.hub_strategy.as_deref().unwrap_or("every_save");
    let Some(strategy) = sft_train::hub::HubStrategy::parse(strategy) else {
        return Err(format!(
            "--hub_strategy {strategy}: expected one of {}",
            sft_train::hub::HubStrategy::NAMES.join(", ")
        ));
    };
    Ok(Some(sft_train::hub::HubTarget {
        model_id,
        private: args.hub_private_repo.unwrap_or(false),
        strategy,
        revision: args.hub_revision.clone(),
        token: args.hub_token.clone(),
    }))
}

/// The model card of a run: TRL's metadata, the flags that shaped it, its final losses.
fn model_card(
    args: &TrainArgs,
    target: &sft_train::hub::HubTarget,
    summary: Option<&sft_train::trainer::Summary>,
) -> sft_hub::ModelCard {
    let mut datasets = Vec::new();
    for d in [&args.dataset_name, &args.eval_dataset]
        .into_iter()
        .flatten()
    {
        let name = d.to_string_lossy();
        if sft_train::hub::is_hub_dataset(&name) {
            let id = match sft_hub::HubPath::parse(&name) {
                Some(Ok(p)) => p.repo.id().to_string(),
                _ => name.to_string(),
            };
            if !datasets.contains(&id) {
                datasets.push(id);
            }
        }
    }
    let mut training_args: Vec<(String, String)> = vec![
        ("learning_rate".into(), args.learning_rate.to_string()),
        ("lr_scheduler_type".into(), args.lr_scheduler_type.clone()),
        (
            "per_device_train_batch_size".into(),
            args.per_device_train_batch_size.to_string(),
        ),
        (
            "gradient_accumulation_steps".into(),
            args.gradient_accumulation_steps.to_string(),
        ),
    ];
    if args.max_steps > 0 {
        training_args.push(("max_steps".into(), args.max_steps.to_string()));
    } else {
        training_args.push(("num_train_epochs".into(), args.num_train_epochs.to_string()));
    }
    training_args.push(("max_length".into(), args.max_length.to_string()));
    if let Some(p) = &args.packing {
        training_args.push(("packing".into(), p.clone()));
    }
    training_args.push(("seed".into(), args.seed.to_string()));
    let peft = args.use_peft.unwrap_or(false);
    if peft {
        training_args.push(("use_peft".into(), "true".into()));
        if let Some(r) = args.lora_r {
            training_args.push(("lora_r".into(), r.to_string()));
        }
    }
    let mut results = Vec::new();
    if let Some(s) = summary {
        results.push(("train_loss".to_string(), s.train_loss));
        results.push(("global_step".to_string(), s.global_step as f64));
        let eval = s
            .log_history
            .iter()
            .rev()
            .find_map(|e| e["eval_loss"].as_f64());
        if let Some(l) = eval {
            results.push(("eval_loss".to_string(), l));
        }
    }
    sft_hub::ModelCard {
        model_id: target.model_id.clone(),
        base_model: args.model_name_or_path.clone(),
        datasets,
        library_name: if peft { "peft" } else { "transformers" }.into(),
        extra_tags: Vec::new(),
        training_args,
        results,
    }
}

fn run(args: TrainArgs) -> i32 {
    let hub = match hub_target(&args) {
        Ok(h) => h,
        Err(e) => return usage_error(e),
    };
    if args.push_only {
        let (Some(target), Some(out)) = (&hub, &args.output_dir) else {
            return usage_error(
                "--push_only needs --output_dir (the finished run) and --hub_model_id",
            );
        };
        if !out.is_dir() {
            return usage_error(format_args!(
                "--push_only: {} is not a folder",
                out.display()
            ));
        }
        let card = model_card(&args, target, None);
        return match sft_train::hub::push_only(target.clone(), out, &card) {
            Ok(c) => {
                if !args.quiet {
                    eprintln!(
                        "pushed {} to {} (commit {}, {} files, {} through LFS)",
                        out.display(),
                        c.url,
                        c.commit,
                        c.files,
                        c.lfs_files
                    );
                }
                0
            }
            Err(e) => run_error(e),
        };
    }
    if let Some(adapter) = &args.merge_adapter {
        return merge(adapter, &args);
    }
    let use_peft = args.use_peft.unwrap_or(false);
    if !use_peft {
        let given = [
            ("lora_r", args.lora_r.is_some()),
            ("lora_alpha", args.lora_alpha.is_some()),
            ("lora_dropout", args.lora_dropout.is_some()),
            ("lora_target_modules", !args.lora_target_modules.is_empty()),
            ("use_rslora", args.use_rslora.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(_, g)| *g) {
            return usage_error(format_args!("--{name} sets up LoRA adapters: add --use_peft (without it every weight is trained)"));
        }
    }
    if let Some(task) = args.lora_task_type.as_deref().filter(|t| *t != "CAUSAL_LM") {
        return usage_error(format_args!(
            "--lora_task_type {task}: only CAUSAL_LM is supported (supervised fine-tuning of a causal LM)"
        ));
    }
    let Some(model_name) = &args.model_name_or_path else {
        return usage_error("--model_name_or_path is required (a model folder such as data-samples/models/tiny-llama)");
    };
    if args.dry_run {
        let dir = match sft_model::locate::model_dir_at(model_name, args.model_revision.as_deref())
        {
            Ok(d) => d,
            Err(e) => return usage_error(e),
        };
        let lora = match lora_config(&dir, &args) {
            Ok(l) => l,
            Err(e) => return usage_error(e),
        };
        return match memory_plan(
            &dir,
            &args,
            lora.as_ref(),
            args.eval_dataset.is_some(),
            None,
        ) {
            Ok(_) => 0,
            Err(e) => run_error(e.message),
        };
    }
    let Some(dataset) = &args.dataset_name else {
        return usage_error(
            "--dataset_name is required (a data file or folder, or a prepared .parquet)",
        );
    };
    let Some(output_dir) = &args.output_dir else {
        return usage_error("--output_dir is required");
    };
    let Some(schedule) = ScheduleKind::parse(&args.lr_scheduler_type) else {
        return usage_error(format_args!(
            "--lr_scheduler_type {}: expected one of {}",
            args.lr_scheduler_type,
            ScheduleKind::NAMES.join(", ")
        ));
    };
    let (Some(save_strategy), Some(eval_strategy)) = (
        Strategy::parse(&args.save_strategy),
        Strategy::parse(&args.eval_strategy),
    ) else {
        return usage_error("--save_strategy and --eval_strategy take no, steps or epoch");
    };
    let (train_packs, strategy) = match PackingStrategy::from_flags(
        args.packing.as_deref(),
        args.packing_strategy.as_deref(),
    ) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let packing = train_packs.then_some(strategy);
    let eval_packing = args.eval_packing.unwrap_or(train_packs).then_some(strategy);
    let mut trackio = false;
    for r in &args.report_to {
        match r.as_str() {
            "none" => {}
            "trackio" => trackio = true,
            "all" => trackio = true,
            other => return usage_error(format_args!("--report_to {other}: supported are trackio and none (metrics.jsonl is always written)")),
        }
    }
    if args.bf16 == Some(true) {
        return usage_error("--bf16 is not supported: the CPU trains in float32 (bf16 and f16 weight files are converted when loaded); drop the flag or pass --bf16 false");
    }
    let model_dir =
        match sft_model::locate::model_dir_at(model_name, args.model_revision.as_deref()) {
            Ok(d) => d,
            Err(e) => return usage_error(e),
        };
    // Where to resume from, if anywhere.
    let resume = match sft_train::checkpoint::resume_from(
        output_dir,
        args.resume_from_checkpoint.as_deref(),
    ) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    // A Hub dataset: the files of its splits, from the cache or downloaded into it.
    let dataset_text = dataset.to_string_lossy().into_owned();
    let hub_dataset = sft_train::hub::is_hub_dataset(&dataset_text);
    if args.dataset_config.is_some() && !hub_dataset {
        return usage_error(format_args!(
            "--dataset_config applies to a Hub dataset (OWNER/NAME); {} is a local path",
            dataset.display()
        ));
    }
    let split_files = |name: &str, split: &str| {
        sft_train::hub::dataset_split_files(name, args.dataset_config.as_deref(), split)
            .map_err(|e| usage_error(format_args!("--dataset_name {name}: {e}")))
    };
    let mut hub_train = None;
    let mut hub_eval = None;
    if hub_dataset {
        hub_train = match split_files(&dataset_text, &args.dataset_train_split) {
            Ok(f) => f,
            Err(code) => return code,
        };
        if let Some(split) = &args.dataset_test_split {
            hub_eval = match split_files(&dataset_text, split) {
                Ok(f) => f,
                Err(code) => return code,
            };
        }
    }
    if let Some(eval) = &args.eval_dataset {
        let name = eval.to_string_lossy().into_owned();
        if sft_train::hub::is_hub_dataset(&name) {
            let split = args.dataset_test_split.as_deref().unwrap_or("test");
            hub_eval = match split_files(&name, split) {
                Ok(f) => f,
                Err(code) => return code,
            };
        }
    }
    let (train_path, eval_path) = match &args.dataset_test_split {
        _ if hub_dataset => (dataset.clone(), args.eval_dataset.clone().or_else(|| args.dataset_test_split.as_ref().map(|_| dataset.clone()))),
        Some(split) if dataset.join(split).is_dir() => (dataset.join(&args.dataset_train_split), Some(dataset.join(split))),
        Some(split) => return usage_error(format_args!("--dataset_test_split {split}: {} has no {split} folder (a DatasetDict saved with save_to_disk has one per split)", dataset.display())),
        None => (
            if dataset.join(&args.dataset_train_split).is_dir() && dataset.join("dataset_dict.json").is_file() { dataset.join(&args.dataset_train_split) } else { dataset.clone() },
            args.eval_dataset.clone(),
        ),
    };
    // Nothing the run reads may be written into or over, and another run's files are not
    // mixed with this one's.
    let mut reads = vec![
        Read::new(&model_dir, "the model (--model_name_or_path)"),
        Read::new(&train_path, "the training data (--dataset_name)"),
    ];
    if let Some(p) = &eval_path {
        reads.push(Read::new(p, "the evaluation data"));
    }
    if let Some(t) = &args.chat_template_path {
        reads.push(Read::new(t, "the chat template (--chat_template_path)"));
    }
    // A Hub dataset is read from its files in the shared cache.
    for file in hub_train.iter().chain(&hub_eval).flatten() {
        reads.push(Read::new(
            file,
            "a file of the Hub dataset (in the Hugging Face cache)",
        ));
    }
    if let Err(e) = sft_train::output_dir::check_output_dir(
        output_dir,
        &reads,
        resume.as_deref(),
        args.overwrite_output_dir,
    ) {
        return usage_error(e);
    }
    let lora = match lora_config(&model_dir, &args) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };
    if let Some(dir) = &resume {
        let adapter = sft_model::lora::is_adapter_dir(dir);
        if adapter != lora.is_some() {
            return usage_error(format_args!(
                "--resume_from_checkpoint {}: the checkpoint holds {}, but this run {}\n  hint: resume with the flags the run was started with ({} --use_peft)",
                dir.display(),
                if adapter { "a LoRA adapter" } else { "full weights" },
                if lora.is_some() { "trains LoRA adapters (--use_peft)" } else { "trains every weight" },
                if adapter { "with" } else { "without" },
            ));
        }
    }
    let mut cfg = TrainConfig::new(model_dir.clone(), output_dir.clone());
    cfg.peft = lora.as_ref().map(sft_train::config::PeftSettings::of);
    cfg.per_device_train_batch_size = args.per_device_train_batch_size;
    cfg.per_device_eval_batch_size = args.per_device_eval_batch_size;
    cfg.gradient_accumulation_steps = args.gradient_accumulation_steps;
    cfg.learning_rate = args.learning_rate;
    cfg.num_train_epochs = args.num_train_epochs;
    cfg.max_steps = (args.max_steps > 0).then_some(args.max_steps as usize);
    cfg.lr_scheduler_type = schedule;
    cfg.warmup_steps = args.warmup_ratio.unwrap_or(args.warmup_steps);
    cfg.adam = sft_train::optim::AdamWConfig {
        beta1: args.adam_beta1,
        beta2: args.adam_beta2,
        eps: args.adam_epsilon,
        weight_decay: args.weight_decay,
    };
    cfg.max_grad_norm = args.max_grad_norm;
    cfg.logging_steps = args.logging_steps;
    cfg.save_strategy = save_strategy;
    cfg.save_steps = args.save_steps;
    cfg.save_total_limit = args.save_total_limit;
    cfg.eval_strategy = eval_strategy;
    cfg.eval_steps = args.eval_steps.unwrap_or(args.logging_steps);
    cfg.seed = args.seed;
    cfg.shuffle = args.shuffle;
    cfg.early_stopping_patience = args.early_stopping_patience;
    cfg.load_best_model_at_end = args.load_best_model_at_end.unwrap_or(false);
    cfg.report_to_trackio = trackio;
    let Some(health) = sft_train::config::HealthPolicy::parse(&args.health_checks) else {
        return usage_error(format_args!(
            "--health_checks {}: expected stop or warn",
            args.health_checks
        ));
    };
    cfg.health_checks = health;
    cfg.trackio_project = args.project.clone();
    if let Some(name) = &args.run_name {
        cfg.run_name = name.clone();
    }
    // Checked before anything is loaded or prepared: a wrong flag costs nothing.
    if let Err(e) = cfg.validate(eval_path.is_some()) {
        return usage_error(e);
    }
    // The repo is created now: a token that cannot push stops the run before it trains.
    let push = match &hub {
        Some(target) => match sft_train::hub::HubPush::start(target.clone(), output_dir) {
            Ok(p) => {
                if !args.quiet {
                    eprintln!(
                        "push: to {} ({}) at the end{}",
                        target.model_id,
                        p.url,
                        match target.strategy {
                            sft_train::hub::HubStrategy::End => "",
                            _ => " and at each save",
                        }
                    );
                }
                Some(p)
            }
            Err(e) => return run_error(format_args!("--push_to_hub: {e}")),
        },
        None => None,
    };
    let device = Device::Cpu;
    let load_from = resume.as_deref().unwrap_or(&model_dir);
    let evaluates = args.eval_dataset.is_some() || args.dataset_test_split.is_some();
    // An adapter checkpoint has no config.json: the plan is of the base.
    let plan_dir = if lora.is_some() {
        &model_dir
    } else {
        load_from
    };
    let plans_eval = evaluates && eval_strategy != Strategy::No;
    // Before anything is loaded the plan assumes every micro-batch at max_length. Packed,
    // that is their shape; unpacked it is an upper bound (a batch is padded to its longest
    // row), so a run it refuses is planned again at the data's longest micro-batch once
    // the data is read, and refused only if that does not fit either.
    let upper_bound_refusal = match memory_plan(plan_dir, &args, lora.as_ref(), plans_eval, None) {
        Ok(()) => None,
        Err(e) if packing.is_none() && e.smaller_fits => Some(e.message),
        Err(e) => return run_error(e.message),
    };
    let started = Instant::now();
    // A checkpoint is checked whole (weights, moments, sizes) before the data is prepared.
    let loaded = match &resume {
        Some(dir) => sft_train::checkpoint::load_model(dir, Some(&model_dir), &device),
        None => sft_train::checkpoint::load_base(&model_dir, lora.as_ref(), args.seed, &device)
            .map_err(|e| e.to_string()),
    };
    let mut model = match loaded {
        Ok(m) => m,
        Err(e) => return run_error(e),
    };
    if let (Some(asked), Some(saved)) = (&lora, model.lora()) {
        if asked != saved {
            return usage_error(format_args!(
                "--resume_from_checkpoint: the checkpoint's adapter has r {}, alpha {}, dropout {}, targets {:?}, but the flags ask for r {}, alpha {}, dropout {}, targets {:?}\n  hint: resume with the LoRA flags the run was started with",
                saved.r, saved.alpha, saved.dropout, saved.targets, asked.r, asked.alpha, asked.dropout, asked.targets
            ));
        }
    }
    model.set_gradient_checkpointing(args.gradient_checkpointing.unwrap_or(true));
    if !args.quiet {
        eprintln!(
            "model: {} ({} layers, hidden {}, {:.1} M parameters) from {} in {:.1} s",
            model.config().model_type(),
            model.config().num_hidden_layers(),
            model.config().hidden_size(),
            model.config().num_parameters() as f64 / 1e6,
            load_from.display(),
            started.elapsed().as_secs_f64()
        );
        if let Some(l) = model.lora() {
            let trainable: usize = model.params().iter().map(|p| p.var.elem_count()).sum();
            let all = model.config().num_parameters();
            eprintln!(
                "LoRA: r {}, alpha {}, dropout {}, {}on {}; base frozen in its stored dtype; trainable params: {trainable} || all params: {} || trainable%: {:.4}",
                l.r,
                l.alpha,
                l.dropout,
                if l.use_rslora { "rsLoRA, " } else { "" },
                l.targets.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
                all + trainable,
                100.0 * trainable as f64 / (all + trainable) as f64
            );
        }
    }
    let plan = DataPlan {
        packing,
        options: TokenizeOptions {
            max_length: Some(args.max_length),
            completion_only_loss: args.completion_only_loss,
            assistant_only_loss: args.assistant_only_loss.unwrap_or(false),
            text_field: args.dataset_text_field.clone(),
            render: Default::default(),
        },
        chat_template: args.chat_template_path.clone(),
    };
    let eval_plan = DataPlan {
        packing: eval_packing,
        ..plan.clone()
    };
    if args.overwrite_output_dir && resume.is_none() {
        match sft_train::output_dir::clear_previous_run(output_dir) {
            Ok(removed) if !removed.is_empty() && !args.quiet => eprintln!(
                "--overwrite_output_dir: removed the previous run's {} from {}",
                removed.join(", "),
                output_dir.display()
            ),
            Ok(_) => {}
            Err(e) => return run_error(e),
        }
    }
    let work = output_dir.join("data");
    let load = |path: &Path, hub_files: Option<&Vec<PathBuf>>, name: &str, plan: &DataPlan| {
        let dataset = match hub_files {
            Some(files) => Dataset::open_files(path, files),
            None => Dataset::open(path),
        }
        .map_err(run_error)?;
        let loaded = load_rows(&dataset, name, &model_dir, plan, &work).map_err(run_error)?;
        if !args.quiet {
            for line in loaded.describe(name) {
                eprintln!("{line}");
            }
        }
        Ok::<_, i32>(loaded.rows)
    };
    let train = match load(&train_path, hub_train.as_ref(), "train", &plan) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let eval = match &eval_path {
        Some(p) => match load(p, hub_eval.as_ref(), "eval", &eval_plan) {
            Ok(r) => r,
            Err(code) => return code,
        },
        None => Vec::new(),
    };
    if packing.is_none() {
        let observed = Observed {
            longest: sft_train::trainer::longest_micro_batch(&cfg, &train).max(if plans_eval {
                eval.iter().map(|r| r.input_ids.len()).max().unwrap_or(0)
            } else {
                0
            }),
            rows: train.len(),
            eval_rows: eval.len(),
        };
        let smaller = observed.longest < args.max_length
            || observed.rows < args.per_device_train_batch_size
            || (plans_eval && observed.eval_rows < args.per_device_eval_batch_size);
        if smaller {
            if let Err(e) = memory_plan(plan_dir, &args, lora.as_ref(), plans_eval, Some(observed))
            {
                return run_error(e.message);
            }
        } else if let Some(e) = upper_bound_refusal {
            return run_error(e);
        }
    }
    cfg.pad_token_id = model.config().pad_id(None);
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
    let (_, total) = sft_train::trainer::plan(&cfg, train.len());
    if !args.quiet {
        eprintln!(
            "training: {} rows, {} eval rows, {total} steps of {} x {} rows, lr {} ({}), output {}",
            train.len(),
            eval.len(),
            cfg.per_device_train_batch_size,
            cfg.gradient_accumulation_steps,
            cfg.learning_rate,
            schedule.name(),
            output_dir.display()
        );
    }
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar
    });
    let quiet = args.quiet;
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
    let trainer = Trainer {
        model,
        cfg,
        train,
        eval,
        stop: &STOP,
    };
    let summary = match trainer.run(resume.as_deref(), &mut on) {
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
            if !args.quiet {
                eprintln!(
                    "done: {} steps in {:.1} s, train loss {:.4}; model in {}, logs in {}, chart {}",
                    summary.global_step,
                    summary.seconds,
                    summary.train_loss,
                    output_dir.display(),
                    output_dir.join("metrics.jsonl").display(),
                    output_dir.join("loss.svg").display()
                );
            }
            if let (Some(p), Some(target)) = (&push, &hub) {
                let card = model_card(&args, target, Some(&summary));
                match p.at_end(&card) {
                    Ok(c) => {
                        if !args.quiet {
                            eprintln!(
                                "pushed {} to {} (commit {}, {} files, {} through LFS)",
                                output_dir.display(),
                                c.url,
                                c.commit,
                                c.files,
                                c.lfs_files
                            );
                        }
                    }
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

/// Prints the memory plan of the run (unless --quiet, or always with --dry_run) and, with
/// --memory_check, refuses a run whose predicted peak exceeds the available memory, naming
/// flags that would make it fit. `observed`: the data's micro-batches, once they are known
/// (unpacked runs); before that, micro-batches are planned at `max_length` and full.
fn memory_plan(
    model_dir: &Path,
    args: &TrainArgs,
    lora: Option<&sft_model::LoraConfig>,
    evaluates: bool,
    observed: Option<Observed>,
) -> Result<(), PlanRefusal> {
    use sft_model::memory_plan::{
        gib, mem_available, stored_weight_bytes, suggestions, train_plan, LoraShape, TrainShape,
    };
    let config =
        sft_model::LlamaConfig::from_file(&model_dir.join("config.json")).map_err(|e| {
            PlanRefusal {
                message: e.to_string(),
                smaller_fits: false,
            }
        })?;
    // A micro-batch holds at most the rows there are, padded to the longest of them.
    let (rows, max_length, eval_rows) = match observed {
        None => (
            args.per_device_train_batch_size,
            args.max_length,
            args.per_device_eval_batch_size,
        ),
        Some(o) => (
            args.per_device_train_batch_size.min(o.rows),
            o.longest,
            args.per_device_eval_batch_size.min(o.eval_rows),
        ),
    };
    let shape = TrainShape {
        rows: rows.max(1),
        max_length: max_length.max(1),
        grad_accum: args.gradient_accumulation_steps.max(1),
        checkpointing: args.gradient_checkpointing.unwrap_or(true),
        eval_rows: evaluates.then_some(eval_rows.max(1)),
        lora: lora.map(|l| LoraShape::new(l, stored_weight_bytes(&config))),
    };
    let plan = train_plan(&config, &shape);
    let available = mem_available();
    if args.dry_run || !args.quiet {
        let packed = PackingStrategy::from_flags(args.packing.as_deref(), None).is_ok_and(|p| p.0);
        eprintln!(
            "memory plan{}: {} x {} tokens per micro-batch{}, gradient checkpointing {}:\n{}  available {}",
            if lora.is_some() { " (LoRA)" } else { "" },
            shape.rows,
            shape.max_length,
            match (packed, observed) {
                (true, _) => " (packed)",
                (false, None) => " (padded to the longest row, at most max_length: an upper bound until the data is read)",
                (false, Some(_)) => " (this data's largest micro-batch, padded to its longest row)",
            },
            if shape.checkpointing { "on" } else { "off" },
            plan.render(),
            available.map_or("unknown".into(), |a| format!("{} (MemAvailable)", gib(a))),
        );
    }
    let Some(available) = available else {
        return Ok(());
    };
    if !args.memory_check || plan.peak() <= available {
        return Ok(());
    }
    let tips = suggestions(&config, &shape, available);
    let tips = if tips.is_empty() {
        "none of checkpointing, a smaller batch, a shorter max_length or LoRA adapters (--use_peft) fits: use a machine with more memory".to_string()
    } else {
        format!("flags that would fit: {}", tips.join("; or "))
    };
    let smallest = TrainShape {
        rows: 1,
        max_length: 1,
        eval_rows: shape.eval_rows.map(|_| 1),
        ..shape
    };
    Err(PlanRefusal {
        message: format!(
            "the run is predicted to need {} at its peak but {} is available, so it would be killed mid-run; {tips} (--memory_check false runs anyway)",
            gib(plan.peak()),
            gib(available)
        ),
        smaller_fits: train_plan(&config, &smallest).peak() <= available,
    })
}

/// Why the memory plan refuses a run.
struct PlanRefusal {
    message: String,
    /// Whether smaller micro-batches than the planned ones could fit (then an unpacked run
    /// is planned again at its data's largest micro-batch before it is refused).
    smaller_fits: bool,
}

/// What the data says of an unpacked run's micro-batches.
#[derive(Clone, Copy)]
struct Observed {
    /// The longest row of any micro-batch the run will see (train and eval).
    longest: usize,
    /// Training rows (a micro-batch holds at most these).
    rows: usize,
    eval_rows: usize,
}

/// The LoRA configuration of a `--use_peft` run (TRL's defaults, PEFT's target modules for
/// the model type), or none; a default chosen without PEFT having one is said on stderr.
fn lora_config(
    model_dir: &Path,
    args: &TrainArgs,
) -> Result<Option<sft_model::LoraConfig>, String> {
    if !args.use_peft.unwrap_or(false) {
        return Ok(None);
    }
    let config = sft_model::LlamaConfig::from_file(&model_dir.join("config.json"))
        .map_err(|e| e.to_string())?;
    let targets = sft_model::lora::resolve_targets(&args.lora_target_modules, &config.model_type)?;
    if let Some(note) = &targets.note {
        if !args.quiet {
            eprintln!("note: {note}");
        }
    }
    let defaults = sft_model::LoraConfig::default();
    let cfg = sft_model::LoraConfig {
        r: args.lora_r.unwrap_or(defaults.r),
        alpha: args.lora_alpha.unwrap_or(defaults.alpha),
        dropout: args.lora_dropout.unwrap_or(defaults.dropout),
        targets: targets.modules,
        use_rslora: args.use_rslora.unwrap_or(false),
    };
    cfg.validate()?;
    Ok(Some(cfg))
}

/// `--merge_adapter ADAPTER_DIR --output_dir OUT`: the merged full model, in the base's dtype.
fn merge(adapter: &Path, args: &TrainArgs) -> i32 {
    let Some(out) = &args.output_dir else {
        return usage_error(
            "--merge_adapter needs --output_dir (a new folder for the merged model)",
        );
    };
    let started = Instant::now();
    let device = sft_model::device::default_device();
    match sft_train::checkpoint::merge_adapter(
        adapter,
        args.model_name_or_path.as_deref(),
        out,
        &device,
    ) {
        Ok(base) => {
            if !args.quiet {
                eprintln!(
                    "merged {} into {} in {:.1} s: full model in {}",
                    adapter.display(),
                    base.display(),
                    started.elapsed().as_secs_f64(),
                    out.display()
                );
            }
            0
        }
        Err(e) if e.starts_with("--") => usage_error(e),
        Err(e) => run_error(e),
    }
}
