//! A training run assembled from what its user asked for.
//!
//! `sft-train`'s flags become a [`TrainRequest`] (typed values, nothing resolved). From
//! it, [`TrainJob::assemble`] resolves the model (a folder or a Hub id), the data (a file,
//! a DatasetDict's splits or a Hub dataset's files), the checkpoint to resume from and the
//! LoRA configuration, and refuses what cannot be run (an output folder over something the
//! run reads, a checkpoint of another kind, inconsistent settings) before anything heavy is
//! loaded. [`TrainJob::load`] plans the memory, loads the model and the data, plans again
//! at the data's real shape, and returns the parts of a [`Trainer`]. Every refusal is a
//! [`JobError`] whose kind says whose fault it is (the command's, or the run's).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Device;
use sft_io::paths::Read;
use sft_model::{BatchRow, CausalLm, LoraConfig};
use sft_tokenize::PackingStrategy;

use crate::config::{PeftSettings, Strategy};
use crate::data::{load_rows, DataPlan, Dataset};
use crate::hub::{HubPush, HubStrategy, HubTarget};
use crate::{TrainConfig, Trainer};

/// Why a job cannot be run, by whose fault.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// The command asks for something wrong or inconsistent (exit code 2).
    Usage(String),
    /// The run was refused or failed before training: the memory plan, the model, the
    /// data, the Hub (exit code 1).
    Failed(String),
}

impl JobError {
    pub fn is_usage(&self) -> bool {
        matches!(self, JobError::Usage(_))
    }
    fn usage(message: impl fmt::Display) -> Self {
        JobError::Usage(message.to_string())
    }
    fn failed(message: impl fmt::Display) -> Self {
        JobError::Failed(message.to_string())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Usage(m) | JobError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for JobError {}

/// TRL's `ModelConfig` LoRA flags as given (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct LoraFlags {
    pub use_peft: bool,
    pub r: Option<usize>,
    pub alpha: Option<f64>,
    pub dropout: Option<f64>,
    pub target_modules: Vec<String>,
    pub use_rslora: Option<bool>,
    pub task_type: Option<String>,
}

impl LoraFlags {
    /// LoRA flags need `--use_peft`, and the one task is a causal LM.
    fn check(&self) -> Result<(), JobError> {
        if !self.use_peft {
            let given = [
                ("lora_r", self.r.is_some()),
                ("lora_alpha", self.alpha.is_some()),
                ("lora_dropout", self.dropout.is_some()),
                ("lora_target_modules", !self.target_modules.is_empty()),
                ("use_rslora", self.use_rslora.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, g)| *g) {
                return Err(JobError::usage(format_args!("--{name} sets up LoRA adapters: add --use_peft (without it every weight is trained)")));
            }
        }
        if let Some(task) = self.task_type.as_deref().filter(|t| *t != "CAUSAL_LM") {
            return Err(JobError::usage(format_args!(
                "--lora_task_type {task}: only CAUSAL_LM is supported (supervised fine-tuning of a causal LM)"
            )));
        }
        Ok(())
    }

