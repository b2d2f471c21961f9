//! Masked cross-entropy over the trained positions only, fused with the output projection.
//!
//! The logits of a whole row (`len x 49,152` for SmolLM2) are never kept: the forward goes
//! over the trained positions in chunks, keeping per chunk only what the backward needs, and
//! the backward is ours (a candle custom op), so the graph holds no `[tokens, vocab]`
//! intermediates. The same pass yields TRL's token statistics (mean token accuracy, entropy).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::float::Float;
use crate::Result;

/// Positions per chunk of the vocabulary projection.
const CHUNK: usize = 256;
/// Keep the chunk gradients from the forward (instead of recomputing them in the backward)
/// while they take at most this many floats.
const CACHE_FLOATS: usize = 64 << 20;

/// Per-token statistics of a forward pass, as TRL computes them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// Sum of the token losses (nats).
    pub loss_sum: f64,
    /// Trained tokens.
    pub tokens: usize,
    /// Tokens whose label is the first argmax of the logits.
    pub correct: usize,
    /// Sum of the entropies of the predicted distributions (nats).
    pub entropy_sum: f64,
}

impl LossStats {
    pub fn add(&mut self, o: &LossStats) {
        self.loss_sum += o.loss_sum;
        self.tokens += o.tokens;
        self.correct += o.correct;
        self.entropy_sum += o.entropy_sum;
    }
}

/// The summed loss of a batch, as a scalar tensor with a backward, and its statistics.
pub struct TokenLoss {
    pub sum: Tensor,
    pub stats: LossStats,
}

/// Cross-entropy of `hidden [n, h] @ weight[v, h]^T` against `targets` (length n), summed.
pub fn token_loss(hidden: &Tensor, weight: &Tensor, targets: &[u32]) -> Result<TokenLoss> {
    let cache = targets.len() * weight.dim(0)? <= CACHE_FLOATS;
    token_loss_with(hidden, weight, targets, cache)
}

/// [`token_loss`], choosing whether the backward reuses the forward's softmax (memory) or
/// recomputes it chunk by chunk (time).
pub fn token_loss_with(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &[u32],
    cache: bool,
) -> Result<TokenLoss> {
    let fused_dtype = matches!(
        hidden.dtype(),
        candle_core::DType::F32 | candle_core::DType::F64
    );
    if !hidden.device().is_cpu() || !fused_dtype {
        return plain_token_loss(hidden, weight, targets);
    }
    let mut stats = LossStats::default();
    let mut cached = Vec::new();
    for_each_chunk(hidden, weight, targets, |_, grads, chunk| {
        stats.add(&chunk);
        if cache {
            cached.push(grads);
        }
        Ok(())
    })?;
    let op = FusedCrossEntropy {
        targets: targets.to_vec(),
        loss_sum: stats.loss_sum,
        cached: Mutex::new(cache.then_some(cached)),
    };
    let sum = hidden.apply_op2(weight, op)?;
    Ok(TokenLoss { sum, stats })
}

/// The statistics of [`token_loss`] without anything for a backward (evaluation).
pub fn token_stats(hidden: &Tensor, weight: &Tensor, targets: &[u32]) -> Result<LossStats> {
    let mut stats = LossStats::default();
    for_each_chunk(hidden, weight, targets, |_, _, chunk| {
        stats.add(&chunk);
        Ok(())
    })?;
    Ok(stats)
}

/// The vocabulary projection of `hidden` in chunks of [`CHUNK`] positions: for each, its
/// first position, `softmax - onehot(target)` and its statistics. Nothing is kept for a
/// backward.
fn for_each_chunk(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &[u32],
    mut f: impl FnMut(usize, Tensor, LossStats) -> Result<()>,
) -> Result<()> {
    let n = targets.len();
    let vocab = weight.dim(0)?;
    let h = hidden.detach();
    let wt = weight.detach().t()?;
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        let logits = h.narrow(0, start, len)?.matmul(&wt)?;
        let (grads, stats) = grads_of(&logits, &targets[start..start + len], vocab)?;
        f(start, grads, stats)?;
    }
    Ok(())
}

/// The same loss from candle's own ops (on GPUs and in other dtypes, where the fused op has
/// no kernel): the logits of the trained positions are materialised.
fn plain_token_loss(hidden: &Tensor, weight: &Tensor, targets: &[u32]) -> Result<TokenLoss> {
    let n = targets.len();
    let logits = hidden
        .matmul(&weight.t()?)?
        .to_dtype(candle_core::DType::F32)?;
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    let idx = Tensor::from_slice(targets, (n, 1), hidden.device())?;
    let picked = shifted.gather(&idx, 1)?;
    let sum = (lse - picked)?.sum_all()?;
    let vocab = weight.dim(0)?;
    let (_, stats) = grads_of(&logits.detach(), targets, vocab)?;
    Ok(TokenLoss { sum, stats })
}

