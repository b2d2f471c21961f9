//! Attention `softmax(scale * q k^T + mask) v` as one fused CPU op with its own backward,
//! computed block by block with an online softmax (the FlashAttention scheme): no
//! `T x T` tensor of scores or probabilities is ever held, only the per-query log-sum-exp
//! the backward needs to recompute them.
//!
//! The mask is not a tensor: every query attends to one contiguous range of keys
//! ([`KeyRanges`]: its document's earlier tokens and itself, a padding query only itself,
//! a decoding query the cached keys of its prompt and what it generated), so key blocks
//! outside a query block's ranges are skipped (the upper triangle of a causal mask, the
//! other documents of a packed row) and nothing `T x T` exists at all.
//!
//! Grouped-query heads read their shared key head in place. The forward runs in parallel
//! over (row, head, block of queries); the backward over (row, query head), each computing
//! its head's query gradient and its own share of the key and value gradients, which are
//! then added in head order: every value is computed by one task in a fixed order, so the
//! results do not depend on how rayon splits the work (the checkpointed and the plain
//! backward stay bit-identical). Inner loops are written so the compiler vectorises them,
//! and compiled twice: with AVX2 and FMA where the CPU has them, and portably.
//!
//! [`attention`] uses the fused op on the CPU in f32 and f64 with a [`KeyRanges`] mask (or
//! none); anything else (other devices, other dtypes, a mask that is not a key range per
//! query) runs the unfused path, [`attention_unfused`], as before.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::float::{cpu_slice, values, Float, Fma, Fused, Plain};
pub use crate::mask::KeyRanges;
use crate::mask::SoftmaxMask;
use crate::{ModelError, Result};

/// Queries per forward task.
const BQ: usize = 64;
/// Keys per block (the width of the score tile, kept in registers or L1).
const BK: usize = 64;