    /// The LoRA configuration of a `--use_peft` run (TRL's defaults, PEFT's target modules
    /// for the model type), or none; a default chosen without PEFT having one is said.
    pub fn config(
        &self,
        model_dir: &Path,
        say: &mut dyn FnMut(&str),
    ) -> Result<Option<LoraConfig>, JobError> {
        if !self.use_peft {
            return Ok(None);
        }
        let config = sft_model::LlamaConfig::from_file(&model_dir.join("config.json"))
            .map_err(JobError::usage)?;
        let targets = sft_model::lora::resolve_targets(&self.target_modules, &config.model_type)
            .map_err(JobError::usage)?;
        if let Some(note) = &targets.note {
            say(&format!("note: {note}"));
        }
        let defaults = LoraConfig::default();
        let cfg = LoraConfig {
            r: self.r.unwrap_or(defaults.r),
            alpha: self.alpha.unwrap_or(defaults.alpha),
            dropout: self.dropout.unwrap_or(defaults.dropout),
            targets: targets.modules,
            use_rslora: self.use_rslora.unwrap_or(false),
        };
        cfg.validate().map_err(JobError::usage)?;
        Ok(Some(cfg))
    }
}

/// TRL's push flags as given.
#[derive(Debug, Clone, Default)]
pub struct HubFlags {
    pub push_to_hub: bool,
    pub model_id: Option<String>,
    pub private_repo: Option<bool>,
    pub strategy: Option<String>,
    pub token: Option<String>,
    pub revision: Option<String>,
}

impl HubFlags {
    /// The push flags checked together: `None` without a push (and then no other push flag
    /// may be given).
    pub fn target(&self) -> Result<Option<HubTarget>, JobError> {
        if !self.push_to_hub {
            let given = [
                ("hub_model_id", self.model_id.is_some()),
                ("hub_private_repo", self.private_repo.is_some()),
                ("hub_strategy", self.strategy.is_some()),
                ("hub_token", self.token.is_some()),
                ("hub_revision", self.revision.is_some()),
            ];
            return match given.iter().find(|(_, g)| *g) {
                Some((name, _)) => Err(JobError::usage(format_args!(
                    "--{name} is a push setting: add --push_to_hub"
                ))),
                None => Ok(None),
            };
        }
        let Some(model_id) = self.model_id.clone() else {
            return Err(JobError::usage("--push_to_hub needs --hub_model_id OWNER/NAME (the Hub repo to push to, created if missing)"));
        };
        if let Err(e) = sft_hub::RepoId::model(&model_id) {
            return Err(JobError::usage(format_args!("--hub_model_id {e}")));
        }
        let strategy = self.strategy.as_deref().unwrap_or("every_save");
        let Some(strategy) = HubStrategy::parse(strategy) else {
            return Err(JobError::usage(format_args!(
                "--hub_strategy {strategy}: expected one of {}",
                HubStrategy::NAMES.join(", ")
            )));
        };
        Ok(Some(HubTarget {
            model_id,
            private: self.private_repo.unwrap_or(false),
            strategy,
            revision: self.revision.clone(),
            token: self.token.clone(),
        }))
    }
}

/// The memory settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct MemorySettings {
    /// Recompute each layer's forward in the backward (TRL's default: on).
    pub gradient_checkpointing: bool,
    /// Refuse a run whose predicted peak exceeds the available memory.
    pub check: bool,
}

/// A training run as its user described it: the flags, typed, nothing resolved yet.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// A model folder or a Hub id (`--model_name_or_path`).
    pub model: Option<String>,
    pub model_revision: Option<String>,
    /// `--dataset_name`: files, a folder, a prepared table or a Hub dataset.
    pub dataset: Option<PathBuf>,
    pub dataset_config: Option<String>,
    pub eval_dataset: Option<PathBuf>,
    pub train_split: String,
    pub test_split: Option<String>,
    pub output_dir: Option<PathBuf>,
    /// `--resume_from_checkpoint`: a folder, or `latest` (the newest in the output folder).
    pub resume_from_checkpoint: Option<String>,
    pub overwrite_output_dir: bool,
    /// The hyperparameters; `model_dir`, `output_dir` and `peft` are filled in from the
    /// fields above.
    pub config: TrainConfig,
    /// How the training rows become token rows.
    pub data: DataPlan,
    /// Packing of the evaluation rows.
    pub eval_packing: Option<PackingStrategy>,
    pub lora: LoraFlags,
    pub memory: MemorySettings,
    pub hub: HubFlags,
    /// `--export_gguf`: the GGUF types the final model (or, without a dataset, the model
    /// itself) is exported to.
    pub export_gguf: Vec<sft_gguf::GgufType>,
}

impl TrainRequest {
    /// Whether the run evaluates at all.
    fn evaluates(&self) -> bool {
        self.eval_dataset.is_some() || self.test_split.is_some()
    }

    fn model_name(&self) -> Result<&str, JobError> {
        self.model.as_deref().ok_or_else(|| {
            JobError::usage("--model_name_or_path is required (a model folder such as data-samples/models/tiny-llama)")
        })
    }

