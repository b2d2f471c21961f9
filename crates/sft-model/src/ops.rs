//! Fused CPU ops with their own backward, replacing chains of candle ops that each allocate
//! a tensor and record a backward node: the attention softmax (scale, mask, softmax in one
//! pass). On other devices the same maths runs as candle ops. (RMSNorm is in
//! [`crate::norm`], the attention mask in [`crate::mask`]; both are re-exported here under
//! their old paths.)

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::float::{cpu_slice, values, Float};
pub use crate::mask::SoftmaxMask;
pub use crate::norm::rms_norm;
use crate::Result;

/// `softmax(scale * x + mask)` over the last axis; `mask` is `[rows, 1, t, s]`, broadcast
/// over the heads of `x [rows, heads, t, s]`.
struct MaskedSoftmax {
    scale: f64,
    mask: Option<Arc<Vec<f32>>>,
    heads: usize,
}

impl MaskedSoftmax {
    fn forward<F: Float>(&self, x: &[F], shape: &Shape) -> Vec<F> {
        let dims = shape.dims();
        let (h, t, s) = (self.heads, dims[dims.len() - 2], dims[dims.len() - 1]);
        let mut out = vec![F::of(0.0); x.len()];
        out.par_chunks_mut(s)
            .zip(x.par_chunks(s))
            .enumerate()
            .for_each(|(row, (y, x))| {
                let mask = self.mask.as_ref().map(|m| {
                    let (b, i) = (row / (h * t), row % t);
                    &m[(b * t + i) * s..(b * t + i + 1) * s]
                });
                let mut max = f64::NEG_INFINITY;
                for j in 0..s {
                    let v = x[j].f64() * self.scale + mask.map_or(0.0, |m| m[j] as f64);
                    y[j] = F::of(v);
                    max = max.max(v);
                }
                let mut sum = 0f64;
                for v in y.iter_mut() {
                    let e = (*v - F::of(max)).exp();
                    sum += e.f64();
                    *v = e;
                }
                let inv = F::of(1.0 / sum);
                for v in y.iter_mut() {
                    *v *= inv;
                }
            });
        out
    }

    fn backward<F: Float>(&self, y: &[F], dy: &[F], s: usize) -> Vec<F> {
        let mut dx = vec![F::of(0.0); y.len()];
        let scale = F::of(self.scale);
        dx.par_chunks_mut(s)
            .zip(y.par_chunks(s).zip(dy.par_chunks(s)))
            .for_each(|(dx, (y, dy))| {
                let dot: f64 = y.iter().zip(dy).map(|(a, b)| (*a * *b).f64()).sum();
                let dot = F::of(dot);
                for j in 0..s {
                    dx[j] = scale * y[j] * (dy[j] - dot);
                }
            });
        dx
    }
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = layout.shape().clone();
        let out = match storage {
            CpuStorage::F32(_) => {
                CpuStorage::F32(self.forward(cpu_slice::<f32>(storage, layout)?, &shape))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(self.forward(cpu_slice::<f64>(storage, layout)?, &shape))
            }
            _ => candle_core::bail!("masked-softmax: f32 or f64 only"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let s = res.dim(D::Minus1)?;
        let dx = match res.dtype() {
            candle_core::DType::F64 => {
                let v = self.backward::<f64>(&values(res)?, &values(grad_res)?, s);
                Tensor::from_vec(v, res.shape(), res.device())?
            }
            _ => {
                let v = self.backward::<f32>(&values(res)?, &values(grad_res)?, s);
                Tensor::from_vec(v, res.shape(), res.device())?
            }
        };
        Ok(Some(dx))
    }
}

/// `softmax(scale * scores + mask)` over the last axis, with a backward.
pub fn masked_softmax(scores: &Tensor, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
    let prepared = match mask {
        Some(m) => Some(SoftmaxMask::new(m.clone())?),
        None => None,
    };
    masked_softmax_shared(scores, scale, prepared.as_ref())
}

/// [`masked_softmax`] with a mask prepared once for all layers.
pub fn masked_softmax_shared(
    scores: &Tensor,
    scale: f64,
    mask: Option<&SoftmaxMask>,
) -> Result<Tensor> {
    let fused = scores.device().is_cpu()
        && matches!(
            scores.dtype(),
            candle_core::DType::F32 | candle_core::DType::F64
        );
    if !fused {
        let x = (scores * scale)?;
        let x = match mask {
            Some(m) => x.broadcast_add(&m.tensor()?.to_dtype(x.dtype())?)?,
            None => x,
        };
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        let sum = e.sum_keepdim(D::Minus1)?;
        return Ok(e.broadcast_div(&sum)?);
    }
    let heads = scores.dim(1)?;
    let mask = match mask {
        Some(m) => Some(m.host()?),
        None => None,
    };
    Ok(scores
        .contiguous()?
        .apply_op1(MaskedSoftmax { scale, mask, heads })?)
}