/// `softmax(scale * q k^T + mask) v` for `q [rows, heads, t, d]` and `k`, `v
/// [rows, kv_heads, keys, d]` (`heads` a multiple of `kv_heads`, query head `h` reading key
/// head `h / (heads / kv_heads)`), with a backward; `[rows, heads, t, d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&SoftmaxMask>,
) -> Result<Tensor> {
    let (b, nh, t, d) = q.dims4()?;
    let (kb, nkv, keys, kd) = k.dims4()?;
    if kb != b || kd != d || v.dims() != k.dims() || nkv == 0 || nh % nkv != 0 {
        return Err(ModelError::Input(format!(
            "attention: queries {:?}, keys {:?}, values {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let fused = q.device().is_cpu()
        && matches!(q.dtype(), DType::F32 | DType::F64)
        && k.dtype() == q.dtype()
        && v.dtype() == q.dtype();
    let ranges = match mask {
        None => None,
        Some(m) => match m.ranges() {
            Some(r) if (r.rows, r.queries, r.keys) == (b, t, keys) => Some(r.clone()),
            Some(r) => {
                return Err(ModelError::Input(format!(
                    "attention: a mask for {} x {} queries over {} keys, inputs of {b} x {t} queries over {keys} keys",
                    r.rows, r.queries, r.keys
                )))
            }
            None => return attention_unfused(q, k, v, scale, mask),
        },
    };
    if !fused || keys == 0 || t == 0 {
        return attention_unfused(q, k, v, scale, mask);
    }
    let op = FlashAttention {
        scale,
        ranges,
        lse: Mutex::new(None),
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

/// The unfused path: the scores `q k^T` (grouped heads stacked along the query axis), the
/// fused masked softmax ([`crate::ops::masked_softmax_shared`]), then `probs @ v`.
pub fn attention_unfused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&SoftmaxMask>,
) -> Result<Tensor> {
    let (b, nh, t, hd) = q.dims4()?;
    let (_, nkv, keys, _) = k.dims4()?;
    let rep = nh / nkv.max(1);
    // Grouped-query attention without copying keys: the `rep` query heads that share a
    // key head are stacked along the sequence axis.
    let q = q.contiguous()?.reshape((b, nkv, rep * t, hd))?;
    let scores = q.matmul(&k.t()?)?.reshape((b, nh, t, keys))?;
    let probs = crate::ops::masked_softmax_shared(&scores, scale, mask)?.reshape((
        b,
        nkv,
        rep * t,
        keys,
    ))?;
    Ok(probs.matmul(&v.contiguous()?)?.reshape((b, nh, t, hd))?)
}

struct FlashAttention {
    scale: f64,
    ranges: Option<KeyRanges>,
    /// The forward's per-query log-sum-exp (f32 or f64), kept for the backward.
    lse: Mutex<Option<Arc<CpuStorage>>>,
}

/// The shapes of one call, checked against the inputs.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    nh: usize,
    nkv: usize,
    t: usize,
    keys: usize,
    d: usize,
}

impl Dims {
    fn of(
        q: &Shape,
        k: &Shape,
        v: &Shape,
        ranges: Option<&KeyRanges>,
    ) -> candle_core::Result<Self> {
        let (b, nh, t, d) = q.dims4()?;
        let (kb, nkv, keys, kd) = k.dims4()?;
        if kb != b || kd != d || v.dims() != k.dims() || nkv == 0 || nh % nkv != 0 {
            candle_core::bail!("flash-attention: queries {q:?}, keys {k:?}, values {v:?}")
        }
        if let Some(r) = ranges {
            if (r.rows, r.queries, r.keys) != (b, t, keys) {
                candle_core::bail!(
                    "flash-attention: mask for {} x {} queries over {} keys, inputs {q:?} {k:?}",
                    r.rows,
                    r.queries,
                    r.keys
                )
            }
        }
        Ok(Self {
            b,
            nh,
            nkv,
            t,
            keys,
            d,
        })
    }

    fn rep(&self) -> usize {
        self.nh / self.nkv
    }
}

/// `s[j] = dot(x, column j of tile)` for the `BK` columns of a `[d, BK]` tile.
#[inline(always)]
fn tile_dots<F: Float, M: Fma>(x: &[F], tile: &[F], s: &mut [F; BK]) {
    *s = [F::ZERO; BK];
    for (dd, &a) in x.iter().enumerate() {
        let Some(col) = tile.get(dd * BK..(dd + 1) * BK) else {
            return;
        };
        for (sj, &c) in s.iter_mut().zip(col) {
            *sj = F::madd::<M>(a, c, *sj);
        }
    }
}

/// `y += a * x`.
#[inline(always)]
fn axpy<F: Float, M: Fma>(a: F, x: &[F], y: &mut [F]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = F::madd::<M>(a, xi, *yi);
    }
}

#[inline(always)]
fn dot<F: Float, M: Fma>(x: &[F], y: &[F]) -> F {
    let mut acc = [F::ZERO; 8];
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact(8);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..8 {
            acc[l] = F::madd::<M>(a[l], b[l], acc[l]);
        }
    }
    let mut s = F::ZERO;
    for a in acc {
        s += a;
    }
    for (a, b) in xc.remainder().iter().zip(yc.remainder()) {
        s = F::madd::<M>(*a, *b, s);
    }
    s
}

/// Rows `k0..k0 + n` of `src [.., d]` into the columns of `tile [d, BK]`.
#[inline(always)]
fn transpose_into<F: Float>(src: &[F], d: usize, k0: usize, n: usize, tile: &mut [F]) {
    for j in 0..n {
        let row = &src[(k0 + j) * d..(k0 + j + 1) * d];
        for (dd, &x) in row.iter().enumerate() {
            tile[dd * BK + j] = x;
        }
    }
}

/// Everything one call reads.
struct Inputs<'a, F> {
    dims: Dims,
    scale: F,
    ranges: Option<&'a [(u32, u32)]>,
    q: &'a [F],
    k: &'a [F],
    v: &'a [F],
}

impl<F: Float> Inputs<'_, F> {
    /// The key range of query `i` of row `b`.
    #[inline(always)]
    fn range(&self, b: usize, i: usize) -> (usize, usize) {
        match self.ranges {
            Some(r) => {
                let (lo, hi) = r[b * self.dims.t + i];
                (lo as usize, hi as usize)
            }
            None => (0, self.dims.keys),
        }
    }

    /// Keys and values of the key head that query head `bh` (row-major over rows and
    /// heads) reads.
    fn kv(&self, bh: usize) -> (&[F], &[F]) {
        let Dims {
            nh, nkv, keys, d, ..
        } = self.dims;
        let (b, h) = (bh / nh, bh % nh);
        let g = b * nkv + h / self.dims.rep();
        let span = g * keys * d..(g + 1) * keys * d;
        (&self.k[span.clone()], &self.v[span])
    }
}

