//! The gated MLP of llama-family decoder layers, `down(silu(gate(x)) * up(x))`, over an
//! architecture's projections (each with its LoRA adapter, if any).

use candle_core::Tensor;

use crate::lora::Module;
use crate::Result;

/// `down(silu(gate(x)) * up(x))`, where `project(m, x)` is projection `m` of the layer.
pub fn gated_silu(
    x: &Tensor,
    mut project: impl FnMut(Module, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let gate = project(Module::Gate, x)?;
    let up = project(Module::Up, x)?;
    project(Module::Down, &(gate.silu()? * up)?)
}
