//! Fused CPU ops with their own backward, replacing chains of candle ops that each allocate
//! a tensor and record a backward node: the attention softmax (scale, mask, softmax in one
//! pass) and RMSNorm. On other devices the same maths runs as candle ops.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::attention::KeyRanges;
use crate::loss::LossFloat;
use crate::Result;

/// The values of a contiguous CPU input of a custom op (an error names the op's need).
pub(crate) fn cpu_slice<'a, F: LossFloat>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [F]> {
    let Some((a, b)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused op: input is not contiguous")
    };
    Ok(&<F as candle_core::WithDType>::cpu_storage_as_slice(storage)?[a..b])
}

/// Contiguous values of a tensor, copied.
fn values<F: LossFloat>(t: &Tensor) -> candle_core::Result<Vec<F>> {
    t.contiguous()?.flatten_all()?.to_vec1::<F>()
}

/// `softmax(scale * x + mask)` over the last axis; `mask` is `[rows, 1, t, s]`, broadcast
/// over the heads of `x [rows, heads, t, s]`.
struct MaskedSoftmax {
    scale: f64,
    mask: Option<Arc<Vec<f32>>>,
    heads: usize,
}

impl MaskedSoftmax {
    fn forward<F: LossFloat>(&self, x: &[F], shape: &Shape) -> Vec<F> {
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

    fn backward<F: LossFloat>(&self, y: &[F], dy: &[F], s: usize) -> Vec<F> {
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

/// An attention mask prepared once per forward and shared by every layer: the key range
/// of every query ([`KeyRanges`], what the fused attention reads, when the mask is one) and,
/// built on first use, the additive tensor `[rows, 1, t, s]` and its values on the host (the
/// unfused path's; each fused softmax keeps its mask for the backward, so one copy per layer
/// would hold `layers x rows x t x s` floats for a training step).
#[derive(Clone)]
pub struct SoftmaxMask {
    inner: Arc<MaskInner>,
}

struct MaskInner {
    tensor: OnceLock<Tensor>,
    host: OnceLock<Arc<Vec<f32>>>,
    ranges: Option<KeyRanges>,
    device: candle_core::Device,
}

impl SoftmaxMask {
    /// From an additive mask tensor `[rows, 1, t, s]` (its key ranges are found when it is
    /// 0 on one contiguous range of keys per query and `-inf` elsewhere).
    pub fn new(mask: Tensor) -> Result<Self> {
        let host = OnceLock::new();
        let mut ranges = None;
        if mask.device().is_cpu() {
            let values = Arc::new(
                mask.to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
            if let Ok((rows, 1, t, s)) = mask.dims4() {
                ranges = KeyRanges::from_additive_mask(rows, t, s, &values);
            }
            let _ = host.set(values);
        }
        let tensor = OnceLock::new();
        let device = mask.device().clone();
        let _ = tensor.set(mask);
        Ok(Self {
            inner: Arc::new(MaskInner {
                tensor,
                host,
                ranges,
                device,
            }),
        })
    }

    /// From key ranges: on the CPU nothing `t x s` is built unless an unfused path asks
    /// for it.
    pub fn from_ranges(ranges: KeyRanges, device: &candle_core::Device) -> Result<Self> {
        let mask = Self {
            inner: Arc::new(MaskInner {
                tensor: OnceLock::new(),
                host: OnceLock::new(),
                ranges: Some(ranges),
                device: device.clone(),
            }),
        };
        if !device.is_cpu() {
            mask.tensor()?;
        }
        Ok(mask)
    }

    /// The key range of every query, when the mask is one.
    pub fn ranges(&self) -> Option<&KeyRanges> {
        self.inner.ranges.as_ref()
    }

    /// The additive mask `[rows, 1, t, s]`.
    pub fn tensor(&self) -> Result<Tensor> {
        if let Some(t) = self.inner.tensor.get() {
            return Ok(t.clone());
        }
        let r = self.inner.ranges.as_ref().ok_or_else(|| {
            crate::ModelError::Input("an attention mask with neither values nor ranges".into())
        })?;
        let t = Tensor::from_vec(
            r.additive_mask(),
            (r.rows(), 1, r.queries(), r.keys()),
            &self.inner.device,
        )?;
        Ok(self.inner.tensor.get_or_init(|| t).clone())
    }

    /// The additive mask's values on the host.
    fn host(&self) -> Result<Arc<Vec<f32>>> {
        if let Some(h) = self.inner.host.get() {
            return Ok(h.clone());
        }
        let values = match &self.inner.ranges {
            Some(r) => r.additive_mask(),
            None => self
                .tensor()?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        };
        Ok(self.inner.host.get_or_init(|| Arc::new(values)).clone())
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

/// transformers' RMSNorm, `w * x / sqrt(mean(x^2) + eps)`, fused with its backward.
struct RmsNorm {
    eps: f64,
}

impl RmsNorm {
    fn forward<F: LossFloat>(&self, x: &[F], w: &[F]) -> Vec<F> {
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
    fn backward<F: LossFloat>(&self, x: &[F], w: &[F], dy: &[F]) -> (Vec<F>, Vec<F>) {
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