/// Forward of queries `i0..i0 + n` of query head `bh`: their outputs (`out`, `n x d`) and
/// log-sum-exps (`lse`, `n`).
#[inline(always)]
fn forward_block<F: Float, M: Fma>(
    p: &Inputs<'_, F>,
    bh: usize,
    i0: usize,
    out: &mut [F],
    lse: &mut [F],
) {
    let Dims { nh, t, d, .. } = p.dims;
    let b = bh / nh;
    let n = lse.len();
    let q = &p.q[(bh * t + i0) * d..(bh * t + i0 + n) * d];
    let (k, v) = p.kv(bh);
    let ranges: Vec<(usize, usize)> = (0..n).map(|r| p.range(b, i0 + r)).collect();
    let span_lo = ranges.iter().map(|r| r.0).min().unwrap_or(0);
    let span_hi = ranges.iter().map(|r| r.1).max().unwrap_or(0);
    let mut m = vec![F::NEG_INF; n];
    let mut l = vec![F::ZERO; n];
    out.fill(F::ZERO);
    let mut kt = vec![F::ZERO; d * BK];
    let mut s = [F::ZERO; BK];
    let mut kb = span_lo;
    while kb < span_hi {
        let kn = BK.min(span_hi - kb);
        let ke = kb + kn;
        if !ranges.iter().any(|&(lo, hi)| lo < ke && hi > kb) {
            kb = ke;
            continue;
        }
        transpose_into(k, d, kb, kn, &mut kt);
        for (r, &(lo, hi)) in ranges.iter().enumerate() {
            let (a, e) = (lo.max(kb), hi.min(ke));
            if a >= e {
                continue;
            }
            let (ja, je) = (a - kb, e - kb);
            tile_dots::<F, M>(&q[r * d..(r + 1) * d], &kt, &mut s);
            let live = &mut s[ja..je];
            let mut mx = F::NEG_INF;
            for x in live.iter_mut() {
                *x *= p.scale;
                if *x > mx {
                    mx = *x;
                }
            }
            let m_new = if m[r] > mx { m[r] } else { mx };
            for x in live.iter_mut() {
                *x -= m_new;
            }
            F::exp_slice(live);
            let mut sum = F::ZERO;
            for &x in live.iter() {
                sum += x;
            }
            let o = &mut out[r * d..(r + 1) * d];
            if m[r] != F::NEG_INF && m_new != m[r] {
                let corr = (m[r] - m_new).exp();
                l[r] *= corr;
                for x in o.iter_mut() {
                    *x *= corr;
                }
            }
            l[r] += sum;
            for (j, &pj) in live.iter().enumerate() {
                let key = kb + ja + j;
                axpy::<F, M>(pj, &v[key * d..(key + 1) * d], o);
            }
            m[r] = m_new;
        }
        kb = ke;
    }
    for r in 0..n {
        let o = &mut out[r * d..(r + 1) * d];
        if l[r] > F::ZERO {
            let inv = F::ONE / l[r];
            for x in o.iter_mut() {
                *x *= inv;
            }
            lse[r] = m[r] + l[r].ln();
        } else {
            o.fill(F::ZERO);
            lse[r] = F::NEG_INF;
        }
    }
}

/// What the backward reads beyond the forward's inputs.
struct Grads<'a, F> {
    out: &'a [F],
    dout: &'a [F],
    lse: &'a [F],
}

