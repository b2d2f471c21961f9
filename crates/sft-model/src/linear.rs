//! `y = x W^T (+ b)`, the model's projections, with a path of our own for few rows.
//!
//! A general matrix multiply packs both operands into cache-sized panels before its
//! microkernel runs. With thousands of rows (training, scoring) packing the weight is paid
//! back many times; with the handful of rows of a decoding step (one per sequence of the
//! batch) it is not: the weight is read, copied and read again for a few dot products per
//! weight row. [`SkinnyMatmul`] instead streams each weight row once from memory and takes
//! its dot products with all the (cache-resident) input rows, so a decoding step costs about
//! one read of the weights. It has a backward (plain candle matmuls), so it is also correct
//! wherever a graph records it.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::Result;

/// Rows up to which the streaming kernel beats candle's gemm on the CPU. Measured with
/// `cargo run --release -p sft-benches --bin linear-bench` (SmolLM2-135M's shapes).
pub const SKINNY_MAX_ROWS: usize = 16;

/// `x [.., in] @ w[out, in]^T + bias`, on any device, with a backward.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (out_dim, in_dim) = w.dims2()?;
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((rows, in_dim))?;
    let y = if rows <= SKINNY_MAX_ROWS && skinny_applies(&x2, w) {
        x2.contiguous()?.apply_op2(&w.contiguous()?, SkinnyMatmul)?
    } else {
        x2.matmul(&w.t()?)?
    };
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    *out.last_mut().unwrap() = out_dim;
    Ok(y.reshape(out)?)
}

fn skinny_applies(x: &Tensor, w: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && w.dtype() == x.dtype()
}

/// `x [m, k] @ w [n, k]^T` for small `m`, streaming `w` once (f32, CPU).
pub struct SkinnyMatmul;

impl CustomOp2 for SkinnyMatmul {
    fn name(&self) -> &'static str {
        "skinny-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("skinny-matmul: x has {k} columns, w has {k2}")
        }
        let x = crate::float::cpu_slice::<f32>(s1, l1)?;
        let w = crate::float::cpu_slice::<f32>(s2, l2)?;
        let y = skinny_matmul(x, w, m, k, n);
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // y = x w^T: dx = dy w, dw = dy^T x.
        Ok((Some(dy.matmul(w)?), Some(dy.t()?.matmul(x)?)))
    }
}

/// `x @ w^T + bias` for a frozen weight (LoRA's base projections): the backward gives the
/// input's gradient only, `dy w`, where candle's matmul would also compute (and keep until
/// the end of the backward) a gradient for the weight. The weight stays in the dtype it
/// was loaded in (bf16 files stay 2 bytes a weight) and is widened to the input's dtype
/// for each product, one projection at a time.
#[derive(Clone)]
pub struct FrozenLinear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl FrozenLinear {
    fn widened(&self, t: &Tensor, dtype: candle_core::DType) -> candle_core::Result<Tensor> {
        if t.dtype() == dtype {
            Ok(t.detach())
        } else {
            t.to_dtype(dtype)
        }
    }

    /// `x [.., in]` through the frozen projection; the graph records the op with `x` only.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.track_op() {
            // No graph to record: the plain product.
            let w = self.widened(&self.weight, x.dtype())?;
            let b = match &self.bias {
                Some(b) => Some(self.widened(b, x.dtype())?),
                None => None,
            };
            return linear(x, &w, b.as_ref());
        }
        let dims = x.dims().to_vec();
        let (out_dim, in_dim) = self.weight.dims2()?;
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x
            .reshape((rows, in_dim))?
            .contiguous()?
            .apply_op1(self.clone())?;
        let mut out = dims;
        *out.last_mut().unwrap() = out_dim;
        Ok(y.reshape(out)?)
    }
}

impl candle_core::CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, in_dim) = l.shape().dims2()?;
        let out_dim = self.weight.dim(0)?;
        let dev = candle_core::Device::Cpu;
        let x = match s {
            CpuStorage::F32(_) => {
                Tensor::from_slice(crate::float::cpu_slice::<f32>(s, l)?, (rows, in_dim), &dev)?
            }
            CpuStorage::F64(_) => {
                Tensor::from_slice(crate::float::cpu_slice::<f64>(s, l)?, (rows, in_dim), &dev)?
            }
            _ => candle_core::bail!("frozen-linear: f32 or f64 inputs only"),
        };
        let w = self.widened(&self.weight, x.dtype())?;
        let b = match &self.bias {
            Some(b) => Some(self.widened(b, x.dtype())?),
            None => None,
        };
        let y = linear(&x, &w, b.as_ref())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .flatten_all()?;
        let storage = match s {
            CpuStorage::F64(_) => CpuStorage::F64(y.to_vec1()?),
            _ => CpuStorage::F32(y.to_vec1()?),
        };
        Ok((storage, Shape::from((rows, out_dim))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let w = self.widened(&self.weight, x.dtype())?;
        Ok(Some(dy.matmul(&w)?))
    }
}

/// Output columns per parallel task: a few hundred weight rows (~1 MB of weights at
/// hidden size 576), enough to amortise a task and leave every core work.
const COLUMNS_PER_TASK: usize = 256;
/// Input rows whose dot products one pass over a weight row takes (accumulator registers).
const ROW_GROUP: usize = 8;

