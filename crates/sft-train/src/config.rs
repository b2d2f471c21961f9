//! What a training run is told: TRL's `SFTConfig` fields that apply here.

use std::path::PathBuf;

use crate::optim::AdamWConfig;
use crate::schedule::ScheduleKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    No,
    Steps,
    Epoch,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "no" => Self::No,
            "steps" => Self::Steps,
            "epoch" => Self::Epoch,
            _ => return None,
        })
    }
}

/// What a run that cannot learn ([`crate::health`]) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthPolicy {
    /// Stop with an error, keeping the last good checkpoint (the default).
    #[default]
    Stop,
    /// Say so once and train on.
    Warn,
}

impl HealthPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop" => Self::Stop,
            "warn" => Self::Warn,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub output_dir: PathBuf,
    /// The model folder trained from: its tokenizer files and generation config are copied
    /// into every checkpoint.
    pub model_dir: PathBuf,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub num_train_epochs: f64,
    pub max_steps: Option<usize>,
    pub lr_scheduler_type: ScheduleKind,
    /// Steps (>= 1) or a ratio of the total (< 1), as transformers 5 reads `warmup_steps`.
    pub warmup_steps: f64,
    pub adam: AdamWConfig,
    pub max_grad_norm: f64,
    pub logging_steps: usize,
    pub save_strategy: Strategy,
    pub save_steps: usize,
    pub save_total_limit: Option<usize>,
    pub eval_strategy: Strategy,
    pub eval_steps: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub early_stopping_patience: Option<usize>,
    pub load_best_model_at_end: bool,
    pub pad_token_id: u32,
    pub run_name: String,
    pub report_to_trackio: bool,
    pub trackio_project: String,
    /// TRL's `--use_peft` settings, when LoRA adapters are trained (the base is frozen).
    #[serde(default)]
    pub peft: Option<PeftSettings>,
    /// What a run that cannot learn does (stop, or warn and go on).
    #[serde(default)]
    pub health_checks: HealthPolicy,
}

/// The LoRA settings of a `--use_peft` run, under TRL's `ModelConfig` names (recorded in
/// `training_args.json`; the adapter's own `adapter_config.json` is PEFT's).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeftSettings {
    pub lora_r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_target_modules: Vec<String>,
    pub use_rslora: bool,
}

impl PeftSettings {
    pub fn of(cfg: &sft_model::LoraConfig) -> Self {
        Self {
            lora_r: cfg.r,
            lora_alpha: cfg.alpha,
            lora_dropout: cfg.dropout,
            lora_target_modules: cfg.targets.iter().map(|m| m.name().to_string()).collect(),
            use_rslora: cfg.use_rslora,
        }
    }
}

impl TrainConfig {
    /// TRL's defaults (SFTConfig over TrainingArguments) for a run into `output_dir`.
    pub fn new(model_dir: PathBuf, output_dir: PathBuf) -> Self {
        Self {
            run_name: output_dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "run".into()),
            output_dir,
            model_dir,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 2e-5,
            num_train_epochs: 3.0,
            max_steps: None,
            lr_scheduler_type: ScheduleKind::Linear,
            warmup_steps: 0.0,
            adam: AdamWConfig::default(),
            max_grad_norm: 1.0,
            logging_steps: 10,
            save_strategy: Strategy::Steps,
            save_steps: 500,
            save_total_limit: None,
            eval_strategy: Strategy::No,
            eval_steps: 10,
            seed: 42,
            shuffle: true,
            early_stopping_patience: None,
            load_best_model_at_end: false,
            pad_token_id: 0,
            report_to_trackio: false,
            trackio_project: "huggingface".into(),
            peft: None,
            health_checks: HealthPolicy::Stop,
        }
    }

    /// Combinations transformers refuses, refused here with the same reasons.
    pub fn validate(&self, has_eval: bool) -> Result<(), String> {
        let positive = [
            (
                "per_device_train_batch_size",
                self.per_device_train_batch_size,
            ),
            (
                "per_device_eval_batch_size",
                self.per_device_eval_batch_size,
            ),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
            ),
            ("logging_steps", self.logging_steps),
            ("save_steps", self.save_steps),
            ("eval_steps", self.eval_steps),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("--{name} must be at least 1"));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return Err("--learning_rate must be a non-negative number".into());
        }
        if self.max_steps.is_none()
            && self.num_train_epochs.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err("--num_train_epochs must be above 0 (or give --max_steps)".into());
        }
        if self.eval_strategy != Strategy::No && !has_eval {
            return Err("--eval_strategy needs an evaluation set: --eval_dataset FILE or --dataset_test_split".into());
        }
        if self.early_stopping_patience.is_some() && self.eval_strategy == Strategy::No {
            return Err("--early_stopping_patience needs evaluation: set --eval_strategy steps (or epoch) and --eval_dataset".into());
        }
        if self.load_best_model_at_end {
            if self.eval_strategy == Strategy::No {
                return Err("--load_best_model_at_end needs --eval_strategy steps or epoch".into());
            }
            if self.eval_strategy != self.save_strategy {
                return Err(format!(
                    "--load_best_model_at_end needs the save and eval strategies to match (save: {:?}, eval: {:?})",
                    self.save_strategy, self.eval_strategy
                ));
            }
            if self.save_strategy == Strategy::Steps
                && !self.save_steps.is_multiple_of(self.eval_steps)
            {
                return Err(format!(
                    "--load_best_model_at_end needs --save_steps ({}) to be a multiple of --eval_steps ({})",
                    self.save_steps, self.eval_steps
                ));
            }
        }
        Ok(())
    }
}
