//! Gradient accumulation over the micro-batches of one optimizer step, apart from the
//! optimizer (as candle-nn keeps its `GradAccumulator` apart from `Optimizer`): gradients
//! are summed into buffers that live from step to step, so accumulating allocates nothing.

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use rayon::prelude::*;
use sft_model::Param;

use crate::optim::with_f32;

/// Per-parameter gradient sums of the micro-batches seen since the last [`start`](Self::start).
#[derive(Debug, Default)]
pub struct GradAccumulator {
    sums: Vec<Vec<f32>>,
    micro_batches: usize,
}

impl GradAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins a step: the next [`add`](Self::add) overwrites the sums.
    pub fn start(&mut self) {
        self.micro_batches = 0;
    }

    /// Adds one micro-batch's gradients (taken out of `store`); a parameter without a
    /// gradient adds zeros.
    pub fn add(&mut self, params: &[Param], store: &mut GradStore) -> Result<(), String> {
        if self.sums.len() != params.len() {
            self.sums = params
                .iter()
                .map(|p| vec![0f32; p.var.elem_count()])
                .collect();
        }
        let first = self.micro_batches == 0;
        for (sum, p) in self.sums.iter_mut().zip(params) {
            match store.remove(p.var.as_tensor()) {
                Some(g) => with_f32(&g, |g| {
                    if first {
                        sum.copy_from_slice(g);
                    } else {
                        sum.par_iter_mut()
                            .zip(g.par_iter())
                            .for_each(|(a, b)| *a += b);
                    }
                })?,
                None if first => sum.fill(0.0),
                None => {}
            }
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// The sums, one slice per parameter.
    pub fn sums(&self) -> Vec<&[f32]> {
        self.sums.iter().map(Vec::as_slice).collect()
    }
}

/// Gradient accumulation in candle tensor ops ([`crate::optim::Kernels::Tensors`]): adds one
/// micro-batch's gradients (taken out of `store`) to `sums`, on the gradients' device; a
/// parameter without a gradient adds nothing.
pub fn add_tensors(
    sums: &mut [Option<Tensor>],
    params: &[Param],
    store: &mut GradStore,
) -> Result<(), String> {
    for (sum, p) in sums.iter_mut().zip(params) {
        if let Some(g) = store.remove(p.var.as_tensor()) {
            *sum = Some(match sum.take() {
                None => g,
                Some(s) => (s + g).map_err(|e| e.to_string())?,
            });
        }
    }
    Ok(())
}
