//! AdamW as torch.optim.AdamW computes it (decoupled weight decay applied first, bias
//! corrections), with transformers' parameter groups and global-norm gradient clipping,
//! applied in place to the parameters' own storage, and the f32 views of tensors it reads.

use candle_core::Tensor;
use rayon::prelude::*;
use sft_model::Param;

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
    let sq: f64 = per_tensor.iter().sum();
    let norm = sq.sqrt();
    if max_norm <= 0.0 {
        return (norm, 1.0);
    }
    let coef = max_norm / (norm + 1e-6);
    (norm, coef.min(1.0))
}
