//! The training loop: micro-batches in a seeded order per epoch, gradient accumulation
//! weighted by trained tokens (transformers' `num_items_in_batch`), global-norm clipping,
//! AdamW with decay groups, the schedule, logging, evaluation, early stopping, checkpoints
//! and resume.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use rayon::prelude::*;
use serde_json::{json, Value};
use sft_model::{Batch, BatchRow, Llama, LossStats};

use crate::checkpoint::{self, TrainingState};
use crate::config::{Strategy, TrainConfig};
use crate::logs::{loss_chart, peak_rss_mb, MetricsFile, Trackio};
use crate::optim::{clip_factor, AdamW};
use crate::rng::epoch_order;
use crate::schedule::{warmup_steps, Schedule};

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
    Saved(&'a std::path::Path),
    Message(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    EarlyStopped {
        step: usize,
    },
    Interrupted {
        checkpoint: PathBuf,
    },
    NonFinite {
        step: usize,
        what: String,
        last_checkpoint: Option<PathBuf>,
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

pub struct Trainer<'a> {
    pub model: Llama,
    pub cfg: TrainConfig,
    pub train: Vec<BatchRow>,
    pub eval: Vec<BatchRow>,
    pub stop: &'a AtomicBool,
}

impl Trainer<'_> {
    /// Runs to the end (or to a stop), from scratch or from `resume` (a checkpoint folder
    /// whose weights `self.model` was loaded from).
    pub fn run(
        mut self,
        resume: Option<&std::path::Path>,
        on: &mut dyn FnMut(Event),
    ) -> Result<Summary, String> {
        let started = Instant::now();
        let cfg = self.cfg.clone();
        if self.train.is_empty() {
            return Err("the training set has no rows".into());
        }
        cfg.validate(!self.eval.is_empty())?;
        std::fs::create_dir_all(&cfg.output_dir)
            .map_err(|e| format!("{}: {e}", cfg.output_dir.display()))?;
        let (steps_per_epoch, total_steps) = plan(&cfg, self.train.len());
        let schedule = Schedule {
            kind: cfg.lr_scheduler_type,
            base_lr: cfg.learning_rate,
            warmup_steps: warmup_steps(cfg.warmup_steps, total_steps),
            total_steps,
        };
        let sizes: Vec<usize> = self
            .model
            .params()
            .iter()
            .map(|p| p.var.elem_count())
            .collect();
        let (mut state, mut optimizer) = match resume {
            Some(dir) => {
                let (state, opt) = checkpoint::load_resume_state(dir, &self.model)?;
                if state.total_steps != total_steps || state.seed != cfg.seed {
                    on(Event::Message(format!(
                        "note: the checkpoint was made for {} steps with seed {}; this run has {} steps with seed {}",
                        state.total_steps, state.seed, total_steps, cfg.seed
                    )));
                }
                (state, opt)
            }
            None => (
                TrainingState {
                    total_steps,
                    seed: cfg.seed,
                    ..Default::default()
                },
                AdamW::new(cfg.adam, &sizes),
            ),
        };
        state.total_steps = total_steps;
        let metrics = MetricsFile::start(&cfg.output_dir, &state.log_history)?;
        let mut trackio = if cfg.report_to_trackio {
            Some(Trackio::new(
                &cfg.trackio_project,
                &cfg.run_name,
                serde_json::to_value(&cfg).expect("JSON"),
            )?)
        } else {
            None
        };
        let mut emit = |entry: Value,
                        state: &mut TrainingState,
                        on: &mut dyn FnMut(Event)|
         -> Result<(), String> {
            metrics.append(&entry)?;
            if let Some(t) = trackio.as_mut() {
                t.log(entry["step"].as_u64().unwrap_or(0) as usize, &entry)?;
            }
            on(Event::Log(&entry));
            state.log_history.push(entry);
            Ok(())
        };
        let micro_per_epoch = self.train.len().div_ceil(cfg.per_device_train_batch_size);
        let mut order_epoch = usize::MAX;
        let mut order = Vec::new();
        let mut last_checkpoint: Option<PathBuf> = resume.map(|p| p.to_path_buf());
        let mut outcome = Outcome::Finished;
        let mut train_loss_sum = 0.0;
        let mut train_loss_steps = 0usize;
        let device = self.model.device.clone();

        while state.global_step < total_steps {
            let step = state.global_step;
            let epoch = step / steps_per_epoch;
            if epoch != order_epoch {
                order = epoch_order(self.train.len(), cfg.seed, epoch, cfg.shuffle);
                order_epoch = epoch;
            }
            let first_micro = (step % steps_per_epoch) * cfg.gradient_accumulation_steps;
            let last_micro = (first_micro + cfg.gradient_accumulation_steps).min(micro_per_epoch);
            let step_started = Instant::now();
            let micro_rows: Vec<Vec<BatchRow>> = (first_micro..last_micro)
                .map(|m| {
                    let lo = m * cfg.per_device_train_batch_size;
                    let hi = (lo + cfg.per_device_train_batch_size).min(order.len());
                    order[lo..hi]
                        .iter()
                        .map(|&i| self.train[i].clone())
                        .collect()
                })
                .collect();
            let lr = schedule.lr(step);
            let result = optimizer_step(
                &self.model,
                &mut optimizer,
                &micro_rows,
                lr,
                cfg.max_grad_norm,
                cfg.pad_token_id,
            )?;
            let StepResult {
                loss: step_loss,
                grad_norm,
                tokens: step_tokens,
                ratios,
            } = match result {
                Ok(r) => r,
                Err(what) => {
                    outcome = Outcome::NonFinite {
                        step: step + 1,
                        what,
                        last_checkpoint: last_checkpoint.clone(),
                    };
                    break;
                }
            };
            state.global_step += 1;
            state.num_tokens += step_tokens;
            let w = &mut state.window;
            w.steps += 1;
            w.loss_sum += step_loss;
            w.tokens += step_tokens;
            w.seconds += step_started.elapsed().as_secs_f64();
            for (a, e) in ratios {
                w.accuracy.push(a);
                w.entropy.push(e);
            }
            train_loss_sum += step_loss;
            train_loss_steps += 1;
            let gs = state.global_step;
            let epoch_f = gs as f64 / steps_per_epoch as f64;
            on(Event::Step {
                step: gs,
                total: total_steps,
                loss: step_loss,
                lr,
                tokens_per_s: step_tokens as f64 / step_started.elapsed().as_secs_f64().max(1e-9),
            });
            let end_of_epoch = gs % steps_per_epoch == 0;
            if gs % cfg.logging_steps == 0 || gs == total_steps {
                let w = std::mem::take(&mut state.window);
                let mean = |v: &[f64]| {
                    if v.is_empty() {
                        0.0
                    } else {
                        v.iter().sum::<f64>() / v.len() as f64
                    }
                };
                let entry = json!({
                    "loss": round(w.loss_sum / w.steps.max(1) as f64),
                    "grad_norm": grad_norm,
                    // transformers logs the rate of the step to come.
                    "learning_rate": schedule.lr(gs),
                    "entropy": mean(&w.entropy),
                    "num_tokens": state.num_tokens,
                    "mean_token_accuracy": mean(&w.accuracy),
                    "tokens_per_second": (w.tokens as f64 / w.seconds.max(1e-9)).round(),
                    "peak_memory_mb": peak_rss_mb().map(|m| m.round()),
                    "epoch": round(epoch_f),
                    "step": gs,
                });
                emit(entry, &mut state, on)?;
            }
            let eval_now = match cfg.eval_strategy {
                Strategy::No => false,
                Strategy::Steps => gs % cfg.eval_steps == 0 || gs == total_steps,
                Strategy::Epoch => end_of_epoch || gs == total_steps,
            };
            let mut improved = false;
            if eval_now {
                let entry = self.evaluate(gs, epoch_f)?;
                let eval_loss = entry["eval_loss"].as_f64().unwrap_or(f64::NAN);
                emit(entry, &mut state, on)?;
                if state.best_metric.is_none_or(|b| eval_loss < b) {
                    state.best_metric = Some(eval_loss);
                    state.best_global_step = Some(gs);
                    state.evals_without_improvement = 0;
                    improved = true;
                } else {
                    state.evals_without_improvement += 1;
                }
            }
            let save_now = match cfg.save_strategy {
                Strategy::No => false,
                Strategy::Steps => gs % cfg.save_steps == 0,
                Strategy::Epoch => end_of_epoch,
            };
            let stopping = cfg
                .early_stopping_patience
                .is_some_and(|p| eval_now && state.evals_without_improvement >= p);
            let interrupted = self.stop.load(Ordering::SeqCst);
            if save_now || interrupted {
                if improved {
                    state.best_model_checkpoint = Some(
                        cfg.output_dir
                            .join(format!("checkpoint-{gs}"))
                            .display()
                            .to_string(),
                    );
                }
                let dir =
                    checkpoint::save_checkpoint(&self.model, &optimizer, &state, &cfg, epoch_f)?;
                on(Event::Saved(&dir));
                if let Some(limit) = cfg.save_total_limit {
                    let keep = state
                        .best_model_checkpoint
                        .as_deref()
                        .and_then(|b| std::path::Path::new(b).file_name())
                        .map(|n| n.to_string_lossy().to_string());
                    checkpoint::prune(&cfg.output_dir, limit.max(1), keep.as_deref());
                }
                last_checkpoint = Some(dir.clone());
                if interrupted {
                    outcome = Outcome::Interrupted { checkpoint: dir };
                    break;
                }
            }
            if stopping {
                on(Event::Message(format!(
                    "early stopping at step {gs}: eval_loss has not improved on {:.4} (step {}) for {} evaluations",
                    state.best_metric.unwrap_or(f64::NAN),
                    state.best_global_step.unwrap_or(0),
                    state.evals_without_improvement
                )));
                outcome = Outcome::EarlyStopped { step: gs };
                break;
            }
        }

        let seconds = started.elapsed().as_secs_f64();
        if matches!(outcome, Outcome::Finished | Outcome::EarlyStopped { .. }) {
            if cfg.load_best_model_at_end {
                if let Some(best) = state.best_model_checkpoint.clone() {
                    let path = PathBuf::from(&best);
                    if path.is_dir() {
                        self.model = Llama::load(&path, candle_core::DType::F32, &device)
                            .map_err(|e| e.to_string())?;
                        on(Event::Message(format!(
                            "loaded the best model, {best} (eval_loss {:.4})",
                            state.best_metric.unwrap_or(f64::NAN)
                        )));
                    }
                }
            }
            let final_entry = json!({
                "train_runtime": round(seconds),
                "train_samples_per_second": round(self.train.len() as f64 * state.global_step as f64 / steps_per_epoch as f64 / seconds.max(1e-9)),
                "train_steps_per_second": round(state.global_step as f64 / seconds.max(1e-9)),
                "total_flos": 0.0,
                "train_loss": if train_loss_steps > 0 { train_loss_sum / train_loss_steps as f64 } else { f64::NAN },
                "epoch": round(state.global_step as f64 / steps_per_epoch as f64),
                "step": state.global_step,
            });
            emit(final_entry, &mut state, on)?;
            checkpoint::save_model(&self.model, &cfg.model_dir, &cfg.output_dir)?;
            let epoch_f = state.global_step as f64 / steps_per_epoch as f64;
            checkpoint::write_json(
                &cfg.output_dir.join("trainer_state.json"),
                &checkpoint::trainer_state_json(&state, &cfg, epoch_f),
            )?;
            checkpoint::write_json(
                &cfg.output_dir.join("training_args.json"),
                &serde_json::to_value(&cfg).expect("JSON"),
            )?;
        }
        let chart = loss_chart(&state.log_history, &format!("{}: loss", cfg.run_name));
        checkpoint::write_file(&cfg.output_dir.join("loss.svg"), chart.as_bytes())?;
        Ok(Summary {
            outcome,
            global_step: state.global_step,
            total_steps,
            train_loss: if train_loss_steps > 0 {
                train_loss_sum / train_loss_steps as f64
            } else {
                f64::NAN
            },
            best_model_checkpoint: state.best_model_checkpoint.clone(),
            log_history: state.log_history,
            seconds,
        })
    }

    /// Loss and token statistics over the evaluation set (token-weighted means).
    fn evaluate(&self, step: usize, epoch: f64) -> Result<Value, String> {
        let started = Instant::now();
        let stats = self
            .model
            .score(
                &self.eval,
                self.cfg.per_device_eval_batch_size,
                self.cfg.pad_token_id,
            )
            .map_err(|e| e.to_string())?;
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

/// What one optimizer step did.
pub struct StepResult {
    /// The step's loss: summed token losses over its trained tokens.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real (non-padding) tokens seen.
    pub tokens: u64,
    /// (mean token accuracy, mean entropy) per micro-batch, as TRL logs them.
    pub ratios: Vec<(f64, f64)>,
}

/// One optimizer step over `micro_rows` (the micro-batches of one accumulation step): each
/// micro-batch's summed loss is divided by the trained tokens of the whole step (as
/// transformers' `num_items_in_batch`), gradients are summed, clipped to `max_grad_norm`,
/// and AdamW updates the weights at rate `lr`. A non-finite loss or gradient norm leaves the
/// weights untouched and comes back as `Ok(Err(what))`.
pub fn optimizer_step(
    model: &Llama,
    optimizer: &mut AdamW,
    micro_rows: &[Vec<BatchRow>],
    lr: f64,
    max_grad_norm: f64,
    pad: u32,
) -> Result<Result<StepResult, String>, String> {
    if micro_rows.is_empty() {
        return Err("an optimizer step needs at least one micro-batch".into());
    }
    let device = model.device.clone();
    let vocab = model.config.vocab_size;
    let num_items: usize = micro_rows
        .iter()
        .flatten()
        .map(BatchRow::trained_tokens)
        .sum();
    let params = model.params();
    let single = micro_rows.len() == 1;
    // One micro-batch: its gradients are used where backward left them. Several: they are
    // summed into buffers that live with the optimizer.
    let mut last: Vec<Option<Tensor>> = vec![None; params.len()];
    let mut step_loss = 0.0;
    let mut tokens = 0u64;
    let mut ratios = Vec::new();
    for (k, rows) in micro_rows.iter().enumerate() {
        let batch = Batch::new(rows, pad, vocab, &device).map_err(|e| e.to_string())?;
        tokens += batch.real_tokens as u64;
        let scale = 1.0 / num_items.max(1) as f64;
        let (stats, mut store) = model
            .loss_backward(&batch, scale, model.gradient_checkpointing)
            .map_err(|e| e.to_string())?;
        for (i, p) in params.iter().enumerate() {
            let g = store.remove(p.var.as_tensor());
            if single {
                last[i] = g;
                continue;
            }
            if optimizer.accumulated.len() != params.len() {
                optimizer.accumulated = params
                    .iter()
                    .map(|p| vec![0f32; p.var.elem_count()])
                    .collect();
            }
            let acc = &mut optimizer.accumulated[i];
            match g {
                Some(g) => with_f32(&g, |g| {
                    if k == 0 {
                        acc.copy_from_slice(g);
                    } else {
                        acc.par_iter_mut()
                            .zip(g.par_iter())
                            .for_each(|(a, b)| *a += b);
                    }
                })?,
                None if k == 0 => acc.fill(0.0),
                None => {}
            }
        }
        step_loss += stats.loss_sum / num_items.max(1) as f64;
        ratios.push(ratio_of(&stats));
    }
    if !step_loss.is_finite() {
        return Ok(Err(format!("loss {step_loss}")));
    }
    // Read-only views of every gradient for the norm and the update: the summed buffers,
    // or (one micro-batch) the backward's own tensors, on the CPU in f32.
    let grads: Vec<Tensor> = if single {
        params
            .iter()
            .zip(&last)
            .map(|(p, g)| match g {
                Some(g) => cpu_f32(g),
                None => Tensor::zeros(
                    p.var.shape(),
                    candle_core::DType::F32,
                    &candle_core::Device::Cpu,
                )
                .map_err(|e| e.to_string()),
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let guards: Vec<_> = grads.iter().map(|g| g.storage_and_layout()).collect();
    let slices: Vec<&[f32]> = if single {
        guards
            .iter()
            .map(|(storage, layout)| f32_view(storage, layout))
            .collect()
    } else {
        optimizer.accumulated.iter().map(Vec::as_slice).collect()
    };
    let (grad_norm, factor) = clip_factor(&slices, max_grad_norm);
    if !grad_norm.is_finite() {
        return Ok(Err(format!("gradient norm {grad_norm}")));
    }
    let config = optimizer.config;
    let step = optimizer.step + 1;
    for (i, p) in params.iter().enumerate() {
        let update = AdamWInPlace {
            config,
            step,
            moments: std::sync::Mutex::new(&mut optimizer.moments[i]),
            grad: slices[i],
            scale: factor as f32,
            lr,
            decay: p.decay,
        };
        if p.var.as_tensor().inplace_op1(&update).is_err() {
            // Not a contiguous f32 CPU tensor: update a copy and set it.
            let mut data: Vec<f32> = p
                .var
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| e.to_string())?;
            let m = update.moments.into_inner().expect("moments");
            crate::optim::adamw_update(
                config,
                step,
                m,
                &mut data,
                slices[i],
                factor as f32,
                lr,
                p.decay,
            );
            let t = Tensor::from_vec(data, p.var.shape(), &device).map_err(|e| e.to_string())?;
            p.var.set(&t).map_err(|e| e.to_string())?;
        }
    }
    drop(slices);
    drop(guards);
    optimizer.finish_step();
    Ok(Ok(StepResult {
        loss: step_loss,
        grad_norm,
        tokens,
        ratios,
    }))
}

fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

/// `t` as a contiguous f32 tensor on the CPU (itself when it already is one).
fn cpu_f32(t: &Tensor) -> Result<Tensor, String> {
    if is_cpu_f32(t) {
        return Ok(t.clone());
    }
    t.to_device(&candle_core::Device::Cpu)
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.contiguous())
        .map_err(|e| e.to_string())
}

/// The values of a tensor made by [`cpu_f32`].
fn f32_view<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout) -> &'a [f32] {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
        _ => unreachable!("cpu_f32 makes contiguous f32 CPU tensors"),
    }
}

/// Runs `f` on a tensor's f32 values, without copying them when they are on the CPU.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R, String> {
    let t = cpu_f32(t)?;
    let (storage, layout) = t.storage_and_layout();
    Ok(f(f32_view(&storage, layout)))
}

