//! The training loop: micro-batches in a seeded order per epoch, gradient accumulation
//! weighted by trained tokens (transformers' `num_items_in_batch`), global-norm clipping,
//! AdamW with decay groups, the schedule, logging, evaluation, early stopping, checkpoints
//! and resume.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{json, Value};
use sft_model::{BatchRow, CausalLm};

use crate::accumulate::GradAccumulator;
use crate::charts::loss_chart;
use crate::checkpoint::{self, TrainingState};
use crate::config::{HealthPolicy, Strategy, TrainConfig};
use crate::data::micro_batches;
use crate::health::{HealthMonitor, HealthThresholds, Verdict};
use crate::metrics::{round, MetricsFile};
use crate::optim::AdamW;
use crate::rng::epoch_order;
use crate::schedule::{warmup_steps, Schedule};
use crate::step::{optimizer_step, StepOutcome, StepResult};
use crate::trackio::Trackio;
use crate::TrainError;

/// What the loop tells its caller as it goes (the CLI draws a progress bar from it).
pub enum Event<'a> {
    Step {
        step: usize,
        total: usize,
        loss: f64,
        lr: f64,
        tokens_per_s: f64,
    },
    Log(&'a Value),
    /// A checkpoint was written, in `seconds` (what a scheduler's grace period must allow).
    Saved {
        path: &'a std::path::Path,
        seconds: f64,
    },
    Message(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    EarlyStopped {
        step: usize,
    },
    /// Stopped by the caller (a signal): the checkpoint written at the stop, and how long
    /// writing it took.
    Interrupted {
        checkpoint: PathBuf,
        save_seconds: f64,
    },
    NonFinite {
        step: usize,
        what: String,
        last_checkpoint: Option<PathBuf>,
    },
    /// The run cannot learn ([`crate::health`]); stopped with `--health_checks stop`.
    Unhealthy {
        verdict: Verdict,
        /// The newest checkpoint saved before the run fell ill.
        last_good_checkpoint: Option<PathBuf>,
    },
}

pub struct Summary {
    pub outcome: Outcome,
    pub global_step: usize,
    pub total_steps: usize,
    pub train_loss: f64,
    pub best_model_checkpoint: Option<String>,
    pub log_history: Vec<Value>,
    pub seconds: f64,
}

/// Step counts of a run over `rows` rows.
pub fn plan(cfg: &TrainConfig, rows: usize) -> (usize, usize) {
    let micro_per_epoch = rows.div_ceil(cfg.per_device_train_batch_size).max(1);
    let steps_per_epoch = micro_per_epoch
        .div_ceil(cfg.gradient_accumulation_steps)
        .max(1);
    let total = cfg
        .max_steps
        .unwrap_or_else(|| (cfg.num_train_epochs * steps_per_epoch as f64).ceil() as usize);
    (steps_per_epoch, total.max(1))
}

/// The longest row of any micro-batch the run will see, over every epoch it covers, in
/// the seeded orders it will use: what an unpacked run's micro-batches are padded to at
/// their worst (at most `max_length`), for the memory plan.
pub fn longest_micro_batch(cfg: &TrainConfig, rows: &[BatchRow]) -> usize {
    if rows.is_empty() {
        return 0;
    }
    // Each epoch visits every row once, whatever its order: the longest row is in some
    // micro-batch. Only a run that stops inside its first epoch sees fewer rows.
    let (steps_per_epoch, total) = plan(cfg, rows.len());
    if total >= steps_per_epoch {
        return rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
    }
    let order = epoch_order(rows.len(), cfg.seed, 0, cfg.shuffle);
    let seen = (total * cfg.gradient_accumulation_steps * cfg.per_device_train_batch_size)
        .min(order.len());
    order[..seen]
        .iter()
        .map(|&i| rows[i].input_ids.len())
        .max()
        .unwrap_or(0)
}

pub struct Trainer<'a> {
    /// The model being trained, of any architecture the registry knows.
    pub model: Box<dyn CausalLm>,
    pub cfg: TrainConfig,
    pub train: Vec<BatchRow>,
    pub eval: Vec<BatchRow>,
    pub stop: &'a AtomicBool,
}

/// Where the run's log entries go: metrics.jsonl, Trackio, the caller, the history.
struct Sinks {
    metrics: MetricsFile,
    trackio: Option<Trackio>,
}

