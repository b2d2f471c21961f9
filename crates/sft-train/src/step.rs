//! One optimizer step, top to bottom: the micro-batches' losses and gradients (summed by
//! the [`GradAccumulator`] when there are several), the global norm and its clipping, the
//! AdamW update.

use candle_core::Tensor;
use sft_model::{Batch, BatchRow, CausalLm, LossStats};

use crate::accumulate::GradAccumulator;
use crate::optim::{clip_factor, clip_factor_tensors, cpu_f32, f32_view, AdamW, Kernels};

/// What one optimizer step did.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The step's loss: summed token losses over its trained tokens.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real (non-padding) tokens seen.
    pub tokens: u64,
    /// Tokens fed to the model, padding included (transformers' `input_ids.numel()`, what
    /// its FLOP count is of).
    pub input_tokens: u64,
    /// (mean token accuracy, mean entropy) per micro-batch, as TRL logs them.
    pub ratios: Vec<(f64, f64)>,
}

/// How a step ended: done, or stopped before touching the weights by a non-finite loss
/// or gradient norm (what it was).
#[derive(Debug, Clone)]
pub enum StepOutcome {
    Done(StepResult),
    NonFinite(String),
}

impl StepOutcome {
    /// The step's result, if it was done.
    pub fn done(self) -> Option<StepResult> {
        match self {
            StepOutcome::Done(r) => Some(r),
            StepOutcome::NonFinite(_) => None,
        }
    }
}

/// One optimizer step over `micro_rows` (the micro-batches of one accumulation step): each
/// micro-batch's summed loss is divided by the trained tokens of the whole step (as
/// transformers' `num_items_in_batch`), gradients are summed, clipped to `max_grad_norm`,
/// and AdamW updates the weights at rate `lr`. A non-finite loss or gradient norm leaves the
/// weights untouched.
///
/// The arithmetic runs as [`Kernels::for_device`] picks for the model's device (the fused
/// CPU loops on the CPU); [`optimizer_step_with`] chooses.
#[allow(clippy::too_many_arguments)]
pub fn optimizer_step(
    model: &dyn CausalLm,
    optimizer: &mut AdamW,
    accumulator: &mut GradAccumulator,
    micro_rows: &[Vec<BatchRow>],
    lr: f64,
    max_grad_norm: f64,
    pad: u32,
) -> Result<StepOutcome, String> {
    let kernels = Kernels::for_device(model.device());
    optimizer_step_with(
        kernels,
        model,
        optimizer,
        accumulator,
        micro_rows,
        lr,
        max_grad_norm,
        pad,
    )
}

/// [`optimizer_step`] with the given [`Kernels`] (the accumulator is used by the fused
/// ones only).
#[allow(clippy::too_many_arguments)]
pub fn optimizer_step_with(
    kernels: Kernels,
    model: &dyn CausalLm,
    optimizer: &mut AdamW,
    accumulator: &mut GradAccumulator,
    micro_rows: &[Vec<BatchRow>],
    lr: f64,
    max_grad_norm: f64,
    pad: u32,
) -> Result<StepOutcome, String> {
    if micro_rows.is_empty() {
        return Err("an optimizer step needs at least one micro-batch".into());
    }
    let num_items: usize = micro_rows
        .iter()
        .flatten()
        .map(BatchRow::trained_tokens)
        .sum();
    let params = model.params();
    // One micro-batch: its gradients are used where backward left them. Several: they are
    // summed by the accumulator.
    let single = micro_rows.len() == 1;
    let mut last: Vec<Option<Tensor>> = vec![None; params.len()];
    let (mut step_loss, mut tokens, mut ratios) = (0.0, 0u64, Vec::new());
    let mut input_tokens = 0u64;
    accumulator.start();
    // The adapters' dropout masks: one seed per micro-batch, derived from the step's.
    let step_seed = model.dropout_seed();
    for (k, rows) in micro_rows.iter().enumerate() {
        model.set_dropout_seed(step_seed ^ (k as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        let batch = Batch::new(rows, pad, model.config().vocab_size(), model.device())
            .map_err(|e| e.to_string())?;
        tokens += batch.real_tokens as u64;
        input_tokens += (batch.rows * batch.len) as u64;
        // The backward, with each layer recomputed from its input when the model is set
        // to gradient checkpointing.
        let scale = 1.0 / num_items.max(1) as f64;
        let (stats, mut store) = model
            .loss_backward(&batch, scale, model.gradient_checkpointing())
            .map_err(|e| e.to_string())?;
        match kernels {
            Kernels::Tensors => crate::accumulate::add_tensors(&mut last, params, &mut store)?,
            Kernels::Fused if single => {
                for (g, p) in last.iter_mut().zip(params) {
                    *g = store.remove(p.var.as_tensor());
                }
            }
            Kernels::Fused => accumulator.add(params, &mut store)?,
        }
        step_loss += stats.loss_sum / num_items.max(1) as f64;
        ratios.push(ratio_of(&stats));
    }
    model.set_dropout_seed(step_seed);
    if !step_loss.is_finite() {
        return Ok(StepOutcome::NonFinite(format!("loss {step_loss}")));
    }
    let result = StepResult {
        loss: step_loss,
        grad_norm: 0.0,
        tokens,
        input_tokens,
        ratios,
    };
    if kernels == Kernels::Tensors {
        // Missing gradients are zeros, on the parameter's device.
        let grads: Vec<Tensor> = params
            .iter()
            .zip(last)
            .map(|(p, g)| match g {
                Some(g) => Ok(g),
                None => Tensor::zeros(p.var.shape(), candle_core::DType::F32, p.var.device()),
            })
            .collect::<candle_core::Result<_>>()
            .map_err(|e| e.to_string())?;
        let (grad_norm, factor) = clip_factor_tensors(&grads, max_grad_norm)?;
        if !grad_norm.is_finite() {
            return Ok(StepOutcome::NonFinite(format!("gradient norm {grad_norm}")));
        }
        optimizer.apply_tensors(params, &grads, factor as f32, lr)?;
        return Ok(StepOutcome::Done(StepResult {
            grad_norm,
            ..result
        }));
    }
    // Read-only views of every gradient for the norm and the update: the accumulated sums,
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
        accumulator.sums()
    };
    let (grad_norm, factor) = clip_factor(&slices, max_grad_norm);
    if !grad_norm.is_finite() {
        return Ok(StepOutcome::NonFinite(format!("gradient norm {grad_norm}")));
    }
    optimizer.apply(params, &slices, factor as f32, lr)?;
    Ok(StepOutcome::Done(StepResult {
        grad_norm,
        ..result
    }))
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
