//! AdamW as torch.optim.AdamW computes it (decoupled weight decay applied first, bias
//! corrections), with transformers' parameter groups and global-norm gradient clipping.

use rayon::prelude::*;

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
    /// Gradient sums across the micro-batches of a step, kept between steps so that
    /// accumulation allocates nothing (not part of a checkpoint).
    pub accumulated: Vec<Vec<f32>>,
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
            accumulated: Vec::new(),
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