    /// The model card of a run pushed to `target`: TRL's metadata, the settings that shaped
    /// it and, once it has run, its final losses.
    pub fn model_card(
        &self,
        target: &HubTarget,
        summary: Option<&crate::Summary>,
    ) -> sft_hub::ModelCard {
        let mut datasets = Vec::new();
        for d in [&self.dataset, &self.eval_dataset].into_iter().flatten() {
            let name = d.to_string_lossy();
            if crate::hub::is_hub_dataset(&name) {
                let id = match sft_hub::HubPath::parse(&name) {
                    Some(Ok(p)) => p.repo.id().to_string(),
                    _ => name.to_string(),
                };
                if !datasets.contains(&id) {
                    datasets.push(id);
                }
            }
        }
        let c = &self.config;
        let mut training_args: Vec<(String, String)> = vec![
            ("learning_rate".into(), c.learning_rate.to_string()),
            (
                "lr_scheduler_type".into(),
                c.lr_scheduler_type.name().into(),
            ),
            (
                "per_device_train_batch_size".into(),
                c.per_device_train_batch_size.to_string(),
            ),
            (
                "gradient_accumulation_steps".into(),
                c.gradient_accumulation_steps.to_string(),
            ),
        ];
        match c.max_steps {
            Some(steps) => training_args.push(("max_steps".into(), steps.to_string())),
            None => training_args.push(("num_train_epochs".into(), c.num_train_epochs.to_string())),
        }
        if let Some(max_length) = self.data.options.max_length {
            training_args.push(("max_length".into(), max_length.to_string()));
        }
        if let Some(strategy) = self.data.packing {
            training_args.push(("packing".into(), "true".into()));
            training_args.push(("packing_strategy".into(), strategy.name().into()));
        }
        training_args.push(("seed".into(), c.seed.to_string()));
        let peft = self.lora.use_peft;
        if peft {
            training_args.push(("use_peft".into(), "true".into()));
            if let Some(r) = self.lora.r {
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
            base_model: self.model.clone(),
            datasets,
            library_name: if peft { "peft" } else { "transformers" }.into(),
            extra_tags: Vec::new(),
            training_args,
            results,
        }
    }

    /// `--dry_run`: the memory plan of the run, said, without loading weights or data; a
    /// plan that does not fit is refused as the run would be.
    pub fn dry_run(&self, say: &mut dyn FnMut(&str)) -> Result<(), JobError> {
        self.lora.check()?;
        let dir =
            sft_model::locate::model_dir_at(self.model_name()?, self.model_revision.as_deref())
                .map_err(JobError::usage)?;
        let lora = self.lora.config(&dir, say)?;
        let plan = MemoryCheck {
            request: self,
            lora: lora.as_ref(),
            evaluates: self.evaluates(),
        };
        plan.check(&dir, None, say)
            .map_err(|e| JobError::Failed(e.message))
    }

    /// `--push_only`: the finished run in `--output_dir` pushed as the end of a run pushes it.
    pub fn push_finished_run(&self) -> Result<sft_hub::PushedCommit, JobError> {
        let (Some(target), Some(out)) = (self.hub.target()?, &self.output_dir) else {
            return Err(JobError::usage(
                "--push_only needs --output_dir (the finished run) and --hub_model_id",
            ));
        };
        if !out.is_dir() {
            return Err(JobError::usage(format_args!(
                "--push_only: {} is not a folder",
                out.display()
            )));
        }
        let card = self.model_card(&target, None);
        crate::hub::push_only(target, out, &card).map_err(JobError::failed)
    }
}

/// A training run resolved and checked, before the model and the data are loaded.
#[derive(Debug)]
pub struct TrainJob {
    pub request: TrainRequest,
    /// The hyperparameters with the model folder, the output folder and LoRA filled in.
    pub config: TrainConfig,
    pub model_dir: PathBuf,
    pub output_dir: PathBuf,
    /// The checkpoint the run continues from.
    pub resume: Option<PathBuf>,
    pub train_path: PathBuf,
    pub eval_path: Option<PathBuf>,
    /// A Hub dataset's files of each split, in the shared cache.
    hub_train: Option<Vec<PathBuf>>,
    hub_eval: Option<Vec<PathBuf>>,
    pub lora: Option<LoraConfig>,
    pub hub: Option<HubTarget>,
}

/// A job whose model and data are loaded: the parts of a [`Trainer`].
pub struct LoadedJob {
    pub model: Box<dyn CausalLm>,
    pub config: TrainConfig,
    pub train: Vec<BatchRow>,
    pub eval: Vec<BatchRow>,
}

impl LoadedJob {
    /// The trainer of this job, stopped by `stop`.
    pub fn trainer(self, stop: &AtomicBool) -> Trainer<'_> {
        Trainer {
            model: self.model,
            cfg: self.config,
            train: self.train,
            eval: self.eval,
            stop,
        }
    }
}

