//! The KV cache of generation: per layer, the keys and values of the positions already
//! decoded, in buffers written in place.

use candle_core::Tensor;

use crate::Result;

/// Keys and values of earlier positions, per layer (generation only): buffers of
/// `capacity` positions written in place, so a decoding step copies only its own keys.
pub struct KvCache {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
}

/// One layer's cache buffers, the positions already in them, and their capacity.
pub(crate) type CacheSlot<'a> = (&'a mut Option<(Tensor, Tensor)>, usize, usize);

impl KvCache {
    pub fn new(layers: usize, capacity: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| None).collect(),
            len: 0,
            capacity,
        }
    }

    /// Writes positions `from..from + len` of the one-row cache `src` (every layer filled)
    /// into row `row` of this cache of `rows` rows, at positions `offset..offset + len`;
    /// the buffers are allocated (zeros) on first use. For prompts prefilled packed.
    pub fn place_row(
        &mut self,
        row: usize,
        rows: usize,
        src: &KvCache,
        from: usize,
        len: usize,
        offset: usize,
    ) -> Result<()> {
        if offset + len > self.capacity || from + len > src.len {
            return Err(crate::ModelError::Input(format!(
                "cannot place {len} positions from {from} of a KV cache of {} at {offset} of one of {}",
                src.len, self.capacity
            )));
        }
        for (slot, source) in self.layers.iter_mut().zip(&src.layers) {
            let Some((k, v)) = source else {
                return Err(crate::ModelError::Input("placing an empty KV cache".into()));
            };
            if slot.is_none() {
                let (_, nkv, _, hd) = k.dims4()?;
                let shape = (rows, nkv, self.capacity, hd);
                *slot = Some((
                    Tensor::zeros(shape, k.dtype(), k.device())?,
                    Tensor::zeros(shape, v.dtype(), v.device())?,
                ));
            }
            let (ck, cv) = slot.as_ref().expect("allocated above");
            let k = k.narrow(2, from, len)?.contiguous()?;
            let v = v.narrow(2, from, len)?.contiguous()?;
            ck.narrow(0, row, 1)?.slice_set(&k, 2, offset)?;
            cv.narrow(0, row, 1)?.slice_set(&v, 2, offset)?;
        }
        Ok(())
    }

    /// Keeps only the given batch rows (in that order), for example when the other
    /// sequences have finished.
    pub fn keep_rows(&mut self, rows: &[u32]) -> Result<()> {
        let Some(device) = self
            .layers
            .iter()
            .flatten()
            .next()
            .map(|(k, _)| k.device().clone())
        else {
            return Ok(());
        };
        let idx = Tensor::from_slice(rows, rows.len(), &device)?;
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }
}

/// Writes a layer's new keys and values `[rows, kv_heads, t, head_dim]` into its cache slot
/// after the `past` positions already there (allocating `capacity` positions on first use)
/// and returns the keys and values of every position so far.
pub(crate) fn append(slot: CacheSlot<'_>, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
    let (slot, past, capacity) = slot;
    let (b, nkv, t, hd) = k.dims4()?;
    if slot.is_none() {
        let shape = (b, nkv, capacity.max(past + t), hd);
        *slot = Some((
            Tensor::zeros(shape, k.dtype(), k.device())?,
            Tensor::zeros(shape, v.dtype(), v.device())?,
        ));
    }
    let (ck, cv) = slot.as_ref().expect("allocated above");
    if past + t > ck.dim(2)? {
        return Err(crate::ModelError::Input(format!(
            "KV cache of {} positions is full",
            ck.dim(2)?
        )));
    }
    ck.slice_set(&k.contiguous()?, 2, past)?;
    cv.slice_set(v, 2, past)?;
    Ok((ck.narrow(2, 0, past + t)?, cv.narrow(2, 0, past + t)?))
}
