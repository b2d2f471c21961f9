//! Text generation with a KV cache: prompts left-padded into one batch, greedy decoding
//! (the first maximum, as torch's argmax) or sampling with temperature, top-k and top-p (in
//! transformers' order), stopping per row at any stop token.

use candle_core::Tensor;

use crate::kv_cache::KvCache;
use crate::mask::{KeyRanges, SoftmaxMask};
use crate::model::CausalLm;
use crate::param::Mode;
use crate::rng::SplitMix64;
use crate::Result;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    pub seed: u64,
    /// Generation ends at any of these (the stop token is kept in the output).
    pub stop_ids: Vec<u32>,
    pub pad_id: u32,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            stop_ids: Vec::new(),
            pad_id: 0,
        }
    }
}

/// One prompt's continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens, the stop token included when one ended it.
    pub ids: Vec<u32>,
    /// The stop token that ended it, or None when max_new_tokens did.
    pub stopped_by: Option<u32>,
}

/// Generation for every causal LM ([`CausalLm`]), with a KV cache.
pub trait Generate {
    /// Continues every prompt (one batch; prompts must not be empty).
    fn generate(&self, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<Vec<Generation>>;
}

impl<M: CausalLm + ?Sized> Generate for M {
    fn generate(&self, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<Vec<Generation>> {
        let b = prompts.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
            return Err(crate::ModelError::Input(format!("prompt {i} is empty")));
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let layers = self.config().num_hidden_layers();
        // The prompts are prefilled packed into one row, each attending only to its own
        // earlier tokens and with positions from 0 (no padding is computed, and the
        // matrix products stay as large as the batch), and each prompt's keys and values
        // are then placed right-aligned in the batch's cache: the layout of a left-padded
        // batch, whose padding keys are never attended to.
        let total: usize = prompts.iter().map(Vec::len).sum();
        let mut packed_ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        let mut ranges = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(b);
        for p in prompts {
            let start = packed_ids.len();
            starts.push(start);
            packed_ids.extend_from_slice(p);
            positions.extend(0..p.len() as u32);
            ranges.extend((start..start + p.len()).map(|q| (start as u32, q as u32 + 1)));
        }
        let mut packed = KvCache::new(layers, total);
        let input = Tensor::from_vec(packed_ids, (1, total), self.device())?;
        let mask =
            SoftmaxMask::from_ranges(KeyRanges::new(1, total, total, ranges)?, self.device())?;
        let hidden = self.forward_hidden(
            &input,
            &positions,
            Some(mask),
            Some(&mut packed),
            Mode::Infer,
        )?;
        // The last position of each prompt.
        let ends: Vec<u32> = starts
            .iter()
            .zip(prompts)
            .map(|(&s, p)| (s + p.len() - 1) as u32)
            .collect();
        let last = hidden
            .squeeze(0)?
            .index_select(&Tensor::from_vec(ends, b, self.device())?, 0)?;
        let mut logits = head_logits(self, &last)?;
        let mut cache = KvCache::new(layers, longest + opts.max_new_tokens);
        for (r, (p, &start)) in prompts.iter().zip(&starts).enumerate() {
            cache.place_row(r, b, &packed, start, p.len(), longest - p.len())?;
        }
        cache.len = longest;
        // Which keys are real, per row, growing with every step.
        let mut valid: Vec<Vec<bool>> = prompts
            .iter()
            .map(|p| {
                let mut v = vec![false; longest - p.len()];
                v.resize(longest, true);
                v
            })
            .collect();
        let mut next_pos: Vec<u32> = prompts.iter().map(|p| p.len() as u32).collect();
        let mut rng = SplitMix64::new(opts.seed ^ 0x5DEE_CE66_D1CE_4E5B);
        let mut out: Vec<Generation> = (0..b)
            .map(|_| Generation {
                ids: Vec::new(),
                stopped_by: None,
            })
            .collect();
        // The prompts still decoding, by batch row: a finished one leaves the batch (and the
        // KV cache), so later steps compute only for the others.
        let mut live: Vec<usize> = (0..b).collect();
        for step in 0..opts.max_new_tokens {
            let mut step_ids = Vec::with_capacity(live.len());
            let mut finished = Vec::new();
            for (r, row) in std::mem::take(&mut logits).into_iter().enumerate() {
                let id = if opts.temperature <= 0.0 {
                    first_argmax(&row)
                } else {
                    sample(row, opts, &mut rng)
                };
                let g = &mut out[live[r]];
                g.ids.push(id);
                if opts.stop_ids.contains(&id) {
                    g.stopped_by = Some(id);
                    finished.push(r);
                }
                step_ids.push(id);
            }
            if finished.len() == live.len() || step + 1 == opts.max_new_tokens {
                break;
            }
            for (p, v) in next_pos.iter_mut().zip(valid.iter_mut()) {
                *p += 1;
                v.push(true);
            }
            if !finished.is_empty() {
                let keep: Vec<usize> = (0..live.len()).filter(|r| !finished.contains(r)).collect();
                let rows: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
                cache.keep_rows(&rows)?;
                live = keep.iter().map(|&r| live[r]).collect();
                next_pos = keep.iter().map(|&r| next_pos[r]).collect();
                valid = keep.iter().map(|&r| valid[r].clone()).collect();
                step_ids = keep.iter().map(|&r| step_ids[r]).collect();
            }
            // The new token sits one position before the next free one.
            let positions: Vec<u32> = next_pos.iter().map(|p| p - 1).collect();
            let input = Tensor::from_vec(step_ids, (live.len(), 1), self.device())?;
            // Keys so far: the padded prompts and the tokens fed back before this one.
            let mask = generation_mask(self.device(), &valid, longest + step, 1)?;
            let hidden = self.forward_hidden(
                &input,
                &positions,
                Some(mask),
                Some(&mut cache),
                Mode::Infer,
            )?;
            let t = hidden.dim(1)?;
            logits = head_logits(self, &hidden.narrow(1, t - 1, 1)?.squeeze(1)?)?;
        }
        Ok(out)
    }
}

/// The logits (f32) of hidden states `[rows, hidden]`.
fn head_logits<M: CausalLm + ?Sized>(model: &M, last: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(
        crate::linear::linear(last, &model.lm_head_weight().detach(), None)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?,
    )
}

/// Mask `[rows, 1, t, past + t]`: new query `i` sees valid keys up to its own position
/// (a key range per query: a row's valid keys follow its left padding).
fn generation_mask(
    device: &candle_core::Device,
    valid: &[Vec<bool>],
    past: usize,
    t: usize,
) -> Result<SoftmaxMask> {
    let keys = past + t;
    let b = valid.len();
    let mut ranges = Vec::with_capacity(b * t);
    for v in valid {
        let first = v.iter().position(|&x| x).unwrap_or(v.len());
        if v.len() < keys || v[first..].iter().any(|&x| !x) {
            ranges.clear();
            break;
        }
        for i in 0..t {
            let q = past + i;
            let lo = if first <= q { first } else { q };
            ranges.push((lo as u32, q as u32 + 1));
        }
    }
    if ranges.len() == b * t {
        let ranges = KeyRanges::new(b, t, keys, ranges)?;
        return SoftmaxMask::from_ranges(ranges, device);
    }
    let mut mask = vec![f32::NEG_INFINITY; b * t * keys];
    for (r, v) in valid.iter().enumerate() {
        for i in 0..t {
            let row = &mut mask[(r * t + i) * keys..(r * t + i + 1) * keys];
            let q = past + i;
            let mut any = false;
            for j in 0..=q {
                if v[j] {
                    row[j] = 0.0;
                    any = true;
                }
            }
            if !any {
                row[q] = 0.0;
            }
        }
    }
    SoftmaxMask::new(Tensor::from_vec(mask, (b, 1, t, keys), device)?)
}

fn first_argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &z) in row.iter().enumerate() {
        if z > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Temperature, then top-k, then top-p (nucleus), then a draw.
fn sample(mut row: Vec<f32>, opts: &GenerateOptions, rng: &mut SplitMix64) -> u32 {
    for z in row.iter_mut() {
        *z /= opts.temperature as f32;
    }
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    if opts.top_k > 0 && opts.top_k < order.len() {
        order.truncate(opts.top_k);
    }
    let max = row[order[0]] as f64;
    let mut probs: Vec<f64> = order.iter().map(|&i| (row[i] as f64 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if opts.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (k, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= opts.top_p {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep.max(1));
        order.truncate(keep.max(1));
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut u = rng.uniform();
    for (k, p) in probs.iter().enumerate() {
        if u < *p {
            return order[k] as u32;
        }
        u -= p;
    }
    order[probs.len() - 1] as u32
}
