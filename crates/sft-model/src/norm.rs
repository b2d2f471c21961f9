//! transformers' RMSNorm (`LlamaRMSNorm`), fused with its backward on the CPU in f32 and
//! f64; on other devices and dtypes the same maths runs as candle ops.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::float::{cpu_slice, values, Float};
use crate::Result;

/// transformers' RMSNorm, `w * x / sqrt(mean(x^2) + eps)`, fused with its backward.
struct RmsNorm {
    eps: f64,
}

impl RmsNorm {
    fn forward<F: Float>(&self, x: &[F], w: &[F]) -> Vec<F> {
        let h = w.len();
        let mut out = vec![F::of(0.0); x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .for_each(|(y, x)| {
                let ms = x.iter().map(|v| (*v * *v).f64()).sum::<f64>() / h as f64;
                let r = F::of(1.0 / (ms + self.eps).sqrt());
                for j in 0..h {
                    y[j] = w[j] * (x[j] * r);
                }
            });
        out
    }

    /// (dx, dw) from x, w and dy.
    fn backward<F: Float>(&self, x: &[F], w: &[F], dy: &[F]) -> (Vec<F>, Vec<F>) {
        let h = w.len();
        let mut dx = vec![F::of(0.0); x.len()];
        // Partial weight gradients over fixed blocks of rows, added in block order: the
        // result does not depend on how rayon splits the work.
        const BLOCK: usize = 64;
        let dw_rows: Vec<Vec<f64>> = dx
            .par_chunks_mut(h * BLOCK)
            .zip(x.par_chunks(h * BLOCK).zip(dy.par_chunks(h * BLOCK)))
            .map(|(dx, (x, dy))| {
                dx.chunks_mut(h).zip(x.chunks(h).zip(dy.chunks(h))).fold(
                    vec![0f64; h],
                    |mut dw, (dx, (x, dy))| {
                        let ms = x.iter().map(|v| (*v * *v).f64()).sum::<f64>() / h as f64;
                        let r = 1.0 / (ms + self.eps).sqrt();
                        // g = dy * w, n = x * r; dx = r * (g - n * mean(g * n)).
                        let mut gn = 0f64;
                        for j in 0..h {
                            let n = x[j].f64() * r;
                            let g = (dy[j] * w[j]).f64();
                            gn += g * n;
                            dw[j] += dy[j].f64() * n;
                        }
                        let mean_gn = gn / h as f64;
                        for j in 0..h {
                            let n = x[j].f64() * r;
                            let g = (dy[j] * w[j]).f64();
                            dx[j] = F::of(r * (g - n * mean_gn));
                        }
                        dw
                    },
                )
            })
            .collect();
        let mut dw = vec![0f64; h];
        for part in dw_rows {
            for (a, b) in dw.iter_mut().zip(part) {
                *a += b;
            }
        }
        (dx, dw.into_iter().map(F::of).collect())
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = l1.shape().clone();
        let out = match s1 {
            CpuStorage::F32(_) => {
                CpuStorage::F32(self.forward(cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(self.forward(cpu_slice::<f64>(s1, l1)?, cpu_slice::<f64>(s2, l2)?))
            }
            _ => candle_core::bail!("rms-norm: f32 or f64 only"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = match x.dtype() {
            candle_core::DType::F64 => {
                let (dx, dw) = self.backward::<f64>(&values(x)?, &values(w)?, &values(dy)?);
                (
                    Tensor::from_vec(dx, x.shape(), x.device())?,
                    Tensor::from_vec(dw, w.shape(), w.device())?,
                )
            }
            _ => {
                let (dx, dw) = self.backward::<f32>(&values(x)?, &values(w)?, &values(dy)?);
                (
                    Tensor::from_vec(dx, x.shape(), x.device())?,
                    Tensor::from_vec(dw, w.shape(), w.device())?,
                )
            }
        };
        Ok((Some(dx), Some(dw)))
    }
}

/// RMSNorm over the last axis with weight `w`, with a backward.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    if !fused {
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (var + eps)?.sqrt()?.recip()?;
        return Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?);
    }
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps })?)
}