/// Turns a row of logits into `softmax - onehot(target)` in place and returns the token's
/// loss, whether the target is the first argmax, and the entropy.
fn softmax_row_grad<F: Float>(row: &mut [F], target: usize) -> (f64, bool, f64) {
    let mut max = row[0];
    let mut first_argmax = 0;
    for (i, &z) in row.iter().enumerate() {
        if z.f64() > max.f64() {
            max = z;
            first_argmax = i;
        }
    }
    let target_logit = row[target].f64();
    // Exponentials in the row's precision, sums in f64 (blocks of 64 in F first).
    let mut sum = 0f64;
    let mut weighted = 0f64;
    for block in row.chunks_mut(64) {
        let (mut s, mut w) = (F::of(0.0), F::of(0.0));
        for z in block.iter_mut() {
            let shifted = *z - max;
            let e = shifted.exp();
            s += e;
            w += e * shifted;
            *z = e;
        }
        sum += s.f64();
        weighted += w.f64();
    }
    let lse = sum.ln();
    let loss = lse - (target_logit - max.f64());
    // H = log Z - E[z], both shifted by max.
    let entropy = lse - weighted / sum;
    let inv = F::of(1.0 / sum);
    for z in row.iter_mut() {
        *z *= inv;
    }
    row[target] = F::of(row[target].f64() - 1.0);
    (loss, first_argmax == target, entropy)
}

/// Softmax gradients of a chunk of logits, in place, with the chunk's statistics.
fn chunk_grads<F: Float>(
    logits: &Tensor,
    targets: &[u32],
    vocab: usize,
) -> Result<(Tensor, LossStats)> {
    let mut data = logits.flatten_all()?.to_vec1::<F>()?;
    let rows: Vec<(f64, bool, f64)> = data
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| softmax_row_grad(row, t as usize))
        .collect();
    let mut stats = LossStats {
        tokens: targets.len(),
        ..Default::default()
    };
    for (loss, correct, entropy) in rows {
        stats.loss_sum += loss;
        stats.correct += correct as usize;
        stats.entropy_sum += entropy;
    }
    Ok((
        Tensor::from_vec(data, (targets.len(), vocab), logits.device())?,
        stats,
    ))
}

fn grads_of(logits: &Tensor, targets: &[u32], vocab: usize) -> Result<(Tensor, LossStats)> {
    match logits.dtype() {
        candle_core::DType::F64 => chunk_grads::<f64>(logits, targets, vocab),
        _ => chunk_grads::<f32>(logits, targets, vocab),
    }
}

/// The op whose forward returns the precomputed summed loss and whose backward gives
/// `dL/dhidden = G W` and `dL/dW = G^T hidden`, with `G = softmax - onehot` per position.
struct FusedCrossEntropy {
    targets: Vec<u32>,
    loss_sum: f64,
    cached: Mutex<Option<Vec<Tensor>>>,
}

impl CustomOp2 for FusedCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let storage = match s1 {
            CpuStorage::F64(_) => CpuStorage::F64(vec![self.loss_sum]),
            _ => CpuStorage::F32(vec![self.loss_sum as f32]),
        };
        Ok((storage, Shape::from(())))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let h = hidden.detach();
        let w = weight.detach();
        // A frozen head (LoRA) gets no gradient: its product is skipped.
        let weight_grad = weight.track_op();
        let cached = self.cached.lock().expect("loss cache").take();
        if let Some(chunks) = cached {
            // Everything is in memory: one product each for both gradients.
            if chunks.is_empty() {
                let gw = weight_grad.then(|| weight.zeros_like()).transpose()?;
                return Ok((Some(hidden.zeros_like()?), gw));
            }
            let gall = (Tensor::cat(&chunks, 0)? * g)?;
            let grad_h = gall.matmul(&w)?;
            let grad_w = weight_grad.then(|| gall.t()?.matmul(&h)).transpose()?;
            return Ok((Some(grad_h), grad_w));
        }
        let mut grad_h = Vec::new();
        let mut grad_w: Option<Tensor> = None;
        for_each_chunk(&h, &w, &self.targets, |start, gc, _| {
            let hc = h.narrow(0, start, gc.dim(0)?)?;
            let gc = (gc * g)?;
            grad_h.push(gc.matmul(&w)?);
            if weight_grad {
                let gw = gc.t()?.matmul(&hc)?;
                grad_w = Some(match grad_w.take() {
                    Some(acc) => (acc + gw)?,
                    None => gw,
                });
            }
            Ok(())
        })
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let grad_h = if grad_h.is_empty() {
            hidden.zeros_like()?
        } else {
            Tensor::cat(&grad_h, 0)?
        };
        let grad_w = match grad_w {
            Some(gw) => Some(gw),
            None if weight_grad => Some(weight.zeros_like()?),
            None => None,
        };
        Ok((Some(grad_h), grad_w))
    }
}