/// AdamW applied to a parameter's own storage (no copy in or out).
struct AdamWInPlace<'a> {
    config: crate::optim::AdamWConfig,
    step: u64,
    moments: std::sync::Mutex<&'a mut crate::optim::Moments>,
    grad: &'a [f32],
    scale: f32,
    lr: f64,
    decay: bool,
}

impl candle_core::InplaceOp1 for AdamWInPlace<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (candle_core::CpuStorage::F32(v), Some((a, b))) =
            (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("adamw: not a contiguous f32 tensor")
        };
        if b - a != self.grad.len() {
            candle_core::bail!(
                "adamw: gradient has {} values for {}",
                self.grad.len(),
                b - a
            );
        }
        let mut m = self.moments.lock().expect("moments");
        crate::optim::adamw_update(
            self.config,
            self.step,
            &mut m,
            &mut v[a..b],
            self.grad,
            self.scale,
            self.lr,
            self.decay,
        );
        Ok(())
    }
}

/// TRL's per-micro-batch ratios: accuracy and mean entropy over the trained tokens.
fn ratio_of(s: &LossStats) -> (f64, f64) {
    if s.tokens == 0 {
        (0.0, 0.0)
    } else {
        (
            s.correct as f64 / s.tokens as f64,
            s.entropy_sum / s.tokens as f64,
        )
    }
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}
