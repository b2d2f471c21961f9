//! AdamW as torch.optim.AdamW computes it (decoupled weight decay applied first, bias
//! corrections), with transformers' parameter groups and global-norm gradient clipping,
//! applied in place to the parameters' own storage, and the f32 views of tensors it reads.
//!
//! Two implementations of the step's arithmetic ([`Kernels`]): fused loops over f32 slices
//! on the CPU (the fast path, in place), and plain candle tensor ops that any candle device
//! runs ([`adamw_update_tensors`], [`clip_factor_tensors`]); tests hold them equal on the CPU.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use sft_model::Param;

/// Which implementation runs an optimizer step's arithmetic (gradient accumulation, the
/// global norm, AdamW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Loops over f32 values on the CPU, in parallel: gradients summed into buffers that
    /// live from step to step ([`crate::accumulate::GradAccumulator`]), the norm in f64,
    /// AdamW in place on the parameters' own storage. No tensor is allocated.
    Fused,
    /// Plain candle tensor ops on the parameters' device, for devices other than the CPU:
    /// gradients summed as tensors, the norm from per-tensor sums of squares in f64, AdamW
    /// as tensor arithmetic (the moments, kept on the host for checkpoints, are copied to the
    /// device and back each step).
    Tensors,
}

impl Kernels {
    /// [`Kernels::Fused`] on the CPU, [`Kernels::Tensors`] elsewhere.
    pub fn for_device(device: &Device) -> Self {
        if device.is_cpu() {
            Kernels::Fused
        } else {
            Kernels::Tensors
        }
    }
}

/// Hyperparameters (transformers' defaults: betas 0.9/0.999, eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moments of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Optimizer steps taken (torch's `step`, shared by all parameters here).
    pub step: u64,
    pub moments: Vec<Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, sizes: &[usize]) -> Self {
        let moments = sizes
            .iter()
            .map(|&n| Moments {
                exp_avg: vec![0.0; n],
                exp_avg_sq: vec![0.0; n],
            })
            .collect();
        Self {
            config,
            step: 0,
            moments,
        }
    }

    /// One update of parameter `i` in place with gradient `grad * scale` at rate `lr`.
    pub fn update(
        &mut self,
        i: usize,
        param: &mut [f32],
        grad: &[f32],
        scale: f32,
        lr: f64,
        decay: bool,
    ) {
        adamw_update(
            self.config,
            self.step + 1,
            &mut self.moments[i],
            param,
            grad,
            scale,
            lr,
            decay,
        );
    }

    /// Marks the end of an optimizer step (after every parameter was updated).
    pub fn finish_step(&mut self) {
        self.step += 1;
    }

    /// One optimizer step: every parameter updated in its own storage with its gradient
    /// times `scale` (the clipping factor) at rate `lr`, then the step counted.
    pub fn apply(
        &mut self,
        params: &[Param],
        grads: &[&[f32]],
        scale: f32,
        lr: f64,
    ) -> Result<(), String> {
        let config = self.config;
        let step = self.step + 1;
        for (i, p) in params.iter().enumerate() {
            let update = AdamWInPlace {
                config,
                step,
                moments: std::sync::Mutex::new(&mut self.moments[i]),
                grad: grads[i],
                scale,
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
                adamw_update(config, step, m, &mut data, grads[i], scale, lr, p.decay);
                let t = Tensor::from_vec(data, p.var.shape(), p.var.device())
                    .map_err(|e| e.to_string())?;
                p.var.set(&t).map_err(|e| e.to_string())?;
            }
        }
        self.finish_step();
        Ok(())
    }
}

impl AdamW {
    /// [`AdamW::apply`] in candle tensor ops on each parameter's device: `grads` are the
    /// parameters' gradients (any dtype, on their devices), times `scale`.
    pub fn apply_tensors(
        &mut self,
        params: &[Param],
        grads: &[Tensor],
        scale: f32,
        lr: f64,
    ) -> Result<(), String> {
        let config = self.config;
        let step = self.step + 1;
        for (i, p) in params.iter().enumerate() {
            let mut run = || -> candle_core::Result<()> {
                let device = p.var.device();
                let shape = p.var.shape();
                let m = &mut self.moments[i];
                let exp_avg = Tensor::from_slice(&m.exp_avg, shape, device)?;
                let exp_avg_sq = Tensor::from_slice(&m.exp_avg_sq, shape, device)?;
                let param = p.var.as_tensor().to_dtype(DType::F32)?;
                let (param, exp_avg, exp_avg_sq) = adamw_update_tensors(
                    config,
                    step,
                    &param,
                    &grads[i],
                    &exp_avg,
                    &exp_avg_sq,
                    scale,
                    lr,
                    p.decay,
                )?;
                m.exp_avg = exp_avg.flatten_all()?.to_vec1()?;
                m.exp_avg_sq = exp_avg_sq.flatten_all()?.to_vec1()?;
                p.var.set(&param.to_dtype(p.var.dtype())?)
            };
            run().map_err(|e| format!("{}: {e}", p.name))?;
        }
        self.finish_step();
        Ok(())
    }
}