impl TrainJob {
    /// Resolves and checks everything the run is told before anything heavy is loaded: a
    /// wrong flag costs nothing.
    pub fn assemble(
        request: TrainRequest,
        say: &mut dyn FnMut(&str),
    ) -> Result<TrainJob, JobError> {
        let hub = request.hub.target()?;
        request.lora.check()?;
        let model_name = request.model_name()?;
        let Some(dataset) = request.dataset.clone() else {
            return Err(JobError::usage(
                "--dataset_name is required (a data file or folder, or a prepared .parquet)",
            ));
        };
        let Some(output_dir) = request.output_dir.clone() else {
            return Err(JobError::usage("--output_dir is required"));
        };
        let model_dir =
            sft_model::locate::model_dir_at(model_name, request.model_revision.as_deref())
                .map_err(JobError::usage)?;
        let resume =
            crate::checkpoint::resume_from(&output_dir, request.resume_from_checkpoint.as_deref())
                .map_err(JobError::usage)?;
        let splits = Splits::resolve(&request, &dataset)?;
        // Nothing the run reads may be written into or over, and another run's files are not
        // mixed with this one's.
        let mut reads = vec![
            Read::new(&model_dir, "the model (--model_name_or_path)"),
            Read::new(&splits.train_path, "the training data (--dataset_name)"),
        ];
        if let Some(p) = &splits.eval_path {
            reads.push(Read::new(p, "the evaluation data"));
        }
        if let Some(t) = &request.data.chat_template {
            reads.push(Read::new(t, "the chat template (--chat_template_path)"));
        }
        // A Hub dataset is read from its files in the shared cache.
        for file in splits.hub_train.iter().chain(&splits.hub_eval).flatten() {
            reads.push(Read::new(
                file,
                "a file of the Hub dataset (in the Hugging Face cache)",
            ));
        }
        crate::output_dir::check_output_dir(
            &output_dir,
            &reads,
            resume.as_deref(),
            request.overwrite_output_dir,
        )
        .map_err(JobError::usage)?;
        let lora = request.lora.config(&model_dir, say)?;
        if let Some(dir) = &resume {
            let adapter = sft_model::lora::is_adapter_dir(dir);
            if adapter != lora.is_some() {
                return Err(JobError::usage(format_args!(
                    "--resume_from_checkpoint {}: the checkpoint holds {}, but this run {}\n  hint: resume with the flags the run was started with ({} --use_peft)",
                    dir.display(),
                    if adapter { "a LoRA adapter" } else { "full weights" },
                    if lora.is_some() { "trains LoRA adapters (--use_peft)" } else { "trains every weight" },
                    if adapter { "with" } else { "without" },
                )));
            }
        }
        let mut config = request.config.clone();
        config.model_dir = model_dir.clone();
        config.output_dir = output_dir.clone();
        config.peft = lora.as_ref().map(PeftSettings::of);
        config
            .validate(splits.eval_path.is_some())
            .map_err(JobError::usage)?;
        Ok(TrainJob {
            config,
            model_dir,
            output_dir,
            resume,
            train_path: splits.train_path,
            eval_path: splits.eval_path,
            hub_train: splits.hub_train,
            hub_eval: splits.hub_eval,
            lora,
            hub,
            request,
        })
    }