impl Sinks {
    fn emit(
        &mut self,
        entry: Value,
        state: &mut TrainingState,
        on: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        self.metrics.append(&entry).map_err(TrainError::Logs)?;
        if let Some(t) = self.trackio.as_mut() {
            t.log(entry["step"].as_u64().unwrap_or(0) as usize, &entry)
                .map_err(TrainError::Logs)?;
        }
        on(Event::Log(&entry));
        state.log_history.push(entry);
        Ok(())
    }
}

/// The run in progress: everything the loop changes from step to step.
struct Run {
    state: TrainingState,
    optimizer: AdamW,
    accumulator: GradAccumulator,
    sinks: Sinks,
    schedule: Schedule,
    steps_per_epoch: usize,
    total_steps: usize,
    /// The epoch whose row order `order` is.
    order_epoch: usize,
    order: Vec<usize>,
    last_checkpoint: Option<PathBuf>,
    train_loss_sum: f64,
    train_loss_steps: usize,
    /// `total_flos` per input token: 6 x the parameters transformers counts (fixed for a run).
    flops_per_token: f64,
}

impl Run {
    fn train_loss(&self) -> f64 {
        if self.train_loss_steps > 0 {
            self.train_loss_sum / self.train_loss_steps as f64
        } else {
            f64::NAN
        }
    }

    fn epoch(&self) -> f64 {
        self.state.global_step as f64 / self.steps_per_epoch as f64
    }
}