/// `y [m, n] = x [m, k] @ w [n, k]^T`.
pub fn skinny_matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), m * k);
    debug_assert_eq!(w.len(), n * k);
    // Column-major result (one contiguous run of m values per weight row), transposed at
    // the end: m * n is small next to the n * k weights.
    let mut yt = vec![0f32; n * m];
    if m == 0 || n == 0 {
        return yt;
    }
    let kernel = Kernel::detect();
    yt.par_chunks_mut(COLUMNS_PER_TASK * m)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * COLUMNS_PER_TASK;
            for (c, out) in out.chunks_mut(m).enumerate() {
                let row = &w[(first + c) * k..(first + c + 1) * k];
                for (g, out) in out.chunks_mut(ROW_GROUP).enumerate() {
                    let xs = &x[g * ROW_GROUP * k..(g * ROW_GROUP + out.len()) * k];
                    kernel.dots(xs, row, out);
                }
            }
        });
    let mut y = vec![0f32; m * n];
    for (j, col) in yt.chunks(m).enumerate() {
        for (i, v) in col.iter().enumerate() {
            y[i * n + j] = *v;
        }
    }
    y
}

#[derive(Clone, Copy)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernel::Avx2Fma;
        }
        Kernel::Portable
    }

    /// `out[i] = dot(xs row i, row)` for the `out.len() <= ROW_GROUP` rows of `xs`.
    fn dots(self, xs: &[f32], row: &[f32], out: &mut [f32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`).
            Kernel::Avx2Fma => unsafe { avx2::dots(xs, row, out) },
            Kernel::Portable => portable_dots(xs, row, out),
        }
    }
}

fn portable_dots(xs: &[f32], row: &[f32], out: &mut [f32]) {
    let k = row.len();
    for (i, o) in out.iter_mut().enumerate() {
        let x = &xs[i * k..(i + 1) * k];
        // Eight partial sums: lets the compiler vectorise the loop.
        let mut acc = [0f32; 8];
        let mut xc = x.chunks_exact(8);
        let mut wc = row.chunks_exact(8);
        for (a, b) in (&mut xc).zip(&mut wc) {
            for l in 0..8 {
                acc[l] += a[l] * b[l];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for (a, b) in xc.remainder().iter().zip(wc.remainder()) {
            s += a * b;
        }
        *o = s;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::ROW_GROUP;

    /// See [`super::Kernel::dots`]. Safety: AVX2 and FMA must be present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots(xs: &[f32], row: &[f32], out: &mut [f32]) {
        match out.len() {
            8 => dots_n::<8>(xs, row, out),
            7 => dots_n::<7>(xs, row, out),
            6 => dots_n::<6>(xs, row, out),
            5 => dots_n::<5>(xs, row, out),
            4 => dots_n::<4>(xs, row, out),
            3 => dots_n::<3>(xs, row, out),
            2 => dots_n::<2>(xs, row, out),
            1 => dots_n::<1>(xs, row, out),
            _ => unreachable!("at most {ROW_GROUP} rows per group"),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_n<const R: usize>(xs: &[f32], row: &[f32], out: &mut [f32]) {
        let k = row.len();
        assert!(xs.len() >= R * k && out.len() >= R);
        let body = k - k % 8;
        let mut acc = [_mm256_setzero_ps(); R];
        let wp = row.as_ptr();
        let xp = xs.as_ptr();
        let mut j = 0;
        while j < body {
            // SAFETY: j + 8 <= body <= k, and row i of xs spans [i * k, (i + 1) * k).
            let wv = unsafe { _mm256_loadu_ps(wp.add(j)) };
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = unsafe { _mm256_loadu_ps(xp.add(i * k + j)) };
                *a = _mm256_fmadd_ps(xv, wv, *a);
            }
            j += 8;
        }
        for (i, a) in acc.iter().enumerate() {
            // Horizontal sum of the eight lanes.
            let hi = _mm256_extractf128_ps(*a, 1);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(*a), hi);
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55));
            let mut s = _mm_cvtss_f32(s1);
            for t in body..k {
                s += xs[i * k + t] * row[t];
            }
            out[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        (0..len).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                    .sum();
            }
        }
        y
    }

    #[test]
    fn kernels_match_f64_dot_products() {
        // Row counts across the group size, k with and without a tail, n across tasks.
        for &(m, k, n) in &[(1, 576, 300), (3, 19, 5), (8, 64, 513), (13, 100, 257)] {
            let (x, w) = (data(m * k, 1), data(n * k, 2));
            let want = reference(&x, &w, m, k, n);
            let got = skinny_matmul(&x, &w, m, k, n);
            let mut portable = vec![0f32; m];
            for (j, row) in w.chunks(k).enumerate() {
                portable_dots(&x, row, &mut portable);
                for i in 0..m {
                    let tol = 1e-5 * (k as f64).sqrt();
                    assert!((portable[i] as f64 - want[i * n + j]).abs() < tol);
                }
            }
            for (g, r) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - r).abs() < 1e-5 * (k as f64).sqrt(),
                    "{m}x{k}x{n}"
                );
            }
        }
    }

    #[test]
    fn linear_uses_it_with_the_same_values_and_gradients_as_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let (m, k, n) = (5, 40, 33);
        let x = Var::from_vec(data(m * k, 3), (m, k), &dev)?;
        let w = Var::from_vec(data(n * k, 4), (n, k), &dev)?;
        let skinny = linear(x.as_tensor(), w.as_tensor(), None)?;
        let plain = x.as_tensor().matmul(&w.as_tensor().t()?)?;
        let diff = (&skinny - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        // The same upstream gradient through both.
        let up = Tensor::from_vec(data(m * n, 5), (m, n), &dev)?;
        let gs = (skinny * &up)?.sum_all()?.backward()?;
        let gp = (plain * &up)?.sum_all()?.backward()?;
        for v in [&x, &w] {
            let (a, b) = (gs.get(v).unwrap(), gp.get(v).unwrap());
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{diff}");
        }
        Ok(())
    }
}