    /// Creates the Hub repo the run pushes to (an existing one is fine): a token that cannot
    /// push stops the run before it trains.
    pub fn start_push(&self) -> Result<Option<HubPush>, JobError> {
        match &self.hub {
            Some(target) => HubPush::start(target.clone(), &self.output_dir)
                .map(Some)
                .map_err(|e| JobError::failed(format_args!("--push_to_hub: {e}"))),
            None => Ok(None),
        }
    }

    /// Plans the memory, loads the model (or the checkpoint resumed from) and the data, and
    /// plans again at the data's real micro-batches; says what it loaded.
    pub fn load(self, device: &Device, say: &mut dyn FnMut(&str)) -> Result<LoadedJob, JobError> {
        let request = &self.request;
        let load_from = self.resume.as_deref().unwrap_or(&self.model_dir);
        // An adapter checkpoint has no config.json: the plan is of the base.
        let plan_dir = if self.lora.is_some() {
            &self.model_dir
        } else {
            load_from
        };
        let packed = request.data.packing.is_some();
        let memory = MemoryCheck {
            request,
            lora: self.lora.as_ref(),
            evaluates: request.evaluates() && self.config.eval_strategy != Strategy::No,
        };
        // Before anything is loaded the plan assumes every micro-batch at max_length.
        // Packed, that is their shape; unpacked it is an upper bound (a batch is padded to
        // its longest row), so a run it refuses is planned again at the data's longest
        // micro-batch once the data is read, and refused only if that does not fit either.
        let upper_bound_refusal = match memory.check(plan_dir, None, say) {
            Ok(()) => None,
            Err(e) if !packed && e.smaller_fits => Some(e.message),
            Err(e) => return Err(JobError::Failed(e.message)),
        };
        let started = Instant::now();
        // A checkpoint is checked whole (weights, moments, sizes) before the data is prepared.
        let mut model = match &self.resume {
            Some(dir) => crate::checkpoint::load_model(dir, Some(&self.model_dir), device),
            None => crate::checkpoint::load_base(
                &self.model_dir,
                self.lora.as_ref(),
                self.config.seed,
                device,
            )
            .map_err(|e| e.to_string()),
        }
        .map_err(JobError::failed)?;
        if let (Some(asked), Some(saved)) = (&self.lora, model.lora()) {
            if asked != saved {
                return Err(JobError::usage(format_args!(
                    "--resume_from_checkpoint: the checkpoint's adapter has r {}, alpha {}, dropout {}, targets {:?}, but the flags ask for r {}, alpha {}, dropout {}, targets {:?}\n  hint: resume with the LoRA flags the run was started with",
                    saved.r, saved.alpha, saved.dropout, saved.targets, asked.r, asked.alpha, asked.dropout, asked.targets
                )));
            }
        }
        model.set_gradient_checkpointing(request.memory.gradient_checkpointing);
        say(&format!(
            "model: {} ({} layers, hidden {}, {:.1} M parameters) from {} in {:.1} s",
            model.config().model_type(),
            model.config().num_hidden_layers(),
            model.config().hidden_size(),
            model.config().num_parameters() as f64 / 1e6,
            load_from.display(),
            started.elapsed().as_secs_f64()
        ));
        if let Some(l) = model.lora() {
            let trainable: usize = model.params().iter().map(|p| p.var.elem_count()).sum();
            let all = model.config().num_parameters();
            say(&format!(
                "LoRA: r {}, alpha {}, dropout {}, {}on {}; base frozen in its stored dtype; trainable params: {trainable} || all params: {} || trainable%: {:.4}",
                l.r,
                l.alpha,
                l.dropout,
                if l.use_rslora { "rsLoRA, " } else { "" },
                l.targets.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
                all + trainable,
                100.0 * trainable as f64 / (all + trainable) as f64
            ));
        }
        if request.overwrite_output_dir && self.resume.is_none() {
            let removed = crate::output_dir::clear_previous_run(&self.output_dir)
                .map_err(JobError::failed)?;
            if !removed.is_empty() {
                say(&format!(
                    "--overwrite_output_dir: removed the previous run's {} from {}",
                    removed.join(", "),
                    self.output_dir.display()
                ));
            }
        }
        let eval_plan = DataPlan {
            packing: request.eval_packing,
            ..request.data.clone()
        };
        let work = self.output_dir.join("data");
        let mut load =
            |path: &Path, hub_files: Option<&Vec<PathBuf>>, name: &str, plan: &DataPlan| {
                let dataset = match hub_files {
                    Some(files) => Dataset::open_files(path, files),
                    None => Dataset::open(path),
                }
                .map_err(JobError::failed)?;
                let loaded = load_rows(&dataset, name, &self.model_dir, plan, &work)
                    .map_err(JobError::failed)?;
                for line in loaded.describe(name) {
                    say(&line);
                }
                Ok::<_, JobError>(loaded.rows)
            };
        let train = load(
            &self.train_path,
            self.hub_train.as_ref(),
            "train",
            &request.data,
        )?;
        let eval = match &self.eval_path {
            Some(p) => load(p, self.hub_eval.as_ref(), "eval", &eval_plan)?,
            None => Vec::new(),
        };
        if !packed {
            let observed = Observed {
                longest: crate::trainer::longest_micro_batch(&self.config, &train).max(
                    if memory.evaluates {
                        eval.iter().map(|r| r.input_ids.len()).max().unwrap_or(0)
                    } else {
                        0
                    },
                ),
                rows: train.len(),
                eval_rows: eval.len(),
            };
            let c = &self.config;
            let max_length = request.data.options.max_length.unwrap_or(usize::MAX);
            let smaller = observed.longest < max_length
                || observed.rows < c.per_device_train_batch_size
                || (memory.evaluates && observed.eval_rows < c.per_device_eval_batch_size);
            if smaller {
                memory
                    .check(plan_dir, Some(observed), say)
                    .map_err(|e| JobError::Failed(e.message))?;
            } else if let Some(e) = upper_bound_refusal {
                return Err(JobError::Failed(e));
            }
        }
        let mut config = self.config;
        config.pad_token_id = model.config().pad_id(None);
        Ok(LoadedJob {
            model,
            config,
            train,
            eval,
        })
    }
}