/// [`adamw_update`] in candle tensor ops (any device): from the parameter, its gradient
/// (times `scale`) and its moments, all f32, the updated parameter and moments.
#[allow(clippy::too_many_arguments)]
pub fn adamw_update_tensors(
    c: AdamWConfig,
    step: u64,
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    scale: f32,
    lr: f64,
    decay: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let bc1 = 1.0 - c.beta1.powi(step as i32);
    let bc2 = 1.0 - c.beta2.powi(step as i32);
    // The constants as the fused loop rounds them (f32).
    let step_size = (lr / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
    let g = (grad.to_dtype(DType::F32)? * scale as f64)?;
    let param = if decay {
        (param * (1.0 - lr * c.weight_decay) as f32 as f64)?
    } else {
        param.clone()
    };
    // torch: exp_avg.lerp_(grad, 1 - beta1)
    let exp_avg = (exp_avg + ((&g - exp_avg)? * (1.0 - b1) as f64)?)?;
    let exp_avg_sq = ((exp_avg_sq * b2 as f64)? + (g.sqr()? * (1.0 - b2) as f64)?)?;
    let denom = ((exp_avg_sq.sqrt()? / bc2_sqrt as f64)? + eps as f64)?;
    let param = (param - ((&exp_avg * step_size as f64)? / denom)?)?;
    Ok((param, exp_avg, exp_avg_sq))
}

/// torch.optim.AdamW's update of one tensor (`step` counts from 1), with the gradient
/// scaled by `scale` on the fly (the clipping factor).
#[allow(clippy::too_many_arguments)]
pub fn adamw_update(
    c: AdamWConfig,
    step: u64,
    m: &mut Moments,
    param: &mut [f32],
    grad: &[f32],
    scale: f32,
    lr: f64,
    decay: bool,
) {
    let bc1 = 1.0 - c.beta1.powi(step as i32);
    let bc2 = 1.0 - c.beta2.powi(step as i32);
    let step_size = (lr / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let decay_factor = if decay {
        (1.0 - lr * c.weight_decay) as f32
    } else {
        1.0
    };
    let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
    param
        .par_chunks_mut(4096)
        .zip(grad.par_chunks(4096))
        .zip(
            m.exp_avg
                .par_chunks_mut(4096)
                .zip(m.exp_avg_sq.par_chunks_mut(4096)),
        )
        .for_each(|((p, g), (ea, eas))| {
            for j in 0..p.len() {
                let g = g[j] * scale;
                p[j] *= decay_factor;
                // torch: exp_avg.lerp_(grad, 1 - beta1)
                ea[j] += (g - ea[j]) * (1.0 - b1);
                eas[j] = eas[j] * b2 + (1.0 - b2) * g * g;
                let denom = eas[j].sqrt() / bc2_sqrt + eps;
                p[j] -= step_size * ea[j] / denom;
            }
        });
}

pub(crate) fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

/// `t` as a contiguous f32 tensor on the CPU (itself when it already is one).
pub(crate) fn cpu_f32(t: &Tensor) -> Result<Tensor, String> {
    if is_cpu_f32(t) {
        return Ok(t.clone());
    }
    t.to_device(&candle_core::Device::Cpu)
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.contiguous())
        .map_err(|e| e.to_string())
}

/// The values of a tensor made by [`cpu_f32`].
pub(crate) fn f32_view<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> &'a [f32] {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
        _ => unreachable!("cpu_f32 makes contiguous f32 CPU tensors"),
    }
}

/// Runs `f` on a tensor's f32 values, without copying them when they are on the CPU.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R, String> {
    let t = cpu_f32(t)?;
    let (storage, layout) = t.storage_and_layout();
    Ok(f(f32_view(&storage, layout)))
}

/// AdamW applied to a parameter's own storage (no copy in or out).
struct AdamWInPlace<'a> {
    config: AdamWConfig,
    step: u64,
    moments: std::sync::Mutex<&'a mut Moments>,
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
        adamw_update(
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

/// The global L2 norm of all gradients, and the factor torch's `clip_grad_norm_` scales
/// them by (1 when within `max_norm`).
pub fn clip_factor(grads: &[&[f32]], max_norm: f64) -> (f64, f64) {
    // Per-tensor sums in parallel, added in a fixed order: the same bits on every run.
    let per_tensor: Vec<f64> = grads
        .par_iter()
        .map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
        .collect();
    clip_of(&per_tensor, max_norm)
}

/// [`clip_factor`] in candle tensor ops on the gradients' devices (sums of squares in f64).
pub fn clip_factor_tensors(grads: &[Tensor], max_norm: f64) -> Result<(f64, f64), String> {
    let per_tensor: Vec<f64> = grads
        .iter()
        .map(|g| {
            g.to_dtype(DType::F64)
                .and_then(|g| g.sqr())
                .and_then(|g| g.sum_all())
                .and_then(|s| s.to_scalar::<f64>())
        })
        .collect::<candle_core::Result<_>>()
        .map_err(|e| e.to_string())?;
    Ok(clip_of(&per_tensor, max_norm))
}

/// The norm and clipping factor from per-tensor sums of squares, added in order.
fn clip_of(per_tensor: &[f64], max_norm: f64) -> (f64, f64) {
    let sq: f64 = per_tensor.iter().sum();
    let norm = sq.sqrt();
    if max_norm <= 0.0 {
        return (norm, 1.0);
    }
    let coef = max_norm / (norm + 1e-6);
    (norm, coef.min(1.0))
}