impl Trainer<'_> {
    /// Runs to the end (or to a stop), from scratch or from `resume` (a checkpoint folder
    /// whose weights `self.model` was loaded from).
    pub fn run(
        mut self,
        resume: Option<&Path>,
        on: &mut dyn FnMut(Event),
    ) -> Result<Summary, TrainError> {
        let started = Instant::now();
        let mut run = self.start(resume, on)?;
        let mut outcome = Outcome::Finished;
        let mut health = HealthMonitor::new(
            Some(self.model.config().vocab_size()),
            Some(self.cfg.learning_rate),
            HealthThresholds::default(),
        );
        let mut warned = Vec::new();
        while run.state.global_step < run.total_steps {
            let step_started = Instant::now();
            let lr = run.schedule.lr(run.state.global_step);
            let rows = self.micro_batches(&mut run);
            // LoRA dropout is drawn from the run's seed and the step: a resumed run draws
            // what the uninterrupted one would have.
            self.model.set_dropout_seed(
                self.cfg.seed
                    ^ (run.state.global_step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let result = match optimizer_step(
                self.model.as_ref(),
                &mut run.optimizer,
                &mut run.accumulator,
                &rows,
                lr,
                self.cfg.max_grad_norm,
                self.cfg.pad_token_id,
            )
            .map_err(TrainError::Step)?
            {
                StepOutcome::Done(r) => r,
                StepOutcome::NonFinite(what) => {
                    outcome = Outcome::NonFinite {
                        step: run.state.global_step + 1,
                        what,
                        last_checkpoint: run.last_checkpoint.clone(),
                    };
                    break;
                }
            };
            let seconds = step_started.elapsed().as_secs_f64();
            self.record(&mut run, &result, seconds);
            on(Event::Step {
                step: run.state.global_step,
                total: run.total_steps,
                loss: result.loss,
                lr,
                tokens_per_s: result.tokens as f64 / seconds.max(1e-9),
            });
            let logged = self.log(&mut run, &result, on)?;
            let gs = run.state.global_step;
            let entropy = (!result.ratios.is_empty()).then(|| {
                result.ratios.iter().map(|r| r.1).sum::<f64>() / result.ratios.len() as f64
            });
            let verdict = health
                .step(gs, result.loss, Some(result.grad_norm), entropy)
                .or_else(|| logged.and_then(|loss| health.log(gs, loss)));
            if let Some(v) = verdict {
                if self.cfg.health_checks == HealthPolicy::Stop {
                    let last_good_checkpoint = checkpoint::list_checkpoints(&self.cfg.output_dir)
                        .into_iter()
                        .filter(|(step, _)| *step < v.since_step)
                        .map(|(_, p)| p)
                        .next_back();
                    outcome = Outcome::Unhealthy {
                        verdict: v,
                        last_good_checkpoint,
                    };
                    break;
                }
                if !warned.contains(&v.sickness) {
                    warned.push(v.sickness);
                    on(Event::Message(format!(
                        "sft-train: warning: step {}: the run {}: {}\n  likely cause: {}\n  (--health_checks warn: training goes on)",
                        v.step,
                        v.sickness.name(),
                        v.message,
                        v.cause
                    )));
                }
            }
            let evaluated = self.evaluate_if_due(&mut run, on)?;
            if let Some(stop) = self.save_if_due(&mut run, evaluated, on)? {
                outcome = stop;
                break;
            }
            if let Some(stop) = self.early_stop(&run, evaluated, on) {
                outcome = stop;
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if matches!(outcome, Outcome::Finished | Outcome::EarlyStopped { .. }) {
            self.finish(&mut run, seconds, on)?;
        }
        let chart = loss_chart(
            &run.state.log_history,
            &format!("{}: loss", self.cfg.run_name),
        );
        checkpoint::write_file(&self.cfg.output_dir.join("loss.svg"), chart.as_bytes())
            .map_err(TrainError::Logs)?;
        Ok(Summary {
            outcome,
            global_step: run.state.global_step,
            total_steps: run.total_steps,
            train_loss: run.train_loss(),
            best_model_checkpoint: run.state.best_model_checkpoint.clone(),
            log_history: run.state.log_history,
            seconds,
        })
    }

    /// The run's schedule, counters and optimizer: new, or as the checkpoint left them.
    fn start(&self, resume: Option<&Path>, on: &mut dyn FnMut(Event)) -> Result<Run, TrainError> {
        let cfg = &self.cfg;
        if self.train.is_empty() {
            return Err(TrainError::Config("the training set has no rows".into()));
        }
        cfg.validate(!self.eval.is_empty())
            .map_err(TrainError::Config)?;
        std::fs::create_dir_all(&cfg.output_dir).map_err(|e| TrainError::Io {
            path: cfg.output_dir.clone(),
            message: e.to_string(),
        })?;
        let (steps_per_epoch, total_steps) = plan(cfg, self.train.len());
        let schedule = Schedule {
            kind: cfg.lr_scheduler_type,
            base_lr: cfg.learning_rate,
            warmup_steps: warmup_steps(cfg.warmup_steps, total_steps),
            total_steps,
        };
        let (mut state, optimizer) = match resume {
            Some(dir) => {
                let (state, opt) = checkpoint::load_resume_state(dir, self.model.as_ref())
                    .map_err(TrainError::Checkpoint)?;
                if state.total_steps != total_steps || state.seed != cfg.seed {
                    on(Event::Message(format!(
                        "note: the checkpoint was made for {} steps with seed {}; this run has {} steps with seed {}",
                        state.total_steps, state.seed, total_steps, cfg.seed
                    )));
                }
                (state, opt)
            }
            None => {
                let sizes: Vec<usize> = self
                    .model
                    .params()
                    .iter()
                    .map(|p| p.var.elem_count())
                    .collect();
                (
                    TrainingState {
                        total_steps,
                        seed: cfg.seed,
                        ..Default::default()
                    },
                    AdamW::new(cfg.adam, &sizes),
                )
            }
        };
        state.total_steps = total_steps;
        let metrics =
            MetricsFile::start(&cfg.output_dir, &state.log_history).map_err(TrainError::Logs)?;
        let trackio = if cfg.report_to_trackio {
            Some(
                Trackio::new(
                    &cfg.trackio_project,
                    &cfg.run_name,
                    serde_json::to_value(cfg).expect("JSON"),
                )
                .map_err(TrainError::Logs)?,
            )
        } else {
            None
        };
        Ok(Run {
            state,
            optimizer,
            accumulator: GradAccumulator::new(),
            sinks: Sinks { metrics, trackio },
            schedule,
            steps_per_epoch,
            total_steps,
            order_epoch: usize::MAX,
            order: Vec::new(),
            last_checkpoint: resume.map(Path::to_path_buf),
            train_loss_sum: 0.0,
            train_loss_steps: 0,
            flops_per_token: 6.0 * self.flops_parameters() as f64,
        })
    }

    /// The micro-batches of the next step, in the epoch's seeded row order.
    fn micro_batches(&self, run: &mut Run) -> Vec<Vec<BatchRow>> {
        let cfg = &self.cfg;
        let step = run.state.global_step;
        let epoch = step / run.steps_per_epoch;
        if epoch != run.order_epoch {
            run.order = epoch_order(self.train.len(), cfg.seed, epoch, cfg.shuffle);
            run.order_epoch = epoch;
        }
        micro_batches(
            &self.train,
            &run.order,
            step % run.steps_per_epoch,
            cfg.per_device_train_batch_size,
            cfg.gradient_accumulation_steps,
        )
    }

    /// The parameters a token's forward and backward multiply by, as transformers counts
    /// them for `total_flos`: every parameter but the embedding, adapters included.
    fn flops_parameters(&self) -> usize {
        let adapters: usize = if self.model.lora().is_some() {
            self.model.params().iter().map(|p| p.var.elem_count()).sum()
        } else {
            0
        };
        self.model.config().non_embedding_parameters() + adapters
    }

    /// Counts a finished step.
    fn record(&self, run: &mut Run, result: &StepResult, seconds: f64) {
        run.state.global_step += 1;
        run.state.num_tokens += result.tokens;
        run.state.total_flos += run.flops_per_token * result.input_tokens as f64;
        run.state.window.record(result, seconds);
        run.train_loss_sum += result.loss;
        run.train_loss_steps += 1;
    }

    /// The training log entry, every `logging_steps` and at the last step. Returns the
    /// logged loss (the window's mean) when it logged.
    fn log(
        &self,
        run: &mut Run,
        result: &StepResult,
        on: &mut dyn FnMut(Event),
    ) -> Result<Option<f64>, TrainError> {
        let gs = run.state.global_step;
        if !gs.is_multiple_of(self.cfg.logging_steps) && gs != run.total_steps {
            return Ok(None);
        }
        let entry = run.state.window.flush(
            gs,
            result.grad_norm,
            // transformers logs the rate of the step to come.
            run.schedule.lr(gs),
            run.state.num_tokens,
            round(run.epoch()),
        );
        let loss = entry["loss"].as_f64();
        run.sinks.emit(entry, &mut run.state, on)?;
        Ok(loss)
    }

    /// Evaluates when `eval_strategy` says so, and tracks the best eval loss. Returns
    /// whether it evaluated and whether the loss improved.
    fn evaluate_if_due(
        &self,
        run: &mut Run,
        on: &mut dyn FnMut(Event),
    ) -> Result<Evaluated, TrainError> {
        let gs = run.state.global_step;
        let due = match self.cfg.eval_strategy {
            Strategy::No => false,
            Strategy::Steps => gs.is_multiple_of(self.cfg.eval_steps) || gs == run.total_steps,
            Strategy::Epoch => gs.is_multiple_of(run.steps_per_epoch) || gs == run.total_steps,
        };
        if !due {
            return Ok(Evaluated::No);
        }
        let entry = self.evaluate(gs, run.epoch())?;
        let eval_loss = entry["eval_loss"].as_f64().unwrap_or(f64::NAN);
        run.sinks.emit(entry, &mut run.state, on)?;
        let state = &mut run.state;
        if state.best_metric.is_none_or(|b| eval_loss < b) {
            state.best_metric = Some(eval_loss);
            state.best_global_step = Some(gs);
            state.evals_without_improvement = 0;
            Ok(Evaluated::Improved)
        } else {
            state.evals_without_improvement += 1;
            Ok(Evaluated::NotImproved)
        }
    }

    /// Saves a checkpoint when `save_strategy` says so or Ctrl-C was pressed (then the run
    /// stops: the outcome is returned).
    fn save_if_due(
        &self,
        run: &mut Run,
        evaluated: Evaluated,
        on: &mut dyn FnMut(Event),
    ) -> Result<Option<Outcome>, TrainError> {
        let cfg = &self.cfg;
        let gs = run.state.global_step;
        let due = match cfg.save_strategy {
            Strategy::No => false,
            Strategy::Steps => gs.is_multiple_of(cfg.save_steps),
            Strategy::Epoch => gs.is_multiple_of(run.steps_per_epoch),
        };
        let interrupted = self.stop.load(Ordering::SeqCst);
        if !due && !interrupted {
            return Ok(None);
        }
        if evaluated == Evaluated::Improved {
            run.state.best_model_checkpoint = Some(
                cfg.output_dir
                    .join(format!("checkpoint-{gs}"))
                    .display()
                    .to_string(),
            );
        }
        let save_started = Instant::now();
        let dir = checkpoint::save_checkpoint(
            self.model.as_ref(),
            &run.optimizer,
            &run.state,
            cfg,
            run.epoch(),
        )
        .map_err(TrainError::Checkpoint)?;
        let save_seconds = save_started.elapsed().as_secs_f64();
        on(Event::Saved {
            path: &dir,
            seconds: save_seconds,
        });
        if let Some(limit) = cfg.save_total_limit {
            let keep = run
                .state
                .best_model_checkpoint
                .as_deref()
                .and_then(|b| Path::new(b).file_name())
                .map(|n| n.to_string_lossy().to_string());
            checkpoint::prune(&cfg.output_dir, limit.max(1), keep.as_deref());
        }
        run.last_checkpoint = Some(dir.clone());
        Ok(interrupted.then_some(Outcome::Interrupted {
            checkpoint: dir,
            save_seconds,
        }))
    }

    /// Early stopping: `early_stopping_patience` evaluations without a better eval loss.
    fn early_stop(
        &self,
        run: &Run,
        evaluated: Evaluated,
        on: &mut dyn FnMut(Event),
    ) -> Option<Outcome> {
        let state = &run.state;
        let patience = self.cfg.early_stopping_patience?;
        if evaluated == Evaluated::No || state.evals_without_improvement < patience {
            return None;
        }
        on(Event::Message(format!(
            "early stopping at step {}: eval_loss has not improved on {:.4} (step {}) for {} evaluations",
            state.global_step,
            state.best_metric.unwrap_or(f64::NAN),
            state.best_global_step.unwrap_or(0),
            state.evals_without_improvement
        )));
        Some(Outcome::EarlyStopped {
            step: state.global_step,
        })
    }

    /// The end of a run that was not stopped: the best model back if asked, the summary
    /// entry, the final model and its trainer_state.json and training_args.json.
    fn finish(
        &mut self,
        run: &mut Run,
        seconds: f64,
        on: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        let cfg = self.cfg.clone();
        if cfg.load_best_model_at_end {
            if let Some(best) = run.state.best_model_checkpoint.clone() {
                let path = PathBuf::from(&best);
                if path.is_dir() {
                    let device = self.model.device().clone();
                    self.model = checkpoint::load_weights(&path, &cfg.model_dir, &device)
                        .map_err(TrainError::Model)?;
                    on(Event::Message(format!(
                        "loaded the best model, {best} (eval_loss {:.4})",
                        run.state.best_metric.unwrap_or(f64::NAN)
                    )));
                }
            }
        }
        let gs = run.state.global_step;
        let final_entry = json!({
            "train_runtime": round(seconds),
            "train_samples_per_second": round(self.train.len() as f64 * gs as f64 / run.steps_per_epoch as f64 / seconds.max(1e-9)),
            "train_steps_per_second": round(gs as f64 / seconds.max(1e-9)),
            "total_flos": run.state.total_flos,
            "train_loss": run.train_loss(),
            "epoch": round(run.epoch()),
            "step": gs,
        });
        run.sinks.emit(final_entry, &mut run.state, on)?;
        let saved = || -> Result<(), String> {
            checkpoint::save_model(self.model.as_ref(), &cfg.model_dir, &cfg.output_dir)?;
            checkpoint::write_json(
                &cfg.output_dir.join("trainer_state.json"),
                &checkpoint::trainer_state_json(&run.state, &cfg, run.epoch()),
            )?;
            checkpoint::write_json(
                &cfg.output_dir.join("training_args.json"),
                &serde_json::to_value(&cfg).expect("JSON"),
            )
        };
        saved().map_err(TrainError::Checkpoint)
    }

    /// Loss and token statistics over the evaluation set (token-weighted means).
    fn evaluate(&self, step: usize, epoch: f64) -> Result<Value, TrainError> {
        let started = Instant::now();
        let stats = self
            .model
            .score(
                &self.eval,
                self.cfg.per_device_eval_batch_size,
                self.cfg.pad_token_id,
            )
            .map_err(TrainError::Model)?;
        let seconds = started.elapsed().as_secs_f64();
        let n = stats.tokens.max(1) as f64;
        Ok(json!({
            "eval_loss": stats.loss_sum / n,
            "eval_runtime": round(seconds),
            "eval_samples_per_second": round(self.eval.len() as f64 / seconds.max(1e-9)),
            "eval_steps_per_second": round(self.eval.len().div_ceil(self.cfg.per_device_eval_batch_size) as f64 / seconds.max(1e-9)),
            "eval_entropy": stats.entropy_sum / n,
            "eval_num_tokens": stats.tokens,
            "eval_mean_token_accuracy": stats.correct as f64 / n,
            "epoch": round(epoch),
            "step": step,
        }))
    }
}

/// Whether a step evaluated, and with what result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evaluated {
    No,
    Improved,
    NotImproved,
}