/// Where the training and evaluation rows come from: a path, a DatasetDict's split
/// folders, or a Hub dataset's split files.
struct Splits {
    train_path: PathBuf,
    eval_path: Option<PathBuf>,
    hub_train: Option<Vec<PathBuf>>,
    hub_eval: Option<Vec<PathBuf>>,
}

impl Splits {
    fn resolve(request: &TrainRequest, dataset: &Path) -> Result<Splits, JobError> {
        let dataset_text = dataset.to_string_lossy().into_owned();
        let hub_dataset = crate::hub::is_hub_dataset(&dataset_text);
        if request.dataset_config.is_some() && !hub_dataset {
            return Err(JobError::usage(format_args!(
                "--dataset_config applies to a Hub dataset (OWNER/NAME); {} is a local path",
                dataset.display()
            )));
        }
        let split_files = |name: &str, split: &str| {
            crate::hub::dataset_split_files(name, request.dataset_config.as_deref(), split)
                .map_err(|e| JobError::usage(format_args!("--dataset_name {name}: {e}")))
        };
        let mut hub_train = None;
        let mut hub_eval = None;
        if hub_dataset {
            hub_train = split_files(&dataset_text, &request.train_split)?;
            if let Some(split) = &request.test_split {
                hub_eval = split_files(&dataset_text, split)?;
            }
        }
        if let Some(eval) = &request.eval_dataset {
            let name = eval.to_string_lossy().into_owned();
            if crate::hub::is_hub_dataset(&name) {
                let split = request.test_split.as_deref().unwrap_or("test");
                hub_eval = split_files(&name, split)?;
            }
        }
        let train_split = &request.train_split;
        let (train_path, eval_path) = match &request.test_split {
            _ if hub_dataset => (
                dataset.to_path_buf(),
                request
                    .eval_dataset
                    .clone()
                    .or_else(|| request.test_split.as_ref().map(|_| dataset.to_path_buf())),
            ),
            Some(split) if dataset.join(split).is_dir() => {
                (dataset.join(train_split), Some(dataset.join(split)))
            }
            Some(split) => return Err(JobError::usage(format_args!("--dataset_test_split {split}: {} has no {split} folder (a DatasetDict saved with save_to_disk has one per split)", dataset.display()))),
            None => (
                if dataset.join(train_split).is_dir() && dataset.join("dataset_dict.json").is_file() {
                    dataset.join(train_split)
                } else {
                    dataset.to_path_buf()
                },
                request.eval_dataset.clone(),
            ),
        };
        Ok(Splits {
            train_path,
            eval_path,
            hub_train,
            hub_eval,
        })
    }
}