/// Backward of query head `bh`: its queries' gradient (`dq`, `t x d`) and its share of its
/// key head's key and value gradients (`dk`, `dv`, `keys x d`, zeroed by the caller).
#[inline(always)]
fn backward_head<F: Float, M: Fma>(
    p: &Inputs<'_, F>,
    g: &Grads<'_, F>,
    bh: usize,
    dq: &mut [F],
    dk: &mut [F],
    dv: &mut [F],
) {
    let Dims { nh, t, keys, d, .. } = p.dims;
    let b = bh / nh;
    let rows = bh * t * d..(bh + 1) * t * d;
    let q = &p.q[rows.clone()];
    let o = &g.out[rows.clone()];
    let dout = &g.dout[rows];
    let lse = &g.lse[bh * t..(bh + 1) * t];
    let (k, v) = p.kv(bh);
    // D_i = dot(dout_i, out_i): the softmax backward's row term.
    let dd: Vec<F> = (0..t)
        .map(|i| dot::<F, M>(&dout[i * d..(i + 1) * d], &o[i * d..(i + 1) * d]))
        .collect();
    let ranges: Vec<(usize, usize)> = (0..t).map(|i| p.range(b, i)).collect();
    let mut kt = vec![F::ZERO; d * BK];
    let mut vt = vec![F::ZERO; d * BK];
    let mut s = [F::ZERO; BK];
    let mut dp = [F::ZERO; BK];
    let mut kb = 0;
    while kb < keys {
        let kn = BK.min(keys - kb);
        let ke = kb + kn;
        if !ranges.iter().any(|&(lo, hi)| lo < ke && hi > kb) {
            kb = ke;
            continue;
        }
        transpose_into(k, d, kb, kn, &mut kt);
        transpose_into(v, d, kb, kn, &mut vt);
        for (i, &(lo, hi)) in ranges.iter().enumerate() {
            let (a, e) = (lo.max(kb), hi.min(ke));
            if a >= e || lse[i] == F::NEG_INF {
                continue;
            }
            let (ja, je) = (a - kb, e - kb);
            let qi = &q[i * d..(i + 1) * d];
            let doi = &dout[i * d..(i + 1) * d];
            tile_dots::<F, M>(qi, &kt, &mut s);
            tile_dots::<F, M>(doi, &vt, &mut dp);
            let probs = &mut s[ja..je];
            for x in probs.iter_mut() {
                *x = *x * p.scale - lse[i];
            }
            F::exp_slice(probs);
            // dS = P * (dP - D_i), times the scale of the scores.
            let ds = &mut dp[ja..je];
            for (x, &pj) in ds.iter_mut().zip(probs.iter()) {
                *x = pj * (*x - dd[i]) * p.scale;
            }
            let dqi = &mut dq[i * d..(i + 1) * d];
            for j in 0..je - ja {
                let key = a + j;
                let span = key * d..(key + 1) * d;
                axpy::<F, M>(probs[j], doi, &mut dv[span.clone()]);
                axpy::<F, M>(ds[j], qi, &mut dk[span.clone()]);
                axpy::<F, M>(ds[j], &k[span], dqi);
            }
        }
        kb = ke;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    /// Safety: AVX2 and FMA must be present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_block<F: Float>(
        p: &Inputs<'_, F>,
        bh: usize,
        i0: usize,
        out: &mut [F],
        lse: &mut [F],
    ) {
        super::forward_block::<F, Fused>(p, bh, i0, out, lse)
    }

    /// Safety: AVX2 and FMA must be present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn backward_head<F: Float>(
        p: &Inputs<'_, F>,
        g: &Grads<'_, F>,
        bh: usize,
        dq: &mut [F],
        dk: &mut [F],
        dv: &mut [F],
    ) {
        super::backward_head::<F, Fused>(p, g, bh, dq, dk, dv)
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The whole forward: outputs `[b, nh, t, d]` and log-sum-exps `[b, nh, t]`.
fn forward<F: Float>(p: &Inputs<'_, F>) -> (Vec<F>, Vec<F>) {
    let Dims { b, nh, t, d, .. } = p.dims;
    let mut out = vec![F::ZERO; b * nh * t * d];
    let mut lse = vec![F::ZERO; b * nh * t];
    let simd = has_avx2_fma();
    out.par_chunks_mut(t * d)
        .zip(lse.par_chunks_mut(t))
        .enumerate()
        .for_each(|(bh, (out, lse))| {
            out.par_chunks_mut(BQ * d)
                .zip(lse.par_chunks_mut(BQ))
                .enumerate()
                .for_each(|(blk, (out, lse))| {
                    #[cfg(target_arch = "x86_64")]
                    if simd {
                        // SAFETY: the CPU has AVX2 and FMA (checked above).
                        unsafe { x86::forward_block(p, bh, blk * BQ, out, lse) };
                        return;
                    }
                    let _ = simd;
                    forward_block::<F, Plain>(p, bh, blk * BQ, out, lse)
                });
        });
    (out, lse)
}

/// The whole backward: `dq [b, nh, t, d]`, `dk`, `dv [b, nkv, keys, d]`.
fn backward<F: Float>(p: &Inputs<'_, F>, g: &Grads<'_, F>) -> (Vec<F>, Vec<F>, Vec<F>) {
    let Dims {
        b,
        nh,
        nkv,
        t,
        keys,
        d,
    } = p.dims;
    let rep = p.dims.rep();
    let mut dq = vec![F::ZERO; b * nh * t * d];
    // Each query head's share of its key head's gradients, added in head order below.
    let mut dk_parts = vec![F::ZERO; b * nh * keys * d];
    let mut dv_parts = vec![F::ZERO; b * nh * keys * d];
    let simd = has_avx2_fma();
    dq.par_chunks_mut(t * d)
        .zip(dk_parts.par_chunks_mut(keys * d))
        .zip(dv_parts.par_chunks_mut(keys * d))
        .enumerate()
        .for_each(|(bh, ((dq, dk), dv))| {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { x86::backward_head(p, g, bh, dq, dk, dv) };
                return;
            }
            let _ = simd;
            backward_head::<F, Plain>(p, g, bh, dq, dk, dv)
        });
    let sum_heads = |parts: &[F]| -> Vec<F> {
        if rep == 1 {
            return parts.to_vec();
        }
        let mut sum = vec![F::ZERO; b * nkv * keys * d];
        sum.par_chunks_mut(keys * d)
            .enumerate()
            .for_each(|(bg, acc)| {
                for r in 0..rep {
                    let part = &parts[(bg * rep + r) * keys * d..(bg * rep + r + 1) * keys * d];
                    for (a, &x) in acc.iter_mut().zip(part) {
                        *a += x;
                    }
                }
            });
        sum
    };
    let dk = sum_heads(&dk_parts);
    drop(dk_parts);
    let dv = sum_heads(&dv_parts);
    (dq, dk, dv)
}

