//! The attention mask of one forward: every query's range of keys ([`KeyRanges`], what the
//! fused attention reads) and, where a path needs one, the additive mask tensor, shared by
//! every layer ([`SoftmaxMask`]).

use std::sync::{Arc, OnceLock};

use candle_core::Tensor;

use crate::{ModelError, Result};

/// For every (row, query), the half-open range `[lo, hi)` of keys it attends to.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRanges {
    pub(crate) rows: usize,
    pub(crate) queries: usize,
    pub(crate) keys: usize,
    pub(crate) ranges: Vec<(u32, u32)>,
}

impl KeyRanges {
    /// Ranges for `rows x queries` queries over `keys` keys, row-major; each must be
    /// non-empty and within the keys.
    pub fn new(rows: usize, queries: usize, keys: usize, ranges: Vec<(u32, u32)>) -> Result<Self> {
        if ranges.len() != rows * queries {
            return Err(ModelError::Input(format!(
                "attention ranges: {} ranges for {rows} x {queries} queries",
                ranges.len()
            )));
        }
        if keys > u32::MAX as usize {
            return Err(ModelError::Input(format!("attention over {keys} keys")));
        }
        if let Some((i, &(lo, hi))) = ranges
            .iter()
            .enumerate()
            .find(|(_, &(lo, hi))| lo >= hi || hi as usize > keys)
        {
            return Err(ModelError::Input(format!(
                "attention ranges: query {i} attends to keys [{lo}, {hi}) of {keys}"
            )));
        }
        Ok(Self {
            rows,
            queries,
            keys,
            ranges,
        })
    }

    /// The block-diagonal causal ranges of rows of `len` tokens with per-token document
    /// ids (`pad` marks padding, which attends only to itself).
    pub fn from_doc_ids(rows: usize, len: usize, doc_ids: &[u32], pad: u32) -> Result<Self> {
        if doc_ids.len() != rows * len {
            return Err(ModelError::Input(format!(
                "attention ranges: {} document ids for {rows} x {len} tokens",
                doc_ids.len()
            )));
        }
        let mut ranges = Vec::with_capacity(rows * len);
        for docs in doc_ids.chunks(len.max(1)) {
            let mut start = 0;
            for (i, &d) in docs.iter().enumerate() {
                if i == 0 || d != docs[i - 1] {
                    start = i;
                }
                let lo = if d == pad { i } else { start };
                ranges.push((lo as u32, i as u32 + 1));
            }
        }
        Self::new(rows, len, len, ranges)
    }

    /// The ranges an additive mask `[rows, 1, queries, keys]` (`values`, row-major) allows,
    /// when every query's allowed keys (0 in the mask, `-inf` elsewhere) are one non-empty
    /// contiguous range; `None` for any other mask.
    pub fn from_additive_mask(
        rows: usize,
        queries: usize,
        keys: usize,
        values: &[f32],
    ) -> Option<Self> {
        if values.len() != rows * queries * keys || keys == 0 {
            return None;
        }
        let mut ranges = Vec::with_capacity(rows * queries);
        for row in values.chunks(keys) {
            let lo = row.iter().position(|&v| v == 0.0)?;
            let n = row[lo..].iter().take_while(|&&v| v == 0.0).count();
            let hi = lo + n;
            if row[..lo]
                .iter()
                .chain(&row[hi..])
                .any(|&v| v != f32::NEG_INFINITY)
            {
                return None;
            }
            ranges.push((lo as u32, hi as u32));
        }
        Self::new(rows, queries, keys, ranges).ok()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn queries(&self) -> usize {
        self.queries
    }

    pub fn keys(&self) -> usize {
        self.keys
    }

    /// The additive mask `[rows, 1, queries, keys]` these ranges mean, row-major (for the
    /// unfused path).
    pub fn additive_mask(&self) -> Vec<f32> {
        let mut mask = vec![f32::NEG_INFINITY; self.rows * self.queries * self.keys];
        for (row, &(lo, hi)) in mask.chunks_mut(self.keys.max(1)).zip(&self.ranges) {
            row[lo as usize..hi as usize].fill(0.0);
        }
        mask
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
    pub(crate) fn host(&self) -> Result<Arc<Vec<f32>>> {
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