/// The memory plan of a run: said, and with `--memory_check` a run predicted to exceed the
/// available memory is refused, naming flags that would make it fit.
struct MemoryCheck<'a> {
    request: &'a TrainRequest,
    lora: Option<&'a LoraConfig>,
    /// Whether the plan includes evaluation batches.
    evaluates: bool,
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

impl MemoryCheck<'_> {
    /// `observed`: the data's micro-batches, once they are known (unpacked runs); before
    /// that, micro-batches are planned at `max_length` and full.
    fn check(
        &self,
        model_dir: &Path,
        observed: Option<Observed>,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), PlanRefusal> {
        use sft_model::memory_plan::{
            gib, mem_available, stored_weight_bytes, suggestions, train_plan, LoraShape, TrainShape,
        };
        let c = &self.request.config;
        let max_length = self.request.data.options.max_length.unwrap_or(1024);
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
                c.per_device_train_batch_size,
                max_length,
                c.per_device_eval_batch_size,
            ),
            Some(o) => (
                c.per_device_train_batch_size.min(o.rows),
                o.longest,
                c.per_device_eval_batch_size.min(o.eval_rows),
            ),
        };
        let shape = TrainShape {
            rows: rows.max(1),
            max_length: max_length.max(1),
            grad_accum: c.gradient_accumulation_steps.max(1),
            checkpointing: self.request.memory.gradient_checkpointing,
            eval_rows: self.evaluates.then_some(eval_rows.max(1)),
            lora: self
                .lora
                .map(|l| LoraShape::new(l, stored_weight_bytes(&config))),
        };
        let plan = train_plan(&config, &shape);
        let available = mem_available();
        say(&format!(
            "memory plan{}: {} x {} tokens per micro-batch{}, gradient checkpointing {}:\n{}  available {}",
            if self.lora.is_some() { " (LoRA)" } else { "" },
            shape.rows,
            shape.max_length,
            match (self.request.data.packing.is_some(), observed) {
                (true, _) => " (packed)",
                (false, None) => " (padded to the longest row, at most max_length: an upper bound until the data is read)",
                (false, Some(_)) => " (this data's largest micro-batch, padded to its longest row)",
            },
            if shape.checkpointing { "on" } else { "off" },
            plan.render(),
            available.map_or("unknown".into(), |a| format!("{} (MemAvailable)", gib(a))),
        ));
        let Some(available) = available else {
            return Ok(());
        };
        if !self.request.memory.check || plan.peak() <= available {
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
}