impl FlashAttention {
    fn run_forward<F: Float>(
        &self,
        dims: Dims,
        q: &[F],
        k: &[F],
        v: &[F],
    ) -> candle_core::Result<CpuStorage> {
        let p = Inputs {
            dims,
            scale: F::from_f64(self.scale),
            ranges: self.ranges.as_ref().map(|r| r.ranges.as_slice()),
            q,
            k,
            v,
        };
        let (out, lse) = forward(&p);
        match self.lse.lock() {
            Ok(mut kept) => *kept = Some(Arc::new(F::to_cpu_storage_owned(lse))),
            Err(_) => candle_core::bail!("flash-attention: a previous call panicked"),
        }
        Ok(F::to_cpu_storage_owned(out))
    }

    fn run_backward<F: Float>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let dims = Dims::of(q.shape(), k.shape(), v.shape(), self.ranges.as_ref())?;
        let kept = match self.lse.lock() {
            Ok(kept) => kept.clone(),
            Err(_) => None,
        };
        let Some(lse) = kept
            .as_deref()
            .and_then(|s| F::cpu_storage_as_slice(s).ok())
        else {
            candle_core::bail!("flash-attention: backward without its forward's log-sum-exp")
        };
        let (qv, kv, vv) = (values::<F>(q)?, values::<F>(k)?, values::<F>(v)?);
        let (ov, gv) = (values::<F>(out)?, values::<F>(dout)?);
        let p = Inputs {
            dims,
            scale: F::from_f64(self.scale),
            ranges: self.ranges.as_ref().map(|r| r.ranges.as_slice()),
            q: &qv,
            k: &kv,
            v: &vv,
        };
        let g = Grads {
            out: &ov,
            dout: &gv,
            lse,
        };
        let (dq, dk, dv) = backward(&p, &g);
        Ok((
            Tensor::from_vec(dq, q.shape(), q.device())?,
            Tensor::from_vec(dk, k.shape(), k.device())?,
            Tensor::from_vec(dv, v.shape(), v.device())?,
        ))
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "flash-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = Dims::of(l1.shape(), l2.shape(), l3.shape(), self.ranges.as_ref())?;
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => self.run_forward(
                dims,
                cpu_slice::<f32>(s1, l1)?,
                cpu_slice::<f32>(s2, l2)?,
                cpu_slice::<f32>(s3, l3)?,
            )?,
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => self.run_forward(
                dims,
                cpu_slice::<f64>(s1, l1)?,
                cpu_slice::<f64>(s2, l2)?,
                cpu_slice::<f64>(s3, l3)?,
            )?,
            _ => candle_core::bail!("flash-attention: f32 or f64 inputs of one dtype only"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = match q.dtype() {
            DType::F64 => self.run_backward::<f64>(q, k, v, res, grad_res)?,
            _ => self.run_backward::<f32>(q, k, v, res, grad_res)?,
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn data(len: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        (0..len).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    /// Per-token document ids of rows given as document lengths (the rest is padding).
    fn doc_ids(rows: &[&[usize]], len: usize) -> Vec<u32> {
        let mut ids = Vec::new();
        for docs in rows {
            for (d, &l) in docs.iter().enumerate() {
                ids.extend(std::iter::repeat_n(d as u32, l));
            }
            let n: usize = docs.iter().sum();
            ids.extend(std::iter::repeat_n(crate::batch::PAD_DOC, len - n));
        }
        ids
    }

    /// Outputs, dq, dk, dv.
    type Outputs<F> = (Vec<F>, Vec<F>, Vec<F>, Vec<F>);

    struct Case {
        nh: usize,
        nkv: usize,
        d: usize,
        len: usize,
        rows: Vec<Vec<usize>>,
    }

    fn cases() -> Vec<Case> {
        let c = |nh, nkv, d, len, rows: &[&[usize]]| Case {
            nh,
            nkv,
            d,
            len,
            rows: rows.iter().map(|r| r.to_vec()).collect(),
        };
        vec![
            // Length 1.
            c(1, 1, 8, 1, &[&[1]]),
            // Grouped heads, a padded row, packed documents, an odd length.
            c(4, 2, 16, 37, &[&[37], &[20], &[5, 9, 12, 11]]),
            // SmolLM2's heads over several blocks, lengths not multiples of the block.
            c(9, 3, 64, 130, &[&[130], &[64, 1, 40]]),
            // Exactly one block, head size with a tail for the vector loops.
            c(2, 2, 12, 64, &[&[64], &[63]]),
            // One key head for three query heads, documents crossing block edges.
            c(3, 1, 32, 200, &[&[70, 66, 63], &[129]]),
        ]
    }

    /// The fused and the unfused attention on the same inputs and upstream gradient:
    /// (outputs, dq, dk, dv) of each.
    fn both<F: Float + candle_core::FloatDType>(case: &Case, seed: u64) -> [Outputs<F>; 2] {
        let dev = Device::Cpu;
        let b = case.rows.len();
        let (nh, nkv, d, t) = (case.nh, case.nkv, case.d, case.len);
        let rows: Vec<&[usize]> = case.rows.iter().map(Vec::as_slice).collect();
        let ranges =
            KeyRanges::from_doc_ids(b, t, &doc_ids(&rows, t), crate::batch::PAD_DOC).unwrap();
        let mask = SoftmaxMask::from_ranges(ranges, &dev).unwrap();
        let mk = |n: usize, shape: (usize, usize, usize, usize), s: u64| {
            let v: Vec<F> = data(n, s).into_iter().map(F::from_f64).collect();
            Var::from_vec(v, shape, &dev).unwrap()
        };
        let q = mk(b * nh * t * d, (b, nh, t, d), seed);
        let k = mk(b * nkv * t * d, (b, nkv, t, d), seed + 1);
        let v = mk(b * nkv * t * d, (b, nkv, t, d), seed + 2);
        let up: Vec<F> = data(b * nh * t * d, seed + 3)
            .into_iter()
            .map(F::from_f64)
            .collect();
        let up = Tensor::from_vec(up, (b, nh, t, d), &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let run = |fused: bool| {
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let out = if fused {
                attention(q, k, v, scale, Some(&mask)).unwrap()
            } else {
                attention_unfused(q, k, v, scale, Some(&mask)).unwrap()
            };
            let mut g = (&out * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<F>().unwrap();
            let mut grad = |x: &Tensor| flat(&g.remove(x).expect("a gradient"));
            let (dq, dk, dv) = (grad(q), grad(k), grad(v));
            (flat(&out), dq, dk, dv)
        };
        [run(true), run(false)]
    }

    fn max_diff<F: Float>(a: &[F], b: &[F]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let (x, y): (f64, f64) = (x.to_f64(), y.to_f64());
                (x - y).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn fused_equals_unfused_values_and_gradients() {
        for (n, case) in cases().iter().enumerate() {
            let [f32f, f32u] = both::<f32>(case, 10 * n as u64);
            let [f64f, f64u] = both::<f64>(case, 10 * n as u64);
            let names = ["out", "dq", "dk", "dv"];
            let pairs32 = [
                (&f32f.0, &f32u.0),
                (&f32f.1, &f32u.1),
                (&f32f.2, &f32u.2),
                (&f32f.3, &f32u.3),
            ];
            let pairs64 = [
                (&f64f.0, &f64u.0),
                (&f64f.1, &f64u.1),
                (&f64f.2, &f64u.2),
                (&f64f.3, &f64u.3),
            ];
            for (name, (a, b)) in names.iter().zip(pairs32) {
                // f32 sums over up to a few hundred keys: relative to the largest value.
                let big = b.iter().map(|x| x.abs() as f64).fold(1.0, f64::max);
                let diff = max_diff(a, b);
                assert!(
                    diff < 1e-6 * big,
                    "case {n} f32 {name}: {diff} (largest {big})"
                );
                assert!(a.iter().any(|x| *x != 0.0), "case {n} {name} all zero");
            }
            for (name, (a, b)) in names.iter().zip(pairs64) {
                let diff = max_diff(a, b);
                assert!(diff < 1e-13, "case {n} f64 {name}: {diff}");
            }
        }
    }

    #[test]
    fn padding_and_other_documents_get_no_attention() {
        // A key of another document or of padding changes nothing for a query.
        let dev = Device::Cpu;
        let (t, d) = (10, 8);
        let ids = doc_ids(&[&[4, 4]], t);
        let ranges = KeyRanges::from_doc_ids(1, t, &ids, crate::batch::PAD_DOC).unwrap();
        let mask = SoftmaxMask::from_ranges(ranges, &dev).unwrap();
        let q = Tensor::from_vec(data(t * d, 1), (1, 1, t, d), &dev).unwrap();
        let k1 = data(t * d, 2);
        let v1 = data(t * d, 3);
        let (mut k2, mut v2) = (k1.clone(), v1.clone());
        // Change the first document's keys and values and the padding's.
        for x in k2[..4 * d].iter_mut().chain(v2[8 * d..].iter_mut()) {
            *x += 1.0;
        }
        let run = |k: &[f64], v: &[f64]| {
            let k = Tensor::from_slice(k, (1, 1, t, d), &dev).unwrap();
            let v = Tensor::from_slice(v, (1, 1, t, d), &dev).unwrap();
            attention(&q, &k, &v, 0.3, Some(&mask))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        let (a, b) = (run(&k1, &v1), run(&k2, &v2));
        // The second document (positions 4..8) is unchanged.
        assert_eq!(a[4 * d..8 * d], b[4 * d..8 * d]);
        assert_ne!(a[..4 * d], b[..4 * d]);
    }

    #[test]
    fn gradients_agree_with_finite_differences_in_f64() {
        let dev = Device::Cpu;
        let (b, nh, nkv, t, d) = (2, 4, 2, 11, 6);
        let ids = doc_ids(&[&[4, 7], &[8]], t);
        let ranges = KeyRanges::from_doc_ids(b, t, &ids, crate::batch::PAD_DOC).unwrap();
        let mask = SoftmaxMask::from_ranges(ranges, &dev).unwrap();
        let base = [
            data(b * nh * t * d, 7),
            data(b * nkv * t * d, 8),
            data(b * nkv * t * d, 9),
        ];
        let up = Tensor::from_vec(data(b * nh * t * d, 10), (b, nh, t, d), &dev).unwrap();
        let shapes = [(b, nh, t, d), (b, nkv, t, d), (b, nkv, t, d)];
        let loss = |vals: &[Vec<f64>; 3]| -> f64 {
            let ts: Vec<Tensor> = vals
                .iter()
                .zip(shapes)
                .map(|(v, s)| Tensor::from_slice(v, s, &dev).unwrap())
                .collect();
            let out = attention(&ts[0], &ts[1], &ts[2], 0.4, Some(&mask)).unwrap();
            (out * &up).unwrap().sum_all().unwrap().to_scalar().unwrap()
        };
        let vars: Vec<Var> = base
            .iter()
            .zip(shapes)
            .map(|(v, s)| Var::from_slice(v, s, &dev).unwrap())
            .collect();
        let out = attention(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            0.4,
            Some(&mask),
        )
        .unwrap();
        let grads = (out * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let mut rng = crate::rng::SplitMix64::new(3);
        for (which, var) in vars.iter().enumerate() {
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for _ in 0..12 {
                let idx = rng.below(g.len());
                let h = 1e-5;
                let (mut plus, mut minus) = (base.clone(), base.clone());
                plus[which][idx] += h;
                minus[which][idx] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                assert!(
                    (fd - g[idx]).abs() < 1e-8 * (1.0 + fd.abs()),
                    "input {which} [{idx}]: finite difference {fd}, backward {}",
                    g[idx]
                );
            }
        }
    }

    #[test]
    fn decoding_queries_over_cached_keys_and_no_mask() {
        let dev = Device::Cpu;
        let (b, nh, nkv, d, keys) = (3, 4, 2, 16, 70);
        // Query 0 of each row is the newest position; rows are left-padded by 0, 5 and 69.
        let ranges: Vec<(u32, u32)> = [0, 5, 69].iter().map(|&p| (p, keys as u32)).collect();
        let ranges = KeyRanges::new(b, 1, keys, ranges).unwrap();
        let mask = SoftmaxMask::from_ranges(ranges, &dev).unwrap();
        let q = Tensor::from_vec(data(b * nh * d, 1), (b, nh, 1, d), &dev).unwrap();
        let k = Tensor::from_vec(data(b * nkv * keys * d, 2), (b, nkv, keys, d), &dev).unwrap();
        let v = Tensor::from_vec(data(b * nkv * keys * d, 3), (b, nkv, keys, d), &dev).unwrap();
        for m in [Some(&mask), None] {
            let fused = attention(&q, &k, &v, 0.25, m).unwrap();
            let plain = attention_unfused(&q, &k, &v, 0.25, m).unwrap();
            let diff = (fused - plain)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(diff < 1e-13, "{diff}");
        }
    }

    #[test]
    fn masks_as_tensors_become_ranges_only_when_they_are_ranges() {
        let ranges =
            KeyRanges::from_doc_ids(2, 5, &doc_ids(&[&[2, 3], &[3]], 5), u32::MAX).unwrap();
        let values = ranges.additive_mask();
        assert_eq!(
            KeyRanges::from_additive_mask(2, 5, 5, &values),
            Some(ranges.clone())
        );
        // Query 4 of row 0 attends to keys [2, 5): a hole in it, a finite value where it
        // may not attend, a value other than 0 where it may, nothing allowed at all.
        let row = 4 * 5;
        let edits: [&[(usize, f32)]; 4] = [
            &[(row + 3, f32::NEG_INFINITY)],
            &[(row, -3.0)],
            &[(row + 2, 1.0)],
            &[
                (row + 2, f32::NEG_INFINITY),
                (row + 3, f32::NEG_INFINITY),
                (row + 4, f32::NEG_INFINITY),
            ],
        ];
        for edit in edits {
            let mut m = values.clone();
            for &(at, v) in edit {
                m[at] = v;
            }
            assert_eq!(KeyRanges::from_additive_mask(2, 5, 5, &m), None, "{edit:?}");
        }
        assert!(KeyRanges::new(1, 1, 4, vec![(2, 2)]).is_err());
        assert!(KeyRanges::new(1, 1, 4, vec![(0, 5)]).is_err());
        assert!(KeyRanges::new(1, 2, 4, vec![(0, 1)]).is_err());
        // A mask for other shapes is an error, not a panic.
        let dev = Device::Cpu;
        let mask = SoftmaxMask::from_ranges(ranges, &dev).unwrap();
        let q = Tensor::zeros((1, 2, 5, 4), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 1, 5, 4), DType::F32, &dev).unwrap();
        assert!(attention(&q, &k, &k, 1.0, Some(&mask)).is_err());
        let k3 = Tensor::zeros((1, 3, 5, 4), DType::F32, &dev).unwrap();
        assert!(attention(&q, &k3, &k3, 1.0, None).is_err());
    }
}