/// `--merge_adapter ADAPTER --output_dir OUT`: the adapter merged into its base (`base`, or
/// the adapter's `base_model_name_or_path`) and written to `out` as a full model in the
/// base's stored dtype. Returns the base's folder.
pub fn merge_adapter(
    adapter: &Path,
    base: Option<&str>,
    out: Option<&Path>,
) -> Result<PathBuf, JobError> {
    let Some(out) = out else {
        return Err(JobError::usage(
            "--merge_adapter needs --output_dir (a new folder for the merged model)",
        ));
    };
    if !sft_model::lora::is_adapter_dir(adapter) {
        return Err(JobError::usage(format_args!(
            "--merge_adapter {}: no adapter_config.json; not a LoRA adapter folder\n  hint: pass a folder written by `sft-train --use_peft` or PEFT's save_pretrained",
            adapter.display()
        )));
    }
    let occupied = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if occupied || out.is_file() {
        return Err(JobError::usage(format_args!(
            "--output_dir {}: already exists and is not an empty folder\n  hint: the merged model goes into a new folder; pick another name or remove it",
            out.display()
        )));
    }
    let config = sft_model::lora::read_adapter(adapter).map_err(JobError::failed)?;
    let base_dir = sft_model::lora::base_model_dir(&config, base).map_err(JobError::failed)?;
    let reads = [
        Read::new(adapter, "the adapter (--merge_adapter)"),
        Read::new(&base_dir, "the base model"),
    ];
    let output = sft_io::paths::Output::new(
        out,
        "--output_dir",
        "write the merged model to a new folder outside the adapter and its base",
    );
    sft_io::paths::refuse_writing_into_reads(&reads, &[], &[output], &[])
        .map_err(JobError::usage)?;
    crate::checkpoint::merge_adapter(
        adapter,
        &config,
        &base_dir,
        out,
        &sft_model::device::default_device(),
    )
    .map_err(JobError::failed)?;
    Ok(base_dir)
}

/// `--export_gguf`: `source` (a model folder, a checkpoint, or a LoRA adapter, merged onto
/// its base first: `base`, else the adapter's `base_model_name_or_path`) exported to `out`
/// as one `NAME-TYPE.gguf` per type with an Ollama `Modelfile` beside them. `own_output`:
/// `source` is this run's output folder, and the files may go into it. `base_model`: the
/// Hub id the model was fine-tuned from, for the files' provenance. Says each file written.
pub fn export_gguf(
    source: &Path,
    base: Option<&str>,
    out: &Path,
    types: &[sft_gguf::GgufType],
    own_output: bool,
    base_model: Option<&str>,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<sft_gguf::Exported>, JobError> {
    let mut options = sft_gguf::ExportOptions {
        into_source: own_output,
        base_model: base_model.map(str::to_string),
        ..Default::default()
    };
    // An adapter is merged onto its base in a folder beside the output, removed after.
    let mut merged = None;
    let from = if sft_model::lora::is_adapter_dir(source) {
        let adapter = sft_model::lora::read_adapter(source).map_err(JobError::failed)?;
        let base_dir = sft_model::lora::base_model_dir(&adapter, base).map_err(JobError::failed)?;
        let beside = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".sft-merged-")
            .tempdir_in(&beside)
            .map_err(|e| JobError::failed(format_args!("{}: {e}", beside.display())))?;
        let dir = temp.path().join("model");
        say(&format!(
            "export: merging the adapter {} into {} first",
            source.display(),
            base_dir.display()
        ));
        crate::checkpoint::merge_adapter(
            source,
            &adapter,
            &base_dir,
            &dir,
            &sft_model::device::default_device(),
        )
        .map_err(JobError::failed)?;
        options.name = source
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if options.base_model.is_none() {
            options.base_model = adapter
                .base_model
                .clone()
                .filter(|b| !Path::new(b).exists());
        }
        options.into_source = false;
        merged = Some(temp);
        dir
    } else {
        source.to_path_buf()
    };
    let mut on = |event: &sft_gguf::ExportEvent| {
        if let sft_gguf::ExportEvent::FileDone(f) = event {
            say(&format!(
                "exported {} ({:.1} MB) in {:.1} s",
                f.path.display(),
                f.bytes as f64 / 1e6,
                f.seconds
            ));
        }
    };
    let written =
        sft_gguf::export_with_progress(&from, out, types, &options, &mut on).map_err(|e| match e {
            sft_gguf::GgufError::Output { .. } => {
                JobError::usage(format_args!("--export_gguf: {e}"))
            }
            other => JobError::failed(format_args!("--export_gguf: {other}")),
        });
    drop(merged);
    written
}
